"""The regular expressions of products' field schemas (`pattern`), matched by RE2 in time
linear in the text.

The text comes from a partner's request; Python's `re` backtracks, and a pattern with nested
repetition (`^(a+)+$`) takes seconds for 25 characters and hours for 40, holding the event
loop and every other request meanwhile. RE2 gives up what needs backtracking (backreferences,
lookaround): a catalogue that uses either is refused when it is loaded (`problem`).
"""

from __future__ import annotations

import functools
from typing import Any

import re2

# What RE2 may spend compiling one pattern: enough for any pattern a field needs, and a
# refusal for the ones that expand to millions of states (`(a{100}){100}{100}`).
MAX_MEMORY = 8 << 20


def _options() -> Any:
    options = re2.Options()
    options.max_mem = MAX_MEMORY
    options.log_errors = False
    return options


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern, _options())


def problem(pattern: str) -> str | None:
    """Why RE2 cannot match `pattern` (its own words); None when it can."""
    try:
        _compiled(pattern)
    except re2.error as error:
        reason = error.args[0] if error.args else "not a regular expression"
        return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
    return None


def search(pattern: str, text: str) -> bool:
    """Whether `pattern` matches somewhere in `text` (JSON Schema patterns are unanchored)."""
    return _compiled(pattern).search(text) is not None
