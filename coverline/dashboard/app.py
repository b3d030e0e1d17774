"""The dashboard as an application of its own, mounted at `/dashboard` by `coverline.app`:
HTML error pages instead of the API's JSON, and strict security headers on every response."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from coverline.dashboard.views import (
    api_keys,
    bookings,
    messaging,
    operator,
    overview,
    sandbox,
    session,
    webhooks,
)
from coverline.dashboard.web import SecurityHeaders, SignInRequired, error_page, sign_in_redirect
from coverline.db.engine import database_unreachable
from coverline.kit.errors import CoverlineError
from coverline.runtime import Services

log = logging.getLogger("coverline.dashboard")


def create_dashboard(services: Callable[[], Services]) -> FastAPI:
    dashboard = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    dashboard.state.services = services

    @dashboard.exception_handler(SignInRequired)
    async def sign_in_required(request: Request, exc: SignInRequired) -> Response:
        return sign_in_redirect(exc.next_path)

    @dashboard.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        message = str(exc.detail) if exc.status_code != 404 else "There is no such page."
        return error_page(exc.status_code, message)

    @dashboard.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        return error_page(400, "The address is not one the dashboard understands.")

    @dashboard.exception_handler(CoverlineError)
    async def domain_error(request: Request, exc: CoverlineError) -> Response:
        if exc.status_code == 404:
            return error_page(404, "There is no such page.")
        return error_page(exc.status_code, exc.message)

    # Handled here, not left to the API's handlers: a sub-application's unexpected error is
    # re-raised once its page is sent, and the API's database handler would then find the
    # response started (and the connection be dropped).
    @dashboard.exception_handler(SQLAlchemyError)
    @dashboard.exception_handler(OSError)
    async def database_error(request: Request, exc: Exception) -> Response:
        if database_unreachable(exc):
            log.warning("database unreachable on %s: %s", request.url.path, exc)
            response = error_page(503, "The database is briefly out of reach; try again.")
            response.headers["Retry-After"] = "1"
            return response
        log.error("dashboard error on %s", request.url.path, exc_info=exc)
        return error_page(500, "The page could not be shown. The error is logged.")

    @dashboard.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("dashboard error on %s", request.url.path)
        return error_page(500, "The page could not be shown. The error is logged.")

    # The operator's pages come first: `/operator/partners` also fits `/{code}/{mode}`.
    for module in (session, operator, overview, bookings, webhooks, api_keys, sandbox, messaging):
        dashboard.include_router(module.router)
    dashboard.add_middleware(SecurityHeaders)
    return dashboard
