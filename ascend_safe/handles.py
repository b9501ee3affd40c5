"""Every pyacl create/destroy pair as a resource object, from one table.

pyacl hands out many plain descriptor handles (model descriptions, datasets, AIPP sets, DVPP
channel and picture descriptions, ROI and resize configs, JPEG/VDEC/VENC configs, operator
attributes, tensor descriptions) that must each be destroyed with a matching call. :data:`PAIRS`
lists them; :func:`create` turns any of them into a :class:`Handle` with the lifetime core's
guarantees: a ``with`` block, idempotent ``close()``, no use after close, teardown before its
device or context, and a place in leak reports. It sits below ``model.py``: a model's
description and datasets are handles too.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

from . import _backend
from .context import ContextOwner, InContext
from .errors import make_acl_error

__all__ = ["PAIRS", "Handle", "Pair", "create"]


class Pair(NamedTuple):
    """One create/destroy pair: what it makes, the two pyacl calls (below ``acl``), and
    whether the destroy call returns ``ret`` (``destroy_tensor_desc`` and ``op.destroy_attr``
    return nothing: their C calls are void)."""

    kind: str
    create: str
    destroy: str
    destroy_returns_ret: bool = True


#: Every pair the library manages, by short name.
PAIRS: dict[str, Pair] = {
    "model_desc": Pair("model description", "mdl.create_desc", "mdl.destroy_desc"),
    "dataset": Pair("dataset", "mdl.create_dataset", "mdl.destroy_dataset"),
    "aipp": Pair("AIPP set", "mdl.create_aipp", "mdl.destroy_aipp"),
    "dvpp_channel_desc": Pair(
        "DVPP channel description",
        "media.dvpp_create_channel_desc",
        "media.dvpp_destroy_channel_desc",
    ),
    "dvpp_pic_desc": Pair(
        "DVPP picture description", "media.dvpp_create_pic_desc", "media.dvpp_destroy_pic_desc"
    ),
    "dvpp_stream_desc": Pair(
        "DVPP stream description",
        "media.dvpp_create_stream_desc",
        "media.dvpp_destroy_stream_desc",
    ),
    "dvpp_batch_pic_desc": Pair(
        "DVPP batch picture description",
        "media.dvpp_create_batch_pic_desc",
        "media.dvpp_destroy_batch_pic_desc",
    ),
    "dvpp_roi_config": Pair(
        "DVPP ROI config", "media.dvpp_create_roi_config", "media.dvpp_destroy_roi_config"
    ),
    "dvpp_resize_config": Pair(
        "DVPP resize config",
        "media.dvpp_create_resize_config",
        "media.dvpp_destroy_resize_config",
    ),
    "dvpp_jpege_config": Pair(
        "JPEG encoder config", "media.dvpp_create_jpege_config", "media.dvpp_destroy_jpege_config"
    ),
    "vdec_channel_desc": Pair(
        "VDEC channel description",
        "media.vdec_create_channel_desc",
        "media.vdec_destroy_channel_desc",
    ),
    "vdec_frame_config": Pair(
        "VDEC frame config", "media.vdec_create_frame_config", "media.vdec_destroy_frame_config"
    ),
    "venc_channel_desc": Pair(
        "VENC channel description",
        "media.venc_create_channel_desc",
        "media.venc_destroy_channel_desc",
    ),
    "venc_frame_config": Pair(
        "VENC frame config", "media.venc_create_frame_config", "media.venc_destroy_frame_config"
    ),
    "op_attr": Pair(
        "operator attributes", "op.create_attr", "op.destroy_attr", destroy_returns_ret=False
    ),
    "tensor_desc": Pair(
        "tensor description", "create_tensor_desc", "destroy_tensor_desc", destroy_returns_ret=False
    ),
}


class Handle(InContext):
    """A pyacl object made by a create call and released by its matching destroy call.

    Created with :func:`create`; a child of the device or context given, closed before it.
    """

    kind = "handle"
    teardown_rank = 0
    pair: ClassVar[Pair]
    __slots__ = ()

    def __init__(self, owner: ContextOwner, *args: Any) -> None:
        super().__init__(owner)
        self._construct(lambda: self._create(args))

    def _create(self, args: tuple[Any, ...]) -> int:
        pair = self.pair
        handle = _backend.call_value(pair.create, *args, resource=self)
        if not handle:
            raise make_acl_error(
                _backend.VALUE_FAILURE_CODE,
                "acl." + pair.create,
                recent_message=_backend.recent_error_message(),
                resource=repr(self),
            )
        value: int = handle
        return value

    def _release(self, handle: Any) -> None:
        pair = self.pair
        if pair.destroy_returns_ret:
            _backend.call(pair.destroy, handle, resource=self)
        else:
            _backend.call_value(pair.destroy, handle, resource=self)


_classes: dict[tuple[str, bool], type[Handle]] = {}


def handle_class(name: str, *, internal: bool = False) -> type[Handle]:
    """The :class:`Handle` subclass for pair *name* (*internal*: left out of leak reports,
    for handles another resource owns and releases)."""
    cls = _classes.get((name, internal))
    if cls is None:
        try:
            pair = PAIRS[name]
        except KeyError:
            raise ValueError(
                f"unknown create/destroy pair {name!r}; known: {', '.join(PAIRS)}"
            ) from None
        title = "".join(part.title() for part in name.split("_"))
        cls = type(
            f"{title}Handle",
            (Handle,),
            {"__slots__": (), "kind": pair.kind, "pair": pair, "tracked": not internal},
        )
        _classes[(name, internal)] = cls
    return cls


def create(owner: ContextOwner, name: str, *args: Any) -> Handle:
    """Create pyacl object *name* (a key of :data:`PAIRS`) with the create call's *args*.

    >>> with device:                                            # doctest: +SKIP
    ...     with handles.create(device, "dvpp_pic_desc") as pic:
    ...         acl.media.dvpp_set_pic_desc_width(pic.handle, 224)
    """
    return handle_class(name)(owner, *args)
