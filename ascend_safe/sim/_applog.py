"""``acl.app_log``: application log records (pyACL ``py_init_acl.cpp``, runtime
``src/acl/aclrt_impl/log.cpp`` and ``src/acl/common/log_inner.cpp``).

The runtime writes them to the device log (slog), not to the console. The simulator hands them
to the standard ``logging`` logger ``ascend_safe.sim.app_log``, which has a ``NullHandler`` so
nothing is printed unless the application configures logging.
"""

from __future__ import annotations

import logging

from ._core import Core

__all__ = ["APP_LOGGER", "LogDomain"]

#: Where ``acl.app_log`` records go.
APP_LOGGER = logging.getLogger("ascend_safe.sim.app_log")
APP_LOGGER.addHandler(logging.NullHandler())

#: aclLogLevel (include/external/acl/acl_base_rt.h) -> logging level. Other values are dropped.
_LEVELS = {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR}

#: The runtime formats a record into a 1024-byte buffer (log_inner.h MAX_LOG_STRING).
_MAX_BODY = 1023


class LogDomain(Core):
    """``acl.app_log``."""

    def api_app_log(self, level: int, message: str) -> None:
        # PyArg_ParseTuple's "s" refuses embedded NULs and text that is not UTF-8 encodable; the
        # wrapper's CHECK_NULL replaces that error with its own TypeError.
        try:
            raw = message.encode("utf-8")
        except UnicodeEncodeError:
            raise TypeError("acl.app_log args parse failed") from None
        if b"\x00" in raw:
            raise TypeError("acl.app_log args parse failed")
        python_level = _LEVELS.get(level)
        if python_level is None:
            return None
        if len(raw) > _MAX_BODY:
            message = raw[:_MAX_BODY].decode("utf-8", "ignore")
        APP_LOGGER.log(python_level, "%s", message)
        return None
