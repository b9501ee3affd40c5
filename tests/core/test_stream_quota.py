"""The cap on streams per device: below the product's limit, a clear error instead of 207008."""

from __future__ import annotations

import pytest

import ascend_safe as asf


def test_the_cap_refuses_one_stream_more_before_pyacl_is_called(sim):
    with asf.Device(0, max_streams=3) as dev:
        streams = [dev.stream() for _ in range(3)]
        calls = sim.call_counts().get("rt.create_stream", 0)
        with pytest.raises(asf.StreamLimitError) as info:
            dev.stream()
        assert (info.value.device, info.value.limit, info.value.open) == (0, 3, 3)
        message = str(info.value)
        assert "3 open streams" in message and "max_streams=: 3" in message
        assert "close streams" in message
        assert sim.call_counts().get("rt.create_stream", 0) == calls  # pyacl never asked
        streams.pop().close()
        streams.append(dev.stream())  # a closed stream frees its place
        assert len(streams) == 3


def test_the_cap_counts_every_session_and_context_on_the_device(sim):
    first = asf.Device(0, max_streams=2)
    second = asf.Device(0, max_streams=2)
    ctx = first.context()
    kept = [second.stream(), asf.Stream(ctx)]
    with pytest.raises(asf.StreamLimitError):
        first.stream()
    with pytest.raises(asf.StreamLimitError):
        asf.Stream(ctx, priority=1)  # the configured create counts too
    first.close()  # closes the context and its stream
    assert kept[1].closed
    kept.append(second.stream())
    second.close()
    third = asf.Device(0, max_streams=1)
    with third.stream():  # all given back
        pass
    third.close()


def test_the_environment_variable_sets_the_cap(sim, monkeypatch):
    monkeypatch.setenv("ASCEND_SAFE_MAX_STREAMS", "1")
    with asf.Device(0) as dev:
        assert dev.max_streams == 1
        kept = dev.stream()
        with pytest.raises(asf.StreamLimitError, match="ASCEND_SAFE_MAX_STREAMS: 1"):
            dev.stream()
        kept.close()
    with asf.Device(0, max_streams=2) as dev:  # the argument wins
        assert dev.max_streams == 2


@pytest.mark.parametrize(
    ("soc", "limit"),
    [
        ("Ascend910B4", 1984),
        ("Ascend910_9391", 1984),
        ("Ascend950PR", 1984),
        ("Ascend310P3", 1024),
        ("Ascend310B1", 512),
        ("Ascend910ProB", 2024),
        ("SomethingNew", 512),
    ],
)
def test_the_default_cap_is_below_the_product_limit(sim, soc, limit):
    sim.configure(soc_name=soc)
    with asf.Device(0) as dev:
        assert dev.max_streams == limit - 64
    with asf.Device(0, max_streams=limit) as dev:
        assert dev.max_streams == limit
    with pytest.raises(ValueError, match=f"exceeds the {limit} streams"):
        asf.Device(0, max_streams=limit + 1)


@pytest.mark.parametrize("raw", ["0", "-3", "many"])
def test_a_bad_environment_value_is_refused(sim, monkeypatch, raw):
    monkeypatch.setenv("ASCEND_SAFE_MAX_STREAMS", raw)
    with pytest.raises(ValueError, match="ASCEND_SAFE_MAX_STREAMS must be a positive integer"):
        asf.Device(0)
    assert sim.live_handles() == {}


def test_a_bad_argument_is_refused(sim):
    with pytest.raises(ValueError):
        asf.Device(0, max_streams=0)
    with pytest.raises(TypeError):
        asf.Device(0, max_streams="8")  # type: ignore[arg-type]
    assert sim.live_handles() == {}
