"""Child-process entry points of the conformance kit (not a user command; use
``python -m ascend_safe conformance``).

``--child ID...`` runs those cases in this process and reports each on stdout;
``--hold-device N`` sets device N, reports the ``set_device`` code and holds the device until
stdin closes (the process-slot probe starts these).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional

from .. import _backend
from . import cases
from ._runner import MARK, Result, load_wrapper, run_inline
from .cases_process import HOLD_MARK


def _emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _hold(device: int) -> int:
    acl = _backend.acl()
    ret = acl.init()
    set_ret = acl.rt.set_device(device) if ret == 0 else ret
    _emit(f"{HOLD_MARK}{set_ret}")
    try:
        sys.stdin.read()  # until the prober closes our stdin (or dies)
    finally:
        if set_ret == 0:
            acl.rt.reset_device(device)
        if ret == 0:
            acl.finalize()
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ascend_safe.conformance")
    parser.add_argument("--child", action="store_true", help="run the given case ids here")
    parser.add_argument("--hold-device", type=int, default=None)
    parser.add_argument("--device", type=int, default=0)
    parser.add_argument("--wrap", default=None, help="test-only: module:function wrapping acl")
    parser.add_argument("--model", action="append", default=[], help="a model file")
    parser.add_argument("ids", nargs="*")
    args = parser.parse_args(argv)
    if args.hold_device is not None:
        return _hold(args.hold_device)
    if not args.child:
        parser.error("this module is run by the kit; use: python -m ascend_safe conformance")
    by_id = {c.id: c for c in cases()}
    unknown = [i for i in args.ids if i not in by_id]
    if unknown:
        parser.error(f"unknown case ids: {', '.join(unknown)}")
    acl: Any = _backend.acl()
    if args.wrap:
        acl = load_wrapper(args.wrap)(acl)

    def report(result: Result) -> None:
        _emit(MARK + "result " + json.dumps(result.to_json()))

    run_inline(
        acl,
        [by_id[i] for i in args.ids],
        device=args.device,
        starting=lambda case: _emit(f"{MARK}start {case.id}"),
        report=report,
        models=args.model,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
