"""Run a function in another thread and re-raise what it raised there."""

from __future__ import annotations

import threading
from typing import Callable


def in_other_thread(fn: Callable[[], object]) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if errors:
        raise errors[0]
