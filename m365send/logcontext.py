"""Correlation fields on every log line of a send: request id, idempotency key, mailbox, Graph ids.

``log_context(...)`` sets them for the duration of a block (a ``ContextVar``, so concurrent sends
on threads or tasks keep their own); a record factory copies them onto each ``LogRecord``, where
logging handlers (and Application Insights, as custom dimensions) see them as attributes. Because
the fields are on the record before ``extra`` is applied, never pass a context field in ``extra``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["add_log_context", "current_log_context", "log_context"]

_FIELDS: ContextVar[dict[str, str]] = ContextVar("m365send_log_fields", default={})  # noqa: B039 - never mutated


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Add ``fields`` (``None`` values are skipped) to every log record made inside the block."""
    token = _FIELDS.set({**_FIELDS.get(), **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _FIELDS.reset(token)


def add_log_context(**fields: str | None) -> None:
    """Add fields to the current block's context (undone when the enclosing ``log_context`` ends)."""
    _FIELDS.set({**_FIELDS.get(), **{k: v for k, v in fields.items() if v}})


def current_log_context() -> dict[str, str]:
    """The fields in force now."""
    return dict(_FIELDS.get())


def _install() -> None:
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_m365send", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        for name, value in _FIELDS.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return record

    factory._m365send = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


_install()
