"""Who is calling: signed requests (draft-cavage HMAC) and Bearer secret keys.

Every failure is a 401 whose message never tells whether an API key exists. Credentials are
cached for a few seconds per process (`COVERLINE_CREDENTIAL_CACHE_SECONDS`), so a revoked key
stops working everywhere within that time and at once in the process that revoked it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute
from starlette.requests import Request

from coverline.config import Settings
from coverline.db.engine import Database
from coverline.kit.clock import Clock
from coverline.kit.errors import AuthenticationFailed, BadRequest
from coverline.partners import signatures
from coverline.partners.crypto import SecretBox, secret_digest
from coverline.partners.models import ApiCredential, Partner

INVALID_SIGNATURE = "Invalid signature."
INVALID_SECRET = "Invalid API secret."  # noqa: S105 (a message, not a secret)
# Computing an HMAC for unknown keys too keeps the timing of both answers alike.
_DECOY_SECRET = "decoy-secret-for-unknown-keys"  # noqa: S105


@dataclass(frozen=True)
class Principal:
    partner_id: int
    partner_code: str
    mode: str
    credential_id: int
    rate_limit: str | None


@dataclass(frozen=True)
class _Credential:
    principal: Principal
    secret: str
    bearer_enabled: bool
    allow_hmac_sha1: bool


def _raw_path(request: Request) -> str | None:
    raw: bytes | None = request.scope.get("raw_path")
    return raw.decode("latin-1") if raw else None


class Authenticator:
    def __init__(
        self,
        database: Database,
        box: SecretBox,
        settings: Settings,
        wall_clock: Clock | None = None,
    ) -> None:
        self._database = database
        self._box = box
        # The Date window is measured on real time: the partner's client signs with it,
        # whatever the business clock says (tests and sandbox test clocks move that one).
        self._wall_clock = wall_clock or Clock()
        self._ttl = settings.credential_cache_seconds
        self._max_skew = settings.signature_max_skew_seconds
        self._by_key: dict[str, tuple[float, _Credential | None]] = {}
        self._by_digest: dict[str, tuple[float, _Credential | None]] = {}

    def forget(self) -> None:
        """Drop cached credentials (after a rotation or revocation in this process)."""
        self._by_key.clear()
        self._by_digest.clear()

    async def authenticate(self, request: Request) -> Principal:
        header = request.headers.get("authorization")
        if not header:
            raise AuthenticationFailed("Authentication credentials were not provided.")
        if header.startswith("Signature "):
            return await self._signed(request, header)
        if header.startswith("Bearer "):
            return await self._bearer(header[len("Bearer ") :].strip())
        raise BadRequest("Invalid bearer token format.")

    async def _signed(self, request: Request, header: str) -> Principal:
        try:
            params = signatures.parse_signature_header(header)
        except signatures.SignatureHeaderError as exc:
            raise BadRequest(str(exc)) from exc
        if params.algorithm not in signatures.ALGORITHMS:
            raise AuthenticationFailed(f"Unsupported signature algorithm '{params.algorithm}'.")
        if "date" not in params.headers:
            raise AuthenticationFailed("The signature must cover the date header.")
        self._check_date(request.headers.get("date"))
        api_key_header = request.headers.get("x-api-key")
        if api_key_header is not None and api_key_header != params.key_id:
            raise AuthenticationFailed("The X-Api-Key header does not match the signature keyId.")

        credential = await self._lookup(self._by_key, ApiCredential.api_key, params.key_id)
        secret = credential.secret if credential else _DECOY_SECRET
        valid = signatures.verify(
            params,
            secret,
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            header_values=request.headers,
            raw_path=_raw_path(request),
        )
        if credential is None or not valid:
            raise AuthenticationFailed(INVALID_SIGNATURE)
        if params.algorithm == "hmac-sha1" and not credential.allow_hmac_sha1:
            raise AuthenticationFailed("The hmac-sha1 algorithm is not enabled for this partner.")
        return credential.principal

    async def _bearer(self, token: str) -> Principal:
        if not token:
            raise BadRequest("Invalid bearer token format.")
        credential = await self._lookup(
            self._by_digest, ApiCredential.secret_digest, secret_digest(token)
        )
        if credential is None or not credential.bearer_enabled:
            raise AuthenticationFailed(INVALID_SECRET)
        return credential.principal

    def _check_date(self, value: str | None) -> None:
        if not value:
            raise AuthenticationFailed("The Date header is missing.")
        try:
            sent = parsedate_to_datetime(value)
        except (TypeError, ValueError) as exc:
            raise AuthenticationFailed("The Date header is not an HTTP date.") from exc
        if sent.tzinfo is None:
            sent = sent.replace(tzinfo=UTC)
        skew = abs((self._wall_clock.now() - sent).total_seconds())
        if skew > self._max_skew:
            raise AuthenticationFailed(
                f"The Date header is more than {self._max_skew} seconds from the server clock."
            )

    async def _lookup(
        self,
        cache: dict[str, tuple[float, _Credential | None]],
        column: InstrumentedAttribute[str],
        value: str,
    ) -> _Credential | None:
        now = time.monotonic()
        hit = cache.get(value)
        if hit is not None and hit[0] > now:
            return hit[1]
        credential = await self._load(column, value)
        if len(cache) > 10_000:
            cache.clear()
        cache[value] = (now + self._ttl, credential)
        return credential

    async def _load(self, column: InstrumentedAttribute[str], value: str) -> _Credential | None:
        async with self._database.reading() as session:
            row = (
                await session.execute(
                    select(ApiCredential, Partner)
                    .join(Partner, Partner.id == ApiCredential.partner_id)
                    .where(column == value)
                )
            ).first()
        if row is None:
            return None
        credential, partner = row
        if credential.status != "active" or partner.status != "active":
            return None
        principal = Principal(
            partner_id=partner.id,
            partner_code=partner.code,
            mode=credential.mode,
            credential_id=credential.id,
            rate_limit=partner.rate_limit,
        )
        return _Credential(
            principal=principal,
            secret=self._box.decrypt(credential.secret_ciphertext),
            bearer_enabled=partner.bearer_enabled,
            allow_hmac_sha1=partner.allow_hmac_sha1,
        )
