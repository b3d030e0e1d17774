"""HTTP pieces shared by every router: JSON rendering, slash-agnostic routes, error bodies."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError
from starlette.responses import JSONResponse as StarletteJSONResponse

from coverline.kit.errors import BadRequest, CoverlineError, ValidationFailed


class JSONResponse(StarletteJSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class SlashAgnosticRouter(APIRouter):
    """Answers a path with and without its trailing slash, without redirecting.

    XCover's paths end in a slash for some endpoints and not for others, and its client signs
    the path it sends; a redirect would break both the signature and POST bodies.
    """

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().add_api_route(path, endpoint, **kwargs)
        twin = path[:-1] if path.endswith("/") else f"{path}/"
        if twin and twin != path:
            twin_kwargs = {**kwargs, "include_in_schema": False}
            if twin_kwargs.get("name"):
                twin_kwargs["name"] = f"{twin_kwargs['name']}_twin"
            super().add_api_route(twin, endpoint, **twin_kwargs)


def _message(error: dict[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "Unexpected field"
    if error["type"] == "value_error":
        context = error.get("ctx") or {}
        return str(context.get("error", error["msg"]))
    return str(error["msg"])


def _place(errors: dict[str, Any], path: list[str], message: str, as_text: bool) -> None:
    node = errors
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    leaf = path[-1]
    if as_text:
        node.setdefault(leaf, message)
        return
    existing = node.setdefault(leaf, [])
    if isinstance(existing, list) and message not in existing:
        existing.append(message)


def translate_validation_error(exc: RequestValidationError) -> CoverlineError:
    """FastAPI's validation errors in Coverline's error body (API-CONTRACT §3)."""
    errors: dict[str, Any] = {}
    for error in exc.errors():
        location = [str(part) for part in error["loc"]]
        kind = error["type"]
        if kind == "json_invalid":
            return BadRequest("The request body is not valid JSON.")
        if location and location[0] in {"body", "query", "path", "header"}:
            source, location = location[0], location[1:]
        else:
            source = "body"
        if source == "body" and not location:
            if kind == "missing":
                return BadRequest("A JSON request body is required.")
            return BadRequest("The request body must be a JSON object.")
        # Quote request items report their fields flat, as XCover does.
        if len(location) >= 3 and location[0] == "request" and location[1].isdigit():
            location = location[2:]
        _place(errors, location, _message(error), as_text=kind == "extra_forbidden")
    return ValidationFailed(errors=errors)


UNSTORABLE_TEXT = "Text in the request may not contain U+0000 (NUL) or unpaired surrogates."
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(value: Any) -> bool:
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is None
    if isinstance(value, dict):
        return all(_storable(k) and _storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable(item) for item in value)
    return True


def unstorable_text(body: bytes, content_type: str) -> bool:
    """Text no database column takes: PostgreSQL refuses U+0000 in text and JSON, and no
    driver encodes a lone surrogate. Refused as bad input rather than failing as a 500."""
    if b"\x00" in body:
        return True
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        return b"%00" in body
    if kind and kind != "application/json" and not kind.endswith("+json"):
        return False
    if b"\\u" not in body:
        return False
    try:
        document = json.loads(body)
    except ValueError:
        # Malformed JSON: FastAPI answers it with its own 400.
        return False
    return not _storable(document)
