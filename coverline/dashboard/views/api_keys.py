"""API keys of the mode: the secret shown once at creation, rotation (a new key while the
old one keeps working until revoked) and revocation."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.responses import Response

from coverline.dashboard.web import PartnerPage, not_found, page, partner_page, redirect
from coverline.kit.errors import Conflict, NotFound
from coverline.partners import service
from coverline.partners.models import Partner
from coverline.partners.service import IssuedCredential

router = APIRouter()
PATH = "/{code}/{mode}/api-keys"


async def _keys_page(
    p: PartnerPage, issued: IssuedCredential | None = None, error: str | None = None
) -> Response:
    async with p.services.database.reading() as session:
        partner = await session.get(Partner, p.partner.id)
        assert partner is not None
        credentials = [
            c for c in await service.list_credentials(session, partner) if c.mode == p.mode
        ]
    return await page(
        p,
        "api_keys.html",
        "api-keys",
        status_code=409 if error else 200,
        credentials=list(reversed(credentials)),
        issued=issued,
        error=error,
    )


@router.get(PATH)
async def api_keys(p: PartnerPage = Depends(partner_page)) -> Response:
    return await _keys_page(p)


@router.post(PATH)
async def create_key(p: PartnerPage = Depends(partner_page)) -> Response:
    async with p.services.database.transaction() as session:
        partner = await session.get(Partner, p.partner.id)
        assert partner is not None
        issued = await service.issue_credential(
            session, p.services.box, partner, p.mode, p.services.clock.now()
        )
    return await _keys_page(p, issued=issued)


@router.post(PATH + "/{api_key}/revoke")
async def revoke_key(api_key: str, p: PartnerPage = Depends(partner_page)) -> Response:
    try:
        async with p.services.database.transaction() as session:
            partner = await session.get(Partner, p.partner.id)
            assert partner is not None
            await service.revoke_credential(
                session, partner, api_key, p.services.clock.now(), mode=p.mode
            )
    except NotFound:
        raise not_found() from None
    except Conflict as exc:
        return await _keys_page(p, error=exc.message)
    p.services.authenticator.forget()
    return redirect(p.url("api-keys", notice="revoked"))
