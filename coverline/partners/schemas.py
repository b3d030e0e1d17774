"""Response bodies of the API key endpoints."""

from __future__ import annotations

from coverline.kit.http import ResponseBody


class ApiKeyOut(ResponseBody):
    api_key: str
    mode: str
    status: str
    created_at: str
    revoked_at: str | None
    current: bool


class ApiKeyListOut(ResponseBody):
    count: int
    results: list[ApiKeyOut]


class IssuedApiKeyOut(ResponseBody):
    """Shown once: the secret is not stored in clear."""

    api_key: str
    api_secret: str
    mode: str
    status: str
    created_at: str
