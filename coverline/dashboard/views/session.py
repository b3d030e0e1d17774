"""Signing in and out, the landing redirect, the operator's partner switch, the password."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from starlette.responses import Response

from coverline.dashboard import auth
from coverline.dashboard.web import (
    BASE,
    Form,
    Viewer,
    not_found,
    operator_page,
    partner_url,
    redirect,
    render,
    services_of,
    viewer,
)
from coverline.kit.errors import ValidationFailed
from coverline.partners.models import MODES, Partner
from coverline.partners.service import PARTNER_CODE

router = APIRouter()


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or services_of(request).settings.dashboard_secure_cookies


def _safe_next(value: str) -> str:
    """Only a dashboard path of this site: never another host (`//evil`, `/\\evil`)."""
    if value.startswith(BASE + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return BASE + "/"


def _sign_in_form(
    request: Request, *, next_path: str, email: str = "", error: str | None = None, status: int
) -> Response:
    token = secrets.token_urlsafe(32)
    response = render(
        "sign_in.html",
        {
            "csrf_token": token,
            "next": next_path,
            "email": email,
            "error": error,
            "signed_out": request.query_params.get("notice") == "signed-out",
        },
        status_code=status,
    )
    response.set_cookie(
        auth.SIGN_IN_COOKIE,
        token,
        max_age=3600,
        path=BASE,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    return response


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    return _sign_in_form(
        request, next_path=_safe_next(request.query_params.get("next", "")), status=200
    )


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    services = services_of(request)
    form = await Form.read(request)
    next_path = _safe_next(form.get("next"))
    expected = request.cookies.get(auth.SIGN_IN_COOKIE)
    if not expected or not auth.same_token(expected, form.get(auth.CSRF_FIELD) or None):
        return _sign_in_form(
            request,
            next_path=next_path,
            email=form.get("email"),
            error="The form was out of date. Please sign in again.",
            status=403,
        )
    opened = await auth.sign_in(
        services.database,
        email=form.get("email"),
        password=form.get("password"),
        now=services.clock.now(),
        session_hours=services.settings.dashboard_session_hours,
    )
    if opened is not None and not opened.user.is_operator:
        async with services.database.reading() as session:
            partner = await session.get(Partner, opened.user.partner_id)
        if partner is None or partner.status != "active":
            async with services.database.transaction() as session:
                await auth.close_session(session, opened.token, services.clock.now())
            return _sign_in_form(
                request,
                next_path=next_path,
                email=form.get("email"),
                error="Your organisation's access is suspended. Contact the platform operator.",
                status=403,
            )
    if opened is None:
        return _sign_in_form(
            request,
            next_path=next_path,
            email=form.get("email"),
            error=auth.SIGN_IN_FAILED,
            status=401,
        )
    target = BASE + "/account" if opened.user.must_change_password else next_path
    response = redirect(target)
    response.set_cookie(
        auth.SESSION_COOKIE,
        opened.token,
        max_age=int(services.settings.dashboard_session_hours * 3600),
        path=BASE,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    response.delete_cookie(auth.SIGN_IN_COOKIE, path=BASE)
    return response


@router.post("/sign-out")
async def sign_out(request: Request, current: Viewer = Depends(viewer)) -> Response:
    services = current.services
    token = request.cookies.get(auth.SESSION_COOKIE, "")
    async with services.database.transaction() as session:
        await auth.close_session(session, token, services.clock.now())
    response = redirect(f"{BASE}/sign-in?notice=signed-out")
    response.delete_cookie(auth.SESSION_COOKIE, path=BASE, httponly=True, samesite="lax")
    return response


async def _landing(current: Viewer) -> str:
    async with current.services.database.reading() as session:
        partner_id = current.user.partner_id
        if current.is_operator:
            partner_id = current.session.partner_id or partner_id
        partner = await session.get(Partner, partner_id) if partner_id is not None else None
        if partner is None and current.is_operator:
            partner = await session.scalar(select(Partner).order_by(Partner.code).limit(1))
    if partner is None:
        return BASE + "/operator/partners"
    mode = current.session.mode if current.session.mode in MODES else "sandbox"
    return partner_url(partner.code, mode)


@router.get("/")
async def landing(current: Viewer = Depends(viewer)) -> Response:
    return redirect(await _landing(current))


@router.get("/switch")
async def switch_partner(request: Request, current: Viewer = Depends(viewer)) -> Response:
    """The operator's partner picker (a GET form: it only navigates)."""
    code = request.query_params.get("partner", "").strip().upper()
    mode = request.query_params.get("mode", current.session.mode)
    if not current.is_operator or not PARTNER_CODE.fullmatch(code) or mode not in MODES:
        raise not_found()
    return redirect(partner_url(code, mode))


@router.get("/account")
async def account(current: Viewer = Depends(viewer)) -> Response:
    return await _account_page(current)


async def _account_page(
    current: Viewer, errors: dict[str, list[str]] | None = None, status: int = 200
) -> Response:
    async with current.services.database.reading() as session:
        partner = (
            await session.get(Partner, current.user.partner_id)
            if current.user.partner_id is not None
            else None
        )
    return await operator_page(
        current,
        "account.html",
        "account",
        status_code=status,
        own_partner=partner,
        errors=errors or {},
        landing=await _landing(current),
    )


@router.post("/account/password")
async def change_password(current: Viewer = Depends(viewer)) -> Response:
    form = current.form
    new = form.get("new_password")
    if new != form.get("confirm_password"):
        return await _account_page(
            current, {"confirm_password": ["The two new passwords differ."]}, 422
        )
    try:
        async with current.services.database.transaction() as session:
            await auth.change_password(
                session,
                current.user.id,
                current=form.get("current_password"),
                new=new,
                keep_session_id=current.session.id,
            )
    except ValidationFailed as exc:
        errors = exc.errors if isinstance(exc.errors, dict) else {}
        if "password" in errors:
            errors["new_password"] = errors.pop("password")
        return await _account_page(current, errors, 422)
    return redirect(BASE + "/account?notice=password-changed")
