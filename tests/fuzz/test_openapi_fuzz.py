"""Schemathesis against the OpenAPI document of a real `coverline serve`, every request signed
as partners sign them, aimed at real resources (tests/fuzz/seeds.py).

Checks on every response: no 5xx, the status code is one the operation documents, the body
matches the schema declared for that status, and the content type is the declared one.

The budget is fixed and deterministic: `COVERLINE_FUZZ_EXAMPLES` cases per operation (default
8), derandomized, no example database. Run a bigger budget locally with, e.g.,
`COVERLINE_FUZZ_EXAMPLES=200 uv run pytest tests/fuzz/test_openapi_fuzz.py`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from coverline.app import create_app
from coverline.config import Settings
from coverline.partners.signatures import authorization_header
from tests.fixtures.server import CoverlineServer, running_server
from tests.fixtures.signing import http_date
from tests.fuzz.seeds import SeedPartner, Seeds, seeds_for

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("COVERLINE_FUZZ_EXAMPLES", "8"))
PARTNER_PREFIX = "/api/partners/{partner_code}/"
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]


# Values that schemas allow but generators rarely reach: past 64 bits, past a double, empty,
# NUL, very long; put into one place of a body or query now and then.
EDGE_VALUES: list[Any] = [
    2**63,
    2**64,
    -(2**63) - 1,
    10**30,
    -1,
    0,
    1e308,
    -0.0,
    "",
    "\x00",
    "9" * 5000,
    "\U0001f600\u0301",
    [],
    {},
    None,
    True,
]


def leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict) and value:
        return [p for key, item in value.items() for p in leaf_paths(item, (*path, key))]
    if isinstance(value, list) and value:
        return [p for index, item in enumerate(value) for p in leaf_paths(item, (*path, index))]
    return [path]


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(document, dict):
        return {**document, head: replaced(document[head], rest, value)}
    copy = list(document)
    copy[head] = replaced(copy[head], rest, value)
    return copy


def documented_operations() -> list[tuple[str, str]]:
    """Every operation of the document, from the application itself, for test ids."""
    app = create_app(Settings(master_key=Fernet.generate_key().decode()))
    document = app.openapi()
    return [
        (method.upper(), path) for path, methods in document["paths"].items() for method in methods
    ]


OPERATIONS = documented_operations()


class PartnerSignature(requests.auth.AuthBase):
    """Signs the request exactly as it goes on the wire: the path with its query string."""

    def __init__(self, api_key: str, api_secret: str) -> None:
        self.api_key = api_key
        self.api_secret = api_secret

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        date = http_date()
        assert request.method is not None
        request.headers["Date"] = date
        request.headers["Authorization"] = authorization_header(
            self.api_key,
            self.api_secret,
            method=request.method,
            path=request.path_url,
            date=date,
        )
        return request


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[CoverlineServer]:
    # No worker: the webhook URLs and phone numbers the fuzzer makes up are never called.
    with running_server(
        tmp_path_factory.mktemp("fuzz"),
        args=["--demo", "--no-worker"],
        env={"COVERLINE_RATE_LIMIT": "100000/second"},
        request=request,
    ) as started:
        yield started


@pytest.fixture(scope="module")
def credentials(server: CoverlineServer) -> dict[str, Any]:
    printed = server.wait_for_stdout(lambda text: "API docs:" in text)
    block = printed.split("Demo partner ready:", 1)[1].split("API docs:", 1)[0]
    found: dict[str, Any] = json.loads(block)
    return found


@pytest.fixture(scope="module")
def api_schema(server: CoverlineServer) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{server.base_url}/api/openapi.json")


@pytest.fixture(scope="module")
def seed_partner(server: CoverlineServer, credentials: dict[str, Any]) -> Iterator[SeedPartner]:
    sandbox = credentials["sandbox"]
    with httpx.Client(base_url=server.base_url, timeout=30.0) as http:
        yield SeedPartner(http, credentials["code"], sandbox["api_key"], sandbox["api_secret"])


@pytest.fixture(scope="module")
def session(credentials: dict[str, Any]) -> Iterator[requests.Session]:
    with requests.Session() as opened:
        opened.auth = PartnerSignature(
            credentials["sandbox"]["api_key"], credentials["sandbox"]["api_secret"]
        )
        yield opened


def test_every_served_operation_is_fuzzed(api_schema: schemathesis.BaseSchema) -> None:
    served = {
        (operation.method.upper(), operation.path)
        for operation in (result.ok() for result in api_schema.get_all_operations())
    }
    assert served == set(OPERATIONS)


def case_strategy(operation: Any, code: str, seeds: Seeds) -> st.SearchStrategy[Any]:
    generated = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )

    @st.composite
    def aimed(draw: st.DrawFn) -> Any:
        case = draw(generated)
        if "partner_code" in (case.path_parameters or {}):
            case.path_parameters["partner_code"] = code
        for name, values in seeds.path.items():
            if name in (case.path_parameters or {}):
                # Mostly a real id, sometimes the generated one.
                choice = draw(st.sampled_from([*values, *values, *values, None]))
                if choice is not None:
                    case.path_parameters[name] = choice
        if seeds.bodies and draw(st.integers(0, 2)) > 0:
            body = draw(st.sampled_from(seeds.bodies))
            if isinstance(body, dict) and isinstance(case.body, dict) and draw(st.booleans()):
                # A valid body with some fields from the generated one: deep and odd.
                keys = draw(st.sets(st.sampled_from(sorted(case.body)))) if case.body else set()
                body = {**body, **{key: case.body[key] for key in keys}}
            case.body = body
        if isinstance(case.body, (dict, list)) and draw(st.integers(0, 3)) == 0:
            where = draw(st.sampled_from(leaf_paths(case.body)))
            case.body = replaced(case.body, where, draw(st.sampled_from(EDGE_VALUES)))
        if case.query and draw(st.integers(0, 3)) == 0:
            name = draw(st.sampled_from(sorted(case.query)))
            case.query = {**case.query, name: draw(st.sampled_from(EDGE_VALUES[:12]))}
        if case.method.upper() in WRITES and draw(st.integers(0, 3)) == 0:
            # Replays (409 with the stored body) and reuse with another body (422).
            number = draw(st.integers(1, 2))
            case.headers = {
                **(case.headers or {}),
                "x-idempotency-key": f"{case.method} {case.path} {number}",
            }
        return case

    return aimed()


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation(
    method: str,
    path: str,
    api_schema: schemathesis.BaseSchema,
    server: CoverlineServer,
    seed_partner: SeedPartner,
    session: requests.Session,
) -> None:
    operation = api_schema[path][method]
    relative = path[len(PARTNER_PREFIX) :] if path.startswith(PARTNER_PREFIX) else path
    seeds = seeds_for(seed_partner, method, relative)

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=case_strategy(operation, seed_partner.code, seeds))
    def fuzz(case: Any) -> None:
        response = case.call(base_url=server.base_url, session=session)
        print(
            "CASE",
            response.status_code,
            case.path_parameters,
            case.headers,
            str(case.body)[:150],
            response.text[:150],
        )
        case.validate_response(response, checks=CHECKS)

    fuzz()
