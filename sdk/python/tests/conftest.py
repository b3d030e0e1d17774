"""Fixtures of the SDK's tests.

The tests marked `slow` run against one real `coverline serve` process for the whole session,
started with the server project's own fixture (`tests/fixtures/server.py` of the repository),
so they need the repository checked out around `sdk/python` and its environment (run them
with `uv run --with-editable sdk/python pytest sdk/python/tests` from the repository root).
The other tests need only the SDK, httpx and pytest.
"""

from __future__ import annotations

import importlib
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from coverline_sdk import Coverline

REPO_ROOT = Path(__file__).resolve().parents[3]


def repo_module(name: str) -> Any:
    """A module of the server's repository (its test fixtures): the tests run from it."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        pytest.fail(f"the Coverline server's {name} is not importable here: {exc}")


NEEDS_SECOND_PARTNER = pytest.StashKey[bool]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    config.stash[NEEDS_SECOND_PARTNER] = any(
        "other_partner" in getattr(item, "fixturenames", ()) for item in items
    )


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """One `coverline serve --demo` for the session (the demo catalogue and partner), allowed
    to post webhooks to this machine."""
    module = repo_module("tests.fixtures.server")
    env = {"COVERLINE_WEBHOOKS_ALLOW_PRIVATE_NETWORKS": "true"}
    tmp = tmp_path_factory.mktemp("coverline")
    # A second partner comes from the CLI, which takes seconds to start: it is made while
    # the first tests run.
    running = module.running_server(tmp, args=["--demo"], env=env, request=request)
    with running as started, ThreadPoolExecutor(max_workers=1) as pool:
        if request.config.stash.get(NEEDS_SECOND_PARTNER, True):
            started.second_partner = pool.submit(started.create_partner, "SDK second partner")
        yield started


def demo_credentials(output: str) -> dict[str, Any]:
    """The credentials `coverline serve --demo` prints after "Demo partner ready:"."""
    text = output.split("Demo partner ready:", 1)[1]
    document: dict[str, Any] = json.JSONDecoder().raw_decode(text.strip())[0]
    return document


@pytest.fixture(scope="session")
def partner(server: Any) -> dict[str, Any]:
    """The demo partner, which most tests share (`{"code", "sandbox": {"api_key",
    "api_secret"}, "live": {…}}`); its sandbox clock never moves."""
    return demo_credentials(server.wait_for_stdout(lambda text: "API docs:" in text))


@pytest.fixture(scope="session")
def other_partner(server: Any) -> dict[str, Any]:
    """A second partner, for the tests that move its sandbox clock or own its webhooks."""
    pending = getattr(server, "second_partner", None)
    created: dict[str, Any] = (
        pending.result(timeout=300) if pending else server.create_partner("SDK second partner")
    )
    return created


@pytest.fixture(scope="session")
def server_paths(server: Any) -> set[str]:
    """The paths of the server's OpenAPI document: the endpoints it has."""
    document = httpx.get(f"{server.base_url}/api/openapi.json", timeout=30).json()
    return set(document["paths"])


def need(paths: set[str], relative: str) -> None:
    """Fail clearly when the server lacks a partner endpoint the SDK calls."""
    if f"/api/partners/{{partner_code}}/{relative}" not in paths:
        pytest.fail(f"the server has no {relative}")


def client_for(server: Any, partner: dict[str, Any], **options: Any) -> Coverline:
    sandbox = partner["sandbox"]
    return Coverline(
        server.base_url, partner["code"], sandbox["api_key"], sandbox["api_secret"], **options
    )


@pytest.fixture(scope="session")
def client(server: Any, partner: dict[str, Any]) -> Iterator[Coverline]:
    with client_for(server, partner) as made:
        yield made
