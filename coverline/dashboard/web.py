"""The plumbing every dashboard page shares: who is signed in, which partner and mode a URL
names (404 for anything the viewer may not see), CSRF on every POST, templates, headers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from pydantic import ValidationError
from sqlalchemy import select, update
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coverline.dashboard.auth import CSRF_FIELD, SESSION_COOKIE, load_session, same_token
from coverline.dashboard.models import DashboardSession, DashboardUser
from coverline.kit.errors import CoverlineError
from coverline.kit.money import format_money, from_minor
from coverline.partners.models import MODES, Partner
from coverline.partners.service import PARTNER_CODE
from coverline.runtime import Services

BASE = "/dashboard"
TEMPLATES = Path(__file__).parent / "templates"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
# Messages a redirect may ask the next page to show (never text taken from the URL).
NOTICES = {
    "saved": "Saved.",
    "created": "Created.",
    "deleted": "Deleted.",
    "revoked": "The API key is revoked; it stops working at once.",
    "rotated": "The signing secret is rotated. The old secret also signs for 24 hours.",
    "test-sent": "A test event is on its way; it appears in the delivery log below.",
    "redelivered": "The delivery is queued again.",
    "suspended": "The partner is suspended: its API keys and dashboard users stop working.",
    "reactivated": "The partner is active again.",
    "password-changed": "Your password is changed. Your other sessions are signed out.",
    "clock-moved": "The sandbox clock moved forward.",
    "signed-out": "You are signed out.",
}


class SignInRequired(Exception):
    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def not_found() -> HTTPException:
    return HTTPException(status_code=404, detail="Not found.")


def services_of(request: Request) -> Services:
    getter: Callable[[], Services] = request.app.state.services
    return getter()


# No dashboard form has more than a few dozen (the messaging editor's the most).
MAX_FORM_FIELDS = 1000


class Form:
    """An `application/x-www-form-urlencoded` body."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self._fields = fields

    @classmethod
    async def read(cls, request: Request) -> Form:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return cls({})
        body = await request.body()
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return cls({})
        try:
            fields = parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
        except ValueError:  # "Max number of fields exceeded"
            raise HTTPException(
                400, f"A form has at most {MAX_FORM_FIELDS} fields; this one has more."
            ) from None
        return cls(fields)

    def get(self, name: str, default: str = "") -> str:
        values = self._fields.get(name)
        return values[0] if values else default

    def getlist(self, name: str) -> list[str]:
        return list(self._fields.get(name, []))

    def has(self, name: str) -> bool:
        return name in self._fields


@dataclass
class Viewer:
    """A signed-in user on one request."""

    request: Request
    services: Services
    user: DashboardUser
    session: DashboardSession
    form: Form = field(default_factory=lambda: Form({}))

    @property
    def csrf_token(self) -> str:
        return self.session.csrf_token

    @property
    def is_operator(self) -> bool:
        return self.user.is_operator


@dataclass
class PartnerPage:
    """A page of one partner in one mode, for a viewer allowed to see it."""

    viewer: Viewer
    partner: Partner
    mode: str
    # The partner's time in this mode: real time, or the sandbox test clock.
    now: datetime

    @property
    def services(self) -> Services:
        return self.viewer.services

    @property
    def form(self) -> Form:
        return self.viewer.form

    def url(self, *parts: str, **query: Any) -> str:
        return partner_url(self.partner.code, self.mode, *parts, **query)


def partner_url(code: str, mode: str, *parts: str, **query: Any) -> str:
    path = "/".join([BASE, quote(code, safe=""), mode, *(quote(p, safe="") for p in parts)])
    shown = {k: v for k, v in query.items() if v not in (None, "")}
    return f"{path}?{urlencode(shown)}" if shown else path


