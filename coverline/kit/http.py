"""HTTP pieces shared by every router: JSON rendering, slash-agnostic routes, error bodies and
the error responses every partner operation documents."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from enum import Enum
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.responses import Response

from coverline.kit.errors import BadRequest, CoverlineError, ValidationFailed
from coverline.kit.text import is_storable

# The largest `offset` a list accepts: past it no database integer holds `offset + limit`.
MAX_OFFSET = 2**31 - 1


class JSONResponse(StarletteJSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ErrorBody(BaseModel):
    """The body of every error response (API-CONTRACT §3)."""

    type: str = Field(examples=["validation_error"])
    message: str = Field(examples=["An API error occurred."])
    errors: dict[str, Any] | list[str] = Field(
        description="Field errors, nested like the request; or a list of messages."
    )


class ResponseBody(BaseModel):
    """A documented response: the fields named are checked, others may follow (XCover's
    shapes carry many product-specific ones)."""

    model_config = ConfigDict(extra="allow")


class NoBody(BaseModel):
    """The body of a write that takes none: absent, `null` or `{}` (what XCover's client sends).
    Anything else is refused as any body is: 400 when it is not JSON, 422 for a field."""

    model_config = ConfigDict(extra="forbid")


class EmptyBody(BaseModel):
    """What an idempotent replay of a 204 answers: `{}`."""

    model_config = ConfigDict(extra="forbid")


ERROR_DESCRIPTIONS = {
    400: "Malformed request: bad JSON, a body that is not an object, a malformed header.",
    401: "Missing or invalid credentials or signature, or a stale Date.",
    404: "Unknown resource, or one of another partner or mode.",
    409: "An idempotent replay (`Idempotent-Replayed: true`), or a state conflict.",
    413: "The request body is larger than the server accepts.",
    422: "Validation or business rule errors.",
    423: "The first request with this idempotency key is still being processed.",
    429: "Rate limit reached; `Retry-After` says when to try again.",
}
AUTHENTICATED_ERRORS = (400, 401, 413, 429)
READ_ERRORS = (*AUTHENTICATED_ERRORS, 404, 422)
WRITE_ERRORS = (*READ_ERRORS, 409, 423)
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries: these statuses with the one error body."""
    return {
        status: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[status]}
        for status in sorted(statuses)
    }


class StrictJSONRequest(Request):
    """Bodies parsed as JavaScript's `JSON.parse` reads them: numbers past 64 bits become
    doubles, while NaN, Infinity and lone surrogates are not JSON at all (the standard library
    would let them through to the database and the response encoder, where they fail)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler


class TwinRoute(APIRoute):
    """The other spelling of a route's path, with or without its trailing slash."""

    @property
    def canonical_path(self) -> str:
        return self.path_format[:-1] if self.path_format.endswith("/") else f"{self.path_format}/"


_TWINS: dict[type[APIRoute], type[APIRoute]] = {}


def twin_route_class(route_class: type[APIRoute]) -> type[APIRoute]:
    """The twin of a route answers as the route does (its route class) and is a TwinRoute."""
    if issubclass(route_class, TwinRoute):
        return route_class
    if route_class not in _TWINS:
        _TWINS[route_class] = type(f"Twin{route_class.__name__}", (TwinRoute, route_class), {})
    return _TWINS[route_class]


class SlashAgnosticRouter(APIRouter):
    """Answers a path with and without its trailing slash, without redirecting.

    XCover's paths end in a slash for some endpoints and not for others, and its client signs
    the path it sends; a redirect would break both the signature and POST bodies.
    """

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().add_api_route(path, endpoint, **kwargs)
        twin = path[:-1] if path.endswith("/") else f"{path}/"
        if twin and twin != path:
            route_class: type[APIRoute] = kwargs.get("route_class_override") or self.route_class
            twin_kwargs = {
                **kwargs,
                "include_in_schema": False,
                "route_class_override": twin_route_class(route_class),
            }
            if twin_kwargs.get("name"):
                twin_kwargs["name"] = f"{twin_kwargs['name']}_twin"
            super().add_api_route(twin, endpoint, **twin_kwargs)


class PartnerRouter(SlashAgnosticRouter):
    """The routes under `/api/partners/{partner_code}`, each documenting the errors it can
    answer: reads the authentication, look-up and validation ones, writes the idempotency ones
    too."""

    def __init__(self, *, tags: list[str | Enum]) -> None:
        super().__init__(
            prefix="/api/partners/{partner_code}", tags=tags, route_class=StrictJSONRoute
        )

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        methods = {method.upper() for method in kwargs.get("methods") or ("GET",)}
        writes = bool(methods & _WRITE_METHODS)
        responses = error_responses(*(WRITE_ERRORS if writes else READ_ERRORS))
        if writes:
            # A replay answers 409 with the stored response of the first request.
            stored = EmptyBody if kwargs.get("status_code") == 204 else kwargs.get("response_model")
            if not (isinstance(stored, type) and issubclass(stored, BaseModel)):
                raise TypeError(f"{path}: a partner write documents its response_model.")
            responses[409] = {
                "model": ErrorBody | stored,
                "description": ERROR_DESCRIPTIONS[409],
            }
        kwargs["responses"] = {**responses, **(kwargs.get("responses") or {})}
        super().add_api_route(path, endpoint, **kwargs)
        if writes and not any(
            route.body_field is not None
            for route in self.routes
            if isinstance(route, APIRoute) and route.endpoint is endpoint
        ):
            # An undeclared body is never read: a malformed one would go through unnoticed.
            raise TypeError(f"{path}: a partner write declares its body (NoBody for none).")


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


def _xcover_location(location: list[str]) -> list[str]:
    """Quote request items report their fields flat, as XCover does."""
    if len(location) >= 3 and location[0] == "request" and location[1].isdigit():
        return location[2:]
    return location


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
        _place(
            errors, _xcover_location(location), _message(error), as_text=kind == "extra_forbidden"
        )
    return ValidationFailed(errors=errors)


UNSTORABLE_TEXT = "Text in the request must be UTF-8 without U+0000 (NUL) or unpaired surrogates."
ENCODED_BODY = "Request bodies are not accepted with a Content-Encoding (send them uncompressed)."


def _storable(value: Any) -> bool:
    if isinstance(value, str):
        return is_storable(value)
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
