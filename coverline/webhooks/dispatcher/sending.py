"""One webhook request: what it sends and what it makes of the answer."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

import aiohttp

from coverline.kit.text import storable_or_none
from coverline.webhooks import formats, signing
from coverline.webhooks.dispatcher.queues import Claim, EndpointConfig
from coverline.webhooks.network import ForbiddenAddress

USER_AGENT = "Coverline-Webhooks/1"
EXCERPT_BYTES = 2048
READ_LIMIT = 65536
RETRY_AFTER_STATUSES = {429, 503}
MAX_RETRY_AFTER = 86_400.0


def retry_after_seconds(value: str | None, now: float) -> float | None:
    if not value:
        return None
    text = value.strip()
    # ASCII digits only: "²" and "٣" are digits to str.isdigit, not to a client.
    if text.isascii() and text.isdigit():
        return min(float(text), MAX_RETRY_AFTER)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return min(max(0.0, moment.timestamp() - now), MAX_RETRY_AFTER)


Outcome = tuple[int | None, str | None, str | None, float | None]


async def attempt(
    http: aiohttp.ClientSession, endpoint: EndpointConfig, claim: Claim, headers: dict[str, str]
) -> Outcome:
    """One request: (status, response excerpt, error, Retry-After seconds). `headers` is
    filled in as they are made, so that a failure still records what was sent. The excerpt
    and the error are the receiver's text: storable whatever it sent (a NUL in a receiver's
    answer must not stop the attempt log, and every delivery after it, on PostgreSQL)."""
    status, excerpt, error, retry_after = await _attempt(http, endpoint, claim, headers)
    return status, storable_or_none(excerpt), storable_or_none(error), retry_after


async def _attempt(
    http: aiohttp.ClientSession, endpoint: EndpointConfig, claim: Claim, headers: dict[str, str]
) -> Outcome:
    body = formats.sent_body(
        claim.body, endpoint.format, claim.name, claim.part, claim.event_type, claim.payload
    )
    now = time.time()
    headers["Content-Type"] = "application/json"
    headers["User-Agent"] = USER_AGENT
    if endpoint.refused is not None:
        return None, None, endpoint.refused, None
    headers.update(
        signing.sign_headers(
            endpoint.signature,
            body=body,
            message_id=claim.public_id,
            timestamp=now,
            key=endpoint.key,
            secrets_in_use=endpoint.signing_secrets(now),
        )
    )
    try:
        async with http.post(
            endpoint.url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=endpoint.client_timeout,
        ) as response:
            status = response.status
            content = await response.content.read(READ_LIMIT)
            excerpt = content[:EXCERPT_BYTES].decode("utf-8", "replace")
            retry_after = None
            error = None
            if status in RETRY_AFTER_STATUSES:
                retry_after = retry_after_seconds(response.headers.get("Retry-After"), now)
            if 300 <= status < 400:
                location = response.headers.get("Location", "")
                error = f"Redirect to {location!r} not followed."
            return status, excerpt, error, retry_after
    except TimeoutError:
        return None, None, f"No response within {endpoint.timeout:g} s.", None
    except ForbiddenAddress as exc:
        return None, None, f"Refused: {exc}.", None
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, ForbiddenAddress):
            return None, None, f"Refused: {exc.os_error}.", None
        return None, None, f"{type(exc).__name__}: {exc}", None
    except (aiohttp.ClientError, OSError) as exc:
        return None, None, f"{type(exc).__name__}: {exc}", None
