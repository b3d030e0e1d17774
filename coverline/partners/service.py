"""Partners and their credentials: creation, rotation, revocation."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from coverline.kit import ids
from coverline.kit.errors import Conflict, NotFound, ValidationFailed
from coverline.partners.crypto import SecretBox, secret_digest
from coverline.partners.models import MODES, ApiCredential, Partner

PARTNER_CODE = re.compile(r"[A-Z0-9]{5}")  # whole: fullmatch
NAME_LENGTH = 200


@dataclass(frozen=True)
class IssuedCredential:
    """A credential as shown once, at creation: the only time the secret is returned."""

    id: int
    mode: str
    api_key: str
    api_secret: str
    created_at: datetime


def _new_key_pair(mode: str) -> tuple[str, str]:
    return f"pk_{mode}_{secrets.token_hex(16)}", f"sk_{mode}_{secrets.token_urlsafe(36)}"


async def issue_credential(
    session: AsyncSession, box: SecretBox, partner: Partner, mode: str, now: datetime
) -> IssuedCredential:
    if mode not in MODES:
        raise ValidationFailed(errors={"mode": [f"Mode must be one of {', '.join(MODES)}."]})
    api_key, api_secret = _new_key_pair(mode)
    credential = ApiCredential(
        partner_id=partner.id,
        mode=mode,
        api_key=api_key,
        secret_ciphertext=box.encrypt(api_secret),
        secret_digest=secret_digest(api_secret),
        status="active",
        created_at=now,
    )
    session.add(credential)
    await session.flush()
    return IssuedCredential(credential.id, mode, api_key, api_secret, now)


async def create_partner(
    session: AsyncSession, box: SecretBox, *, name: str, code: str | None, now: datetime
) -> tuple[Partner, dict[str, IssuedCredential]]:
    name = name.strip()
    if not name:
        raise ValidationFailed(errors={"name": ["A partner needs a name."]})
    if len(name) > NAME_LENGTH:
        raise ValidationFailed(errors={"name": [f"At most {NAME_LENGTH} characters."]})
    if code is None:
        code = await _free_code(session)
    # ASCII only before it is upper-cased: "ﬃ12".upper() is "FFI12".
    code = code.upper() if code.isascii() else code
    if not PARTNER_CODE.fullmatch(code):
        raise ValidationFailed(
            errors={"code": ["A partner code is 5 upper-case letters or digits."]}
        )
    if await session.scalar(select(Partner.id).where(Partner.code == code)) is not None:
        raise Conflict(f"A partner with code {code} exists already.")
    partner = Partner(code=code, name=name, status="active", created_at=now)
    session.add(partner)
    await session.flush()
    issued = {mode: await issue_credential(session, box, partner, mode, now) for mode in MODES}
    return partner, issued


async def _free_code(session: AsyncSession) -> str:
    while True:
        code = ids.partner_code()
        if await session.scalar(select(Partner.id).where(Partner.code == code)) is None:
            return code


async def get_partner(session: AsyncSession, code: str) -> Partner:
    partner = await session.scalar(select(Partner).where(Partner.code == code.upper()))
    if partner is None:
        raise NotFound(f"Unknown partner {code}.")
    return partner


async def list_credentials(session: AsyncSession, partner: Partner) -> list[ApiCredential]:
    rows = await session.scalars(
        select(ApiCredential)
        .where(ApiCredential.partner_id == partner.id)
        .order_by(ApiCredential.created_at, ApiCredential.id)
    )
    return list(rows)


async def revoke_credential(
    session: AsyncSession,
    partner: Partner,
    api_key: str,
    now: datetime,
    *,
    mode: str | None = None,
) -> ApiCredential:
    query = select(ApiCredential).where(
        ApiCredential.partner_id == partner.id, ApiCredential.api_key == api_key
    )
    if mode is not None:
        query = query.where(ApiCredential.mode == mode)
    credential = await session.scalar(query)
    if credential is None:
        raise NotFound("Unknown API key.")
    if credential.status == "revoked":
        raise Conflict("This API key is revoked already.")
    credential.status = "revoked"
    credential.revoked_at = now
    return credential
