"""API keys of the calling partner, in the calling mode: list, create (rotate), revoke."""

from __future__ import annotations

from typing import Any

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from coverline.kit.dates import server_time
from coverline.kit.http import NoBody, PartnerRouter
from coverline.partners import service
from coverline.partners.deps import PartnerCall, partner_call
from coverline.partners.models import ApiCredential
from coverline.partners.schemas import ApiKeyListOut, ApiKeyOut, IssuedApiKeyOut

router = PartnerRouter(tags=["api keys"])


def credential_json(credential: ApiCredential, current_id: int) -> dict[str, Any]:
    return {
        "api_key": credential.api_key,
        "mode": credential.mode,
        "status": credential.status,
        "created_at": server_time(credential.created_at),
        "revoked_at": server_time(credential.revoked_at) if credential.revoked_at else None,
        "current": credential.id == current_id,
    }


@router.get("/api_keys/", response_model=ApiKeyListOut, summary="List the API keys of this mode")
async def list_keys(call: PartnerCall = Depends(partner_call)) -> Response:
    async def work(session: AsyncSession) -> dict[str, Any]:
        partner = await service.get_partner(session, call.principal.partner_code)
        keys = [
            credential_json(c, call.principal.credential_id)
            for c in await service.list_credentials(session, partner)
            if c.mode == call.principal.mode
        ]
        return {"count": len(keys), "results": keys}

    return await call.read(work)


@router.post(
    "/api_keys/",
    status_code=201,
    response_model=IssuedApiKeyOut,
    summary="Create a new API key (rotation: the old key stays valid until revoked)",
)
async def create_key(
    _body: NoBody | None = None, call: PartnerCall = Depends(partner_call)
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        partner = await service.get_partner(session, call.principal.partner_code)
        issued = await service.issue_credential(
            session, call.services.box, partner, call.principal.mode, call.services.clock.now()
        )
        return 201, {
            "api_key": issued.api_key,
            "api_secret": issued.api_secret,
            "mode": issued.mode,
            "status": "active",
            "created_at": server_time(issued.created_at),
        }

    return await call.write(work)


@router.delete("/api_keys/{api_key}/", response_model=ApiKeyOut, summary="Revoke an API key")
async def revoke_key(
    api_key: str, _body: NoBody | None = None, call: PartnerCall = Depends(partner_call)
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        partner = await service.get_partner(session, call.principal.partner_code)
        credential = await service.revoke_credential(
            session, partner, api_key, call.services.clock.now(), mode=call.principal.mode
        )
        return 200, credential_json(credential, call.principal.credential_id)

    response = await call.write(work)
    call.services.authenticator.forget()
    return response
