"""`js_json` against Node itself: the bytes of a MyCover webhook body must be exactly what
`JSON.stringify(JSON.parse(body))` gives back, since receivers hash that re-serialization.

One Node process serves the whole module: it reads one JSON text per line and answers each
with `JSON.stringify(JSON.parse(line))` (or `!error`), so hundreds of documents cost well
under a second.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coverline.webhooks.formats import js_json, js_number

NODE_ECHO = r"""
const lines = require("readline").createInterface({ input: process.stdin });
lines.on("line", (line) => {
  let answer;
  try { answer = JSON.stringify(JSON.parse(line)); } catch (error) { answer = "!error"; }
  process.stdout.write(answer + "\n");
});
"""


class Node:
    def __init__(self) -> None:
        node = shutil.which("node")
        assert node is not None, "Node.js (`node`) is needed to check the JSON canonicaliser"
        self.process = subprocess.Popen(
            [node, "-e", NODE_ECHO], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    def reserialize(self, body: bytes) -> bytes:
        assert b"\n" not in body
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(body + b"\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().rstrip(b"\n")

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    started = Node()
    yield started
    started.close()


EDGE_INTEGERS = [2**53 - 1, 2**53, 2**53 + 1, -(2**53) - 1, 2**63, 2**64 + 1, 10**21, 10**30]
EDGE_FLOATS = [0.0, -0.0, 1e21, 1e-7, 1e-6, 123456789012345680000.0, 5e-324, 1.7976931348623157e308]
# Lone surrogates, a pair written as two of them, astral and combining characters, controls.
EDGE_TEXT = [
    "\ud800",
    "a\udfffb",
    "\ud83d\ude00",
    "\U0001f600",
    "e\u0301",
    "\x00\x1f\x7f",
    "\u2028",
]

numbers = st.one_of(
    st.integers(),
    st.sampled_from(EDGE_INTEGERS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(EDGE_FLOATS),
)
texts = st.one_of(
    st.text(st.characters(codec=None, exclude_categories=())),
    st.sampled_from(EDGE_TEXT),
)
keys = st.one_of(texts, st.integers(0, 2**33).map(str), st.sampled_from(["01", "-1", "1.0"]))
documents = st.recursive(
    st.none() | st.booleans() | numbers | texts,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
    max_leaves=25,
)
BUDGET = settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@BUDGET
@given(document=documents)
def test_body_is_what_javascript_gives_back(node: Node, document: Any) -> None:
    body = js_json(document)
    assert node.reserialize(body) == body


@BUDGET
@given(document=documents)
def test_body_is_javascripts_reading_of_any_faithful_encoding(node: Node, document: Any) -> None:
    """Whatever JSON carries the document (here the standard library's, with exact integers
    and ASCII escapes), JavaScript reads and writes it as `js_json` does."""
    assert node.reserialize(json.dumps(document).encode()) == js_json(document)


@settings(max_examples=200, derandomize=True, database=None, deadline=None)
@given(value=st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(EDGE_FLOATS))
def test_numbers_are_written_as_javascript_writes_them(node: Node, value: float) -> None:
    assert node.reserialize(repr(value).encode()) == js_number(value).encode()


def test_an_int_and_a_float_of_one_value_are_one_javascript_number() -> None:
    assert js_json({"amount": 68.0, "count": 68}) == b'{"amount":68,"count":68}'
    assert js_json([2.0**60, 2**60]) == b"[1152921504606847000,1152921504606847000]"


def test_what_json_cannot_carry_is_written_as_javascript_writes_it() -> None:
    assert js_json([math.nan, math.inf, -math.inf, 10**400]) == b"[null,null,null,null]"
