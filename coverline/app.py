"""The FastAPI application: routers, error rendering, request ids, and the process lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coverline.auxiliary.api import router as auxiliary_router
from coverline.bookings.api import router as bookings_router
from coverline.bookings.lifecycle_api import router as lifecycle_router
from coverline.config import Settings, get_settings
from coverline.dashboard.app import create_dashboard
from coverline.dashboard.web import BASE as DASHBOARD
from coverline.dashboard.web import SECURITY_HEADERS, error_page
from coverline.db.engine import database_unreachable
from coverline.documents.api import router as documents_router
from coverline.kit.errors import (
    BadRequest,
    CoverlineError,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from coverline.kit.heap import freeze_startup
from coverline.kit.http import (
    AUTHENTICATED_ERRORS,
    ENCODED_BODY,
    UNSTORABLE_TEXT,
    JSONResponse,
    error_responses,
    translate_validation_error,
    unstorable_text,
)
from coverline.kit.request_id import accepted_request_id, bound_request_id, new_request_id
from coverline.messaging.api import router as messaging_router
from coverline.observability.http import MetricsPage, RequestObserver
from coverline.partners.api import router as keys_router
from coverline.partners.deps import authenticated
from coverline.partners.ratelimit import RateLimitState
from coverline.quotes.api import router as quotes_router
from coverline.renewals.api import router as renewals_router
from coverline.runtime import Services
from coverline.sandbox.api import router as sandbox_router
from coverline.webhooks.api import router as webhooks_router
from coverline.worker import BackgroundWorker

log = logging.getLogger("coverline")
STATIC = Path(__file__).parent / "static"
REQUEST_ID_HEADER = "X-Request-Id"


def request_id_of(scope: Scope) -> str:
    """The client's `X-Request-Id` when it is sane (kept end to end), else a new one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return accepted_request_id(value.decode("latin-1")) or new_request_id()
    return new_request_id()


class BodyTooLarge(StarletteHTTPException):
    """A body found too large while it is read. FastAPI lets HTTP exceptions out of its body
    parsing (it turns any other exception there into a 400), and both error handlers, the
    API's and the dashboard's, render it."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"The request body exceeds {limit} bytes.")


class UnstorableText(StarletteHTTPException):
    """A body with text no database takes (raised once the whole body is in, before parsing)."""

    def __init__(self) -> None:
        super().__init__(status_code=400, detail=UNSTORABLE_TEXT)


class RequestGuard:
    """Pure ASGI: a request id on every response and in the context of everything the
    request runs; before any parsing, the body size limit, and text no database takes
    (U+0000, lone surrogates) refused in the path, the query string and the body."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        with bound_request_id(request_id):
            await self._guarded(scope, receive, send, request_id)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        refusal: CoverlineError | None = None
        content_type = ""
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                refusal = PayloadTooLarge(f"The request body exceeds {self.max_body_bytes} bytes.")
            elif name == b"content-type" and not content_type:
                # The first, as the parsers read it: a second one must not pass unchecked.
                content_type = value.decode("latin-1")
            elif name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
                refusal = BadRequest(ENCODED_BODY)
        query = scope.get("query_string", b"")
        if "\x00" in scope["path"] or b"%00" in query or b"\x00" in query:
            refusal = BadRequest(UNSTORABLE_TEXT)
        elif b"%2f" in scope.get("raw_path", b"").partition(b"?")[0].lower():
            # An encoded slash is part of a segment, not a separator: no resource has one in
            # its name, and routing it as `/` would let `bookings/X%2Fcancel` reach another.
            # (Some servers keep the query in `raw_path`: it may hold encoded slashes.)
            refusal = NotFound()
        if refusal is not None:
            response: Response
            if scope["path"] == DASHBOARD or scope["path"].startswith(DASHBOARD + "/"):
                # A page, with the headers of every dashboard page.
                response = error_page(refusal.status_code, refusal.message)
                response.headers.update(SECURITY_HEADERS)
            else:
                response = JSONResponse(refusal.body(), status_code=refusal.status_code)
            response.headers[REQUEST_ID_HEADER] = request_id
            await response(scope, receive, send)
            return

        chunks: list[bytes] = []
        received = 0
        limit = self.max_body_bytes

        async def guarded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > limit:
                    raise BodyTooLarge(limit)
                chunks.append(chunk)
                if not message.get("more_body") and unstorable_text(b"".join(chunks), content_type):
                    raise UnstorableText()
            return message

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                limit: RateLimitState | None = scope["state"].get("rate_limit")
                present = {name.lower() for name, _ in headers}
                if limit is not None and b"x-ratelimit-limit" not in present:
                    headers.extend(
                        (name.lower().encode(), value.encode())
                        for name, value in limit.headers().items()
                    )
                message["headers"] = headers
            await send(message)

        await self.app(scope, guarded_receive, send_with_id)


