"""The dependency every partner endpoint starts with: who calls, for which partner, when."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Path, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from coverline.kit.errors import NotFound
from coverline.kit.http import JSONResponse
from coverline.partners.auth import Principal
from coverline.partners.idempotency import request_digest
from coverline.quotes.service import Scope
from coverline.runtime import Services

IDEMPOTENCY_HEADER = "x-idempotency-key"


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def authenticated(request: Request) -> Principal:
    """Authentication and rate limiting, for endpoints without a partner in the path."""
    services = services_of(request)
    principal = await services.authenticator.authenticate(request)
    request.state.principal = principal
    request.state.rate_limit = await services.rate_limiter.check(principal)
    return principal


@dataclass
class PartnerCall:
    request: Request
    services: Services
    principal: Principal
    scope: Scope

    async def write(
        self,
        work: Callable[[AsyncSession], Awaitable[tuple[int, Any]]],
    ) -> Response:
        """Run a state change in one transaction, under the request's idempotency key."""
        body = await self.request.body()
        digest = request_digest(self.request.method, self.request.url.path, body)
        outcome = await self.services.idempotency.run(
            self.principal,
            self.request.headers.get(IDEMPOTENCY_HEADER),
            digest,
            work,
            self.services.clock.now(),
        )
        headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
        if outcome.status == 204 and not outcome.replayed:
            return Response(status_code=204)
        content = outcome.body if outcome.body is not None else {}
        return JSONResponse(content, status_code=outcome.status, headers=headers)

    async def read(self, work: Callable[[AsyncSession], Awaitable[Any]]) -> Response:
        async with self.services.database.reading() as session:
            content = await work(session)
        return JSONResponse(content)


async def partner_call(
    request: Request,
    partner_code: str = Path(description="The partner's 5-character code, e.g. LLODT."),
) -> PartnerCall:
    principal = await authenticated(request)
    if principal.partner_code != partner_code:
        # Never tell whether another partner's code exists.
        raise NotFound("Not found.")
    services = services_of(request)
    now = await services.clocks.now_for(principal.partner_id, principal.mode)
    scope = Scope(principal.partner_id, principal.mode, now)
    return PartnerCall(request, services, principal, scope)
