"""The API's request metrics and access log (pure ASGI), and its /metrics page."""

from __future__ import annotations

import logging
import time
from urllib.parse import quote

from fastapi import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coverline.config import Settings
from coverline.kit.http import TwinRoute
from coverline.observability import metrics
from coverline.observability.backlog import Backlog
from coverline.partners.auth import Principal
from coverline.runtime import Services

access_log = logging.getLogger("coverline.access")

UNMATCHED = "<unmatched>"
# Any other method is counted as OTHER: a client must not be able to add label values.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LOGGED_PATH_CHARACTERS = 512


def route_template(scope: Scope, root_path: str) -> str:
    """The template of the route that answered (`/api/partners/{partner_code}/...`), with the
    prefix of the mounts it is in; one label for every path no route knows."""
    route = scope.get("route")
    # A mount appends the path it matched to `root_path`; FastAPI names no route for it.
    mounted = str(scope.get("root_path", ""))[len(root_path) :]
    if isinstance(route, TwinRoute):
        return mounted + route.canonical_path
    path = getattr(route, "path_format", None)
    if isinstance(route, Mount) or (path is None and mounted):
        return mounted + "/{path}"
    return mounted + path if isinstance(path, str) else UNMATCHED


def _logged_path(scope: Scope) -> str:
    # The raw path keeps its percent-escapes: a decoded %0A would start a forged log line.
    raw = scope.get("raw_path")
    path = raw.decode("ascii", "replace") if raw else quote(scope.get("path", ""))
    return path[:LOGGED_PATH_CHARACTERS]


class RequestObserver:
    """Counts and times every request by route template, and writes its access log line:
    method, path (no query string), route, status, duration, partner and request id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        root_path = str(scope.get("root_path", ""))
        # An exception that escapes the application becomes a 500 (ServerErrorMiddleware).
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            seconds = time.perf_counter() - started
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            route = route_template(scope, root_path)
            metrics.http_request(method, route, status, seconds)
            state = scope.get("state", {})
            principal = state.get("principal")
            partner = principal if isinstance(principal, Principal) else None
            path = _logged_path(scope)
            duration_ms = round(seconds * 1000, 1)
            access_log.info(
                "%s %s %s %.1f ms",
                method,
                path,
                status,
                duration_ms,
                extra={
                    "request_id": state.get("request_id"),
                    "method": method,
                    "path": path,
                    "route": route,
                    "status": status,
                    "duration_ms": duration_ms,
                    "partner": partner.partner_code if partner else None,
                    "mode": partner.mode if partner else None,
                },
            )


class MetricsPage:
    """GET /metrics: this process's metrics (all processes' with multiprocess mode) and the
    backlog read from the database. No partner data: every label is a bounded name."""

    def __init__(self, settings: Settings) -> None:
        self._cache_seconds = settings.metrics_backlog_cache_seconds
        self._backlog: Backlog | None = None

    async def respond(self, request: Request) -> Response:
        if self._backlog is None:
            services: Services = request.app.state.services
            self._backlog = Backlog(services.database, services.clock, self._cache_seconds)
        body, content_type = metrics.exposition(
            request.headers.get("accept", ""), await self._backlog.families()
        )
        return Response(body, headers={"Content-Type": content_type})
