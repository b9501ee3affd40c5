"""The pytest plugin, run in fresh pytest processes (pytester): registered by its entry
point, inert unless asked, and explicit about what a test left open."""

from __future__ import annotations

from importlib import metadata

import pytest

pytest_plugins = ["pytester"]


def _entry_point_installed() -> bool:
    points = metadata.entry_points()
    group = (
        points.select(group="pytest11")  # type: ignore[attr-defined,unused-ignore]
        if hasattr(points, "select")
        else points.get("pytest11", [])  # Python 3.9
    )
    return any(ep.value == "ascend_safe.pytest_plugin" for ep in group)


pytestmark = pytest.mark.skipif(
    not _entry_point_installed(), reason="ascend_safe is not installed (pip install -e .)"
)

LEAKY = """
import pytest
import ascend_safe as asf

kept = []


def test_leaks_a_device_and_memory():
    dev = asf.Device(0)
    kept.append(dev.malloc(64))


def test_acl_is_not_importable_unless_asked():
    with pytest.raises(ImportError):
        import acl  # noqa: F401
"""


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=120)


def test_the_plugin_does_nothing_unless_asked(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_leaky=LEAKY)
    result = _run(pytester)
    result.assert_outcomes(passed=2)
    result.stdout.no_fnmatch_line("*left * open*")


def test_the_marker_checks_a_test_and_names_what_it_left_open(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_marked="""
        import pytest
        import ascend_safe as asf


        kept = []


        @pytest.mark.ascend_sim
        def test_leaks():
            dev = asf.Device(0)
            kept.append(dev.malloc(64))


        @pytest.mark.ascend_sim
        def test_clean():
            with asf.Device(0) as dev, dev.malloc(64):
                pass
        """
    )
    result = _run(pytester)
    result.assert_outcomes(passed=2, errors=1)  # a teardown error: the call itself passed
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks*",
            "*the test left 2 resources open (closed now; close them in the test, or use `with`)*",
            "*<Device #* id=0 open>, created at *test_marked.py:10 in test_leaks",
            "*<DeviceMemory #* device=0 size=64 open>, created at *test_marked.py:11 in test_leaks",
        ]
    )
    result.stdout.no_fnmatch_line("*assert not*")


def test_the_option_checks_every_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_leaky=LEAKY)
    result = _run(pytester, "--ascend-sim")
    # the leak is reported; and under the simulator, `import acl` works in every test
    result.assert_outcomes(passed=1, failed=1, errors=1)
    result.stdout.fnmatch_lines(["*the test left 2 resources open*", "*DID NOT RAISE*"])


def test_the_fixture_makes_import_acl_work_and_checks_raw_handles(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_raw="""
        import sys


        def test_raw_pyacl_leaks_a_stream(ascend_sim):
            import acl
            assert acl.init() == 0
            assert acl.rt.set_device(0) == 0
            stream, ret = acl.rt.create_stream()
            assert ret == 0


        def test_raw_pyacl_done_right(ascend_sim):
            import acl
            assert acl.init() == 0
            assert acl.rt.set_device(0) == 0
            stream, ret = acl.rt.create_stream()
            assert acl.rt.destroy_stream(stream) == 0
            assert acl.rt.reset_device(0) == 0
            assert acl.finalize() == 0


        def test_raw_pyacl_without_init(ascend_sim):
            import acl
            assert acl.rt.set_device(0) == 0
            assert acl.rt.reset_device(0) == 0


        def test_acl_is_gone_afterwards():
            assert "acl" not in sys.modules
        """
    )
    result = _run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_raw_pyacl_leaks_a_stream*",
            "pyacl handles were still live after the test (1 device, 1 stream)*destroy*",
            "*ERROR at teardown of test_raw_pyacl_without_init*",
            "the simulator caught pyacl misuse:",
            "  - rt.set_device: *acl.init must be called before*",
        ]
    )


def test_listing_the_plugin_in_a_conftest_as_well_is_harmless(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["ascend_safe.pytest_plugin"]\n')
    pytester.makepyfile(
        test_clean="""
        import ascend_safe as asf


        def test_clean(ascend_sim):
            with asf.Device(0):
                pass
        """
    )
    result = _run(pytester)
    result.assert_outcomes(passed=1)