def _error_response(request: Request, exc: CoverlineError) -> Response:
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CoverlineError)
    async def coverline_error(request: Request, exc: CoverlineError) -> Response:
        return _error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return _error_response(request, translate_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        kinds = {404: "not_found", 405: "method_not_allowed"}
        # A path no route serves reads like a resource that does not exist.
        messages = {
            "Not Found": NotFound.default_message,
            "Method Not Allowed": "Method not allowed.",
        }
        body = {
            "type": kinds.get(exc.status_code, "invalid_request_error"),
            "message": messages.get(str(exc.detail), str(exc.detail)),
            "errors": {},
        }
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(SQLAlchemyError)
    @app.exception_handler(OSError)
    async def database_error(request: Request, exc: Exception) -> Response:
        # A database that is restarting or out of reach is a moment's outage: 503 tells the
        # client to retry (the transaction rolled back, so nothing was written), and a load
        # balancer's /readyz takes the process out meanwhile. Anything else is a bug.
        if not database_unreachable(exc):
            raise exc
        log.warning("database unreachable: %s", exc, extra={"request_id": request.state.request_id})
        return _error_response(request, ServiceUnavailable(headers={"Retry-After": "1"}))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        request_id = request.state.request_id
        log.exception("unhandled error", extra={"request_id": request_id})
        body = {"type": "api_error", "message": "An internal error occurred.", "errors": {}}
        # Answered outside RequestGuard (by Starlette's outermost middleware): the id that
        # the log line carries is set here.
        return JSONResponse(body, status_code=500, headers={REQUEST_ID_HEADER: request_id})


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = services is None
        app.state.services = services or Services.build(settings)
        worker = None
        if owned and settings.run_worker:
            worker = BackgroundWorker(app.state.services)
            worker.start()
        if owned:
            freeze_startup()
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
            if owned:
                await app.state.services.close()

    app = FastAPI(
        title="Coverline partner API",
        version="1",
        description=(
            "Quote, book, change, cancel and renew insurance policies. Requests are signed "
            "(draft-cavage HMAC) or carry a Bearer secret key; see the integration guide."
        ),
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
        default_response_class=JSONResponse,
        lifespan=lifespan,
        # The API never redirects (a signature covers the path; see SlashAgnosticRouter):
        # a path no route has is a 404, also one that differs by a slash.
        redirect_slashes=False,
    )
    if services is not None:
        app.state.services = services
    install_error_handlers(app)
    app.include_router(quotes_router)
    app.include_router(bookings_router)
    app.include_router(lifecycle_router)
    app.include_router(keys_router)
    app.include_router(webhooks_router)
    app.include_router(messaging_router)
    app.include_router(renewals_router)
    app.include_router(sandbox_router)
    app.include_router(documents_router)
    app.include_router(
        auxiliary_router,
        dependencies=[Depends(authenticated)],
        responses=error_responses(*AUTHENTICATED_ERRORS),
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount(DASHBOARD, create_dashboard(lambda: app.state.services), name="dashboard")

    @app.get(DASHBOARD, include_in_schema=False)
    async def dashboard_home() -> RedirectResponse:
        return RedirectResponse(DASHBOARD + "/")

    @app.get("/api/docs", include_in_schema=False)
    async def api_docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/api/openapi.json",
            title="Coverline partner API",
            swagger_js_url="/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/swagger/favicon-32x32.png",
        )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, Any]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        """The process can serve: its database answers, and Redis when it holds the rate
        limits."""
        services: Services = request.app.state.services
        try:
            async with services.database.reading() as session:
                await session.execute(text("SELECT 1"))
        except (OSError, SQLAlchemyError) as exc:
            body = {"status": "unavailable", "database": type(exc).__name__}
            return JSONResponse(body, status_code=503)
        body = {"status": "ok", "database": "ok"}
        if services.rate_limiter.shared:
            if not await services.rate_limiter.reachable():
                body = {**body, "status": "unavailable", "redis": "unreachable"}
                return JSONResponse(body, status_code=503)
            body["redis"] = "ok"
        return JSONResponse(body)

    if settings.metrics_enabled:
        app.add_api_route(
            "/metrics", MetricsPage(settings).respond, methods=["GET"], include_in_schema=False
        )

    app.add_middleware(RequestGuard, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RequestObserver)
    return app
