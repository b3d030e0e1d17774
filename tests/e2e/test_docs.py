"""The OpenAPI document and the API docs page of a real server: complete and self-hosted."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.fixtures.server import CoverlineServer, running_server

pytestmark = pytest.mark.slow

PARTNER = "/api/partners/{partner_code}/"
# The partner operations of API-CONTRACT §6 served today, by path and method.
PARTNER_OPERATIONS = {
    "quotes/": {"post"},
    "quotes/{package_id}/": {"get", "patch"},
    "quotes/{package_id}/add/": {"post"},
    "quotes/{package_id}/delete/": {"post"},
    "bookings/{package_id}/opt_out": {"post"},
    "instant_booking/": {"post"},
    "bookings/": {"get"},
    "bookings/{package_id}/": {"get", "post", "patch"},
    "bookings/{package_id}/confirm": {"put"},
    "bookings/{package_id}/quote_for_update": {"patch"},
    "bookings/{package_id}/confirm_update/{update_id}/": {"post"},
    "bookings/{package_id}/cancel": {"post"},
    "bookings/{package_id}/confirm_cancellation/{cancellation_id}/": {"post"},
    "bookings/{package_id}/instalments/": {"get", "post"},
    "renewals/{package_id}/quote_for_renewal/": {"patch"},
    "renewals/{package_id}/confirm/{renewal_id}/": {"post"},
    "renewals/{package_id}/opt_out/": {"post"},
    "webhooks/": {"get", "post"},
    "webhooks/{endpoint_id}/": {"get", "patch", "delete"},
    "sandbox/clock": {"get", "post"},
}
CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
ABSOLUTE_URL = re.compile(r"""(?:https?:)?//[^\s"'<>)]+""")


class AssetReferences(HTMLParser):
    """Every URL the page makes the browser fetch: src and href attributes, inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href"} and value:
                self.urls.append(value)
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[CoverlineServer]:
    with running_server(tmp_path_factory.mktemp("docs"), request=request) as started:
        yield started


@pytest.fixture
async def http(server: CoverlineServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30.0) as client:
        yield client


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


async def test_openapi_document_lists_the_partner_api(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "Coverline partner API"
    paths = document["paths"]
    for relative, methods in PARTNER_OPERATIONS.items():
        path = PARTNER + relative
        assert path in paths, f"{path} is not documented"
        assert methods <= set(paths[path]), (path, sorted(paths[path]))
    # One entry per endpoint: the trailing-slash twins and internal routes stay out.
    for path in paths:
        twin = path[:-1] if path.endswith("/") else path + "/"
        assert twin not in paths, f"{path} is documented twice"
        assert path.startswith("/api/"), path
    for reference in set(refs(document)):
        assert reference.startswith("#/components/schemas/"), reference
        assert reference.rsplit("/", 1)[1] in document["components"]["schemas"], reference


async def test_docs_page_uses_only_local_assets(
    server: CoverlineServer, http: httpx.AsyncClient
) -> None:
    page = await http.get("/api/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    parser = AssetReferences()
    parser.feed(page.text)
    assert parser.urls, "the page references no assets"

    foreign = [
        url for url in ABSOLUTE_URL.findall(page.text) if not url.startswith(server.base_url)
    ]
    assert foreign == [], f"the page refers to other hosts: {foreign}"

    spec_urls = [
        match
        for script in parser.inline_scripts
        for match in re.findall(r"""url:\s*['"]([^'"]+)['"]""", script)
    ]
    assert spec_urls == ["/api/openapi.json"]
    for url in [*parser.urls, *spec_urls]:
        absolute = urljoin(server.base_url + "/api/docs", url)
        assert urlsplit(absolute).netloc == urlsplit(server.base_url).netloc, url
        asset = await http.get(absolute)
        assert asset.status_code == 200, url
        assert len(asset.content) > 0, url
        for suffix, content_type in CONTENT_TYPES.items():
            if urlsplit(absolute).path.endswith(suffix):
                assert content_type in asset.headers["content-type"], (url, asset.headers)
        if absolute.endswith(".css"):
            # Stylesheets may pull fonts and images in turn: only inline data.
            targets = re.findall(r"""url\(\s*['"]?([^'")]{0,40})""", asset.text)
            assert targets, url
            assert all(target.startswith("data:") for target in targets), targets
    assert {urlsplit(url).path.rsplit(".", 1)[-1] for url in parser.urls} >= {"js", "css"}