async def viewer(request: Request) -> Viewer:
    """The signed-in viewer; a POST must carry the session's CSRF token or it is refused."""
    services = services_of(request)
    token = request.cookies.get(SESSION_COOKIE)
    now = services.clock.now()
    found = None
    if token:
        async with services.database.reading() as session:
            found = await load_session(session, token, now)
            if found is not None and not found[1].is_operator:
                partner = await session.get(Partner, found[1].partner_id)
                if partner is None or partner.status != "active":
                    found = None
    if found is None:
        if request.method != "GET":
            raise HTTPException(status_code=403, detail="Sign in again: your session ended.")
        raise SignInRequired(request.url.path)
    dashboard_session, user = found
    current = Viewer(request, services, user, dashboard_session)
    if request.method == "POST":
        current.form = await Form.read(request)
        if not same_token(dashboard_session.csrf_token, current.form.get(CSRF_FIELD) or None):
            raise HTTPException(status_code=403, detail="The form is out of date. Reload the page.")
    return current


async def operator(request: Request) -> Viewer:
    current = await viewer(request)
    if not current.is_operator:
        raise not_found()
    return current


async def partner_page(request: Request, code: str, mode: str) -> PartnerPage:
    current = await viewer(request)
    if mode not in MODES or not PARTNER_CODE.fullmatch(code):
        raise not_found()
    services = current.services
    async with services.database.reading() as session:
        partner = await session.scalar(select(Partner).where(Partner.code == code))
    if partner is None:
        raise not_found()
    if not current.is_operator and partner.id != current.user.partner_id:
        # Another partner's URL looks exactly like one that does not exist.
        raise not_found()
    if current.session.mode != mode or current.session.partner_id != partner.id:
        async with services.database.transaction() as session:
            await session.execute(
                update(DashboardSession)
                .where(DashboardSession.id == current.session.id)
                .values(mode=mode, partner_id=partner.id)
            )
        current.session.mode, current.session.partner_id = mode, partner.id
    now = await services.clocks.now_for(partner.id, mode)
    return PartnerPage(current, partner, mode, now)


# ------------------------------------------------------------------------------- templates


def _money(minor: int | None, currency: str) -> str:
    if minor is None:
        return ""
    return format_money(from_minor(minor, currency), currency)


