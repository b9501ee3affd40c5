"""Descriptor create/destroy pairs of ``acl.media``, ``acl.mdl`` (AIPP), ``acl.op`` and the
top level (tensor descriptions): return shapes, NULL and double destroy, create arguments.

A create returns the bare handle (0 on failure); a destroy returns ``ret``, except those whose C
function is ``void`` (``aclDestroyTensorDesc``, ``aclopDestroyAttr``), which return None. A
destroyed descriptor is a dangling host pointer on hardware, so double destroys run in a child
process.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ._case import Probe, case, shape

MEDIA = "python/pyACL media/ (media_common.cpp, media_vpc.cpp, media_jpeg.cpp, media_vdec.cpp, "
MEDIA += "media_venc.cpp): "
SIM_CHOICE = "the code the simulator chose (docs/simulator.md)"


class Pair(NamedTuple):
    """One pair: the create and destroy functions below ``acl``, create arguments, what
    destroy returns (``"ret"`` or ``"None"``), and the evidence."""

    create: str
    destroy: str
    args: tuple[Any, ...]
    returns: str
    evidence: str


PAIRS: tuple[Pair, ...] = (
    *(
        Pair(f"media.{create}", f"media.{destroy}", args, "ret", MEDIA + f"{create} '{fmt}' (k)")
        for create, destroy, args, fmt in (
            ("dvpp_create_channel_desc", "dvpp_destroy_channel_desc", (), ""),
            ("dvpp_create_pic_desc", "dvpp_destroy_pic_desc", (), ""),
            ("dvpp_create_stream_desc", "dvpp_destroy_stream_desc", (), ""),
            ("dvpp_create_batch_pic_desc", "dvpp_destroy_batch_pic_desc", (2,), "I"),
            ("dvpp_create_roi_config", "dvpp_destroy_roi_config", (0, 15, 0, 15), "IIII"),
            ("dvpp_create_resize_config", "dvpp_destroy_resize_config", (), ""),
            ("dvpp_create_jpege_config", "dvpp_destroy_jpege_config", (), ""),
            ("vdec_create_channel_desc", "vdec_destroy_channel_desc", (), ""),
            ("vdec_create_frame_config", "vdec_destroy_frame_config", (), ""),
            ("venc_create_channel_desc", "venc_destroy_channel_desc", (), ""),
            ("venc_create_frame_config", "venc_destroy_frame_config", (), ""),
        )
    ),
    Pair(
        "mdl.create_aipp",
        "mdl.destroy_aipp",
        (1,),
        "ret",
        "python/pyACL mdl/mdl_wrap.cpp: create_aipp 'K' (k), destroy_aipp 'k' (i)",
    ),
    Pair(
        "op.create_attr",
        "op.destroy_attr",
        (),
        "None",
        "pyacl docs acl.op.create_attr / acl.op.destroy_attr: aclopDestroyAttr is void, the "
        "Python call returns nothing",
    ),
    Pair(
        "create_tensor_desc",
        "destroy_tensor_desc",
        (0, [1, 4], 2),
        "None",
        "python/pyACL py_init_acl.cpp: create_tensor_desc 'iOi' (k), destroy_tensor_desc 'k' "
        "returns None (aclDestroyTensorDesc is void)",
    ),
)


def _short(api: str) -> str:
    return api.rsplit(".", 1)[-1].replace("create_", "", 1)


def _returned(result: Any) -> str:
    return "None" if result is None else shape(result)


def _pair_cases(pair: Pair) -> None:
    name = pair.create.replace("create_", "", 1)
    expect_destroy = "None" if pair.returns == "None" else "ret=0"

    @case(
        f"descriptors.{name}.shapes",
        "return-shapes",
        expect=["int", True, expect_destroy],
        evidence=pair.evidence,
    )
    def _shapes(p: Probe) -> Any:
        handle = p.fn(pair.create)(*pair.args)
        done = [not handle]
        p.defer(lambda: done[0] or p.fn(pair.destroy)(handle))
        out = [shape(handle, bare=True), bool(handle)]
        out.append(_returned(p.fn(pair.destroy)(handle)))
        done[0] = True
        return out

    if pair.returns == "None":
        return  # a void destroy reports nothing: its double destroy is not observable

    @case(
        f"descriptors.{name}.destroy_twice",
        "error-codes",
        expect=[0, 100000],
        isolated=True,
        evidence=SIM_CHOICE + " (a destroyed descriptor is a dangling host pointer)",
    )
    def _twice(p: Probe) -> Any:
        handle = p.fn(pair.create)(*pair.args)
        if not handle:
            return "create returned 0"
        first = p.fn(pair.destroy)(handle)
        if first != 0:
            p.defer(p.fn(pair.destroy), handle)
        return [first, p.fn(pair.destroy)(handle)]


for _pair in PAIRS:
    _pair_cases(_pair)


@case(
    "descriptors.destroy_null",
    "error-codes",
    expect={_short(p.destroy): 100000 for p in PAIRS if p.returns == "ret"},
    evidence="acldvpp/aclvdec/aclvenc/aclmdl destroy functions of NULL -> "
    "ACL_ERROR_INVALID_PARAM: " + SIM_CHOICE + " (their runtime source is not public)",
)
def _destroy_null(p: Probe) -> Any:
    return {_short(pair.destroy): p.fn(pair.destroy)(0) for pair in PAIRS if pair.returns == "ret"}


@case(
    "descriptors.create_size_zero",
    "error-codes",
    expect=[0, 0],
    evidence=MEDIA + "dvpp_create_batch_pic_desc(0) and python/pyACL mdl/mdl_wrap.cpp "
    "create_aipp(0): a batch size of 0 gives NULL, returned as the bare 0",
)
def _create_zero(p: Probe) -> Any:
    out = []
    for create, destroy in (
        ("media.dvpp_create_batch_pic_desc", "media.dvpp_destroy_batch_pic_desc"),
        ("mdl.create_aipp", "mdl.destroy_aipp"),
    ):
        handle = p.fn(create)(0)
        if handle:
            p.defer(p.fn(destroy), handle)
        out.append(handle)
    return out
