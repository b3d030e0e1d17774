"""The id of the API request, or of the worker job, that the running code serves.

It lives in a context variable so that log lines and the events a request writes carry it
without every function passing it along; asyncio tasks copy it when they are created.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

MAX_LENGTH = 64
# Ids that are safe to echo in a header, store in a column and print in a log line: UUIDs,
# ULIDs, hex, W3C trace ids. Anything else is replaced, never truncated or escaped.
_ACCEPTED = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_LENGTH}}}")
JOB_PREFIX = "job_"

_current: ContextVar[str | None] = ContextVar("coverline_request_id", default=None)


def current_request_id() -> str | None:
    return _current.get()


def new_request_id() -> str:
    return uuid.uuid4().hex


def new_job_id() -> str:
    return JOB_PREFIX + secrets.token_hex(8)


def accepted_request_id(sent: str | None) -> str | None:
    """The client's own id when it is short and plain enough to keep; else None."""
    if sent is None or not _ACCEPTED.fullmatch(sent):
        return None
    return sent


@contextmanager
def bound_request_id(request_id: str | None) -> Iterator[None]:
    token = _current.set(request_id)
    try:
        yield
    finally:
        _current.reset(token)