def _when(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _iso(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _time(moment: datetime | None) -> Markup:
    if moment is None:
        return Markup("")
    return Markup('<time datetime="{}">{}</time>').format(_iso(moment), _when(moment))


templates = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["money"] = _money
templates.filters["when"] = _when
templates.filters["time"] = _time
templates.globals["partner_url"] = partner_url
templates.globals["BASE"] = BASE
templates.globals["CSRF_FIELD"] = CSRF_FIELD


def render(
    template: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    return HTMLResponse(templates.get_template(template).render(context), status_code=status_code)


NAV = (
    ("overview", "Overview", ()),
    ("bookings", "Bookings", ("bookings",)),
    ("webhooks", "Webhooks", ("webhooks",)),
    ("api-keys", "API keys", ("api-keys",)),
    ("messaging", "Messaging", ("messaging",)),
    ("sandbox", "Sandbox clock", ("sandbox",)),
)


async def _partner_choices(current: Viewer) -> list[Partner]:
    if not current.is_operator:
        return []
    async with current.services.database.reading() as session:
        return list(await session.scalars(select(Partner).order_by(Partner.code)))


async def page(
    page_: PartnerPage, template: str, section: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """A partner page in the layout: navigation, the mode switch and the partner picker."""
    nav = [
        {
            "key": key,
            "label": label,
            "url": page_.url(*parts),
            "current": key == section,
        }
        for key, label, parts in NAV
        if not (key == "sandbox" and page_.mode != "sandbox")
    ]
    section_parts = next((parts for key, _, parts in NAV if key == section), ())
    modes = [
        {
            "mode": mode,
            "url": partner_url(page_.partner.code, mode, *section_parts)
            if not (section == "sandbox" and mode == "live")
            else partner_url(page_.partner.code, mode),
            "current": mode == page_.mode,
        }
        for mode in MODES
    ]
    notice = NOTICES.get(page_.viewer.request.query_params.get("notice", ""))
    return render(
        template,
        {
            "viewer": page_.viewer,
            "user": page_.viewer.user,
            "csrf_token": page_.viewer.csrf_token,
            "partner": page_.partner,
            "mode": page_.mode,
            "now": page_.now,
            "nav": nav,
            "modes": modes,
            "section": section,
            "notice": notice,
            "partners": await _partner_choices(page_.viewer),
            "p": page_,
            **context,
        },
        status_code=status_code,
    )


async def operator_page(
    current: Viewer, template: str, section: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    partners = await _partner_choices(current)
    selected = next((p for p in partners if p.id == current.session.partner_id), None)
    selected = selected or (partners[0] if partners else None)
    modes = [
        {
            "mode": mode,
            "url": partner_url(selected.code, mode) if selected else None,
            "current": mode == current.session.mode,
        }
        for mode in MODES
    ]
    notice = NOTICES.get(current.request.query_params.get("notice", ""))
    return render(
        template,
        {
            "viewer": current,
            "user": current.user,
            "csrf_token": current.csrf_token,
            "partner": selected,
            "mode": current.session.mode,
            "nav": [],
            "modes": modes,
            "section": section,
            "notice": notice,
            "partners": partners,
            **context,
        },
        status_code=status_code,
    )


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def error_page(status_code: int, message: str) -> HTMLResponse:
    titles = {
        400: "Bad request",
        403: "Not allowed",
        404: "Page not found",
        405: "Not allowed",
        500: "Something went wrong",
    }
    return render(
        "error.html",
        {"title": titles.get(status_code, "Error"), "message": message, "status": status_code},
        status_code=status_code,
    )


def sign_in_redirect(next_path: str) -> Response:
    target = next_path if next_path.startswith(BASE + "/") else BASE + "/"
    return redirect(f"{BASE}/sign-in?{urlencode({'next': target})}")


class SecurityHeaders:
    """Pure ASGI: the same strict headers on every dashboard response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.decode().lower() not in SECURITY_HEADERS
                ]
                headers.extend(
                    (name.encode(), value.encode()) for name, value in SECURITY_HEADERS.items()
                )
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass(frozen=True)
class Pager:
    page: int
    per_page: int
    count: int
    previous_url: str | None
    next_url: str | None

    @property
    def pages(self) -> int:
        return max(1, -(-self.count // self.per_page))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


def page_number(value: str | None) -> int:
    try:
        number = int(value or "1")
    except ValueError:
        return 1
    return min(max(number, 1), 100_000)


def pager(base: str, query: dict[str, str], page: int, per_page: int, count: int) -> Pager:
    def link(number: int) -> str:
        shown = {k: v for k, v in query.items() if v}
        if number > 1:
            shown["page"] = str(number)
        return f"{base}?{urlencode(shown)}" if shown else base

    pages = max(1, -(-count // per_page))
    return Pager(
        page=page,
        per_page=per_page,
        count=count,
        previous_url=link(page - 1) if page > 1 else None,
        next_url=link(page + 1) if page < pages else None,
    )


def field_errors(exc: Exception) -> dict[str, list[str]]:
    """Errors of a pydantic model or a domain error, by form field."""
    if isinstance(exc, ValidationError):
        found: dict[str, list[str]] = {}
        for item in exc.errors(include_url=False):
            name = str(item["loc"][0]) if item["loc"] else "form"
            message = str(item["msg"]).removeprefix("Value error, ")
            found.setdefault(name, []).append(message)
        return found
    if isinstance(exc, CoverlineError):
        if isinstance(exc.errors, dict) and exc.errors:
            return {
                name: [value] if isinstance(value, str) else [str(v) for v in value]
                for name, value in exc.errors.items()
            }
        return {"form": [exc.message]}
    raise exc
