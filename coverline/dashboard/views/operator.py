"""The operator's pages: partners (create, suspend, reactivate) and the catalogue (products
and their versions, read-only, and loading a new version from a pasted YAML or JSON
document). Anyone else gets 404."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends
from sqlalchemy import func, select
from starlette.responses import Response

from coverline.catalog.definition import CatalogDocument, CatalogError, load_catalog_file
from coverline.catalog.models import Product, ProductVersion
from coverline.catalog.service import LoadedProduct, load_catalog
from coverline.dashboard.auth import create_user, generated_password
from coverline.dashboard.models import DashboardUser
from coverline.dashboard.web import (
    BASE,
    Viewer,
    field_errors,
    not_found,
    operator,
    operator_page,
    redirect,
)
from coverline.kit.errors import CoverlineError
from coverline.partners.models import Partner
from coverline.partners.service import create_partner

router = APIRouter(prefix="/operator")
MAX_DOCUMENT_CHARS = 500_000


@router.get("/partners")
async def partners(current: Viewer = Depends(operator)) -> Response:
    return await _partners_page(current)


async def _partners_page(
    current: Viewer,
    *,
    created: dict[str, object] | None = None,
    errors: dict[str, list[str]] | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    async with current.services.database.reading() as session:
        rows = list(await session.scalars(select(Partner).order_by(Partner.code)))
        users = dict(
            (
                await session.execute(
                    select(DashboardUser.partner_id, func.count()).group_by(
                        DashboardUser.partner_id
                    )
                )
            ).all()
        )
    return await operator_page(
        current,
        "operator/partners.html",
        "operator-partners",
        status_code=422 if errors else 200,
        rows=rows,
        user_counts=users,
        created=created,
        errors=errors or {},
        values=values or {},
    )


@router.post("/partners")
async def create(current: Viewer = Depends(operator)) -> Response:
    form = current.form
    values = {
        "name": form.get("name").strip(),
        "code": form.get("code").strip().upper(),
        "email": form.get("email").strip(),
    }
    services = current.services
    password = generated_password()
    try:
        async with services.database.transaction() as session:
            partner, issued = await create_partner(
                session,
                services.box,
                name=values["name"],
                code=values["code"] or None,
                now=services.clock.now(),
            )
            if values["email"]:
                await create_user(
                    session,
                    email=values["email"],
                    password=password,
                    partner=partner,
                    is_operator=False,
                    now=services.clock.now(),
                    must_change_password=True,
                )
    except CoverlineError as exc:
        return await _partners_page(current, errors=field_errors(exc), values=values)
    created = {
        "partner": partner,
        "credentials": issued,
        "email": values["email"] or None,
        "password": password if values["email"] else None,
    }
    return await _partners_page(current, created=created)


async def _set_status(current: Viewer, code: str, status: str) -> None:
    async with current.services.database.transaction() as session:
        partner = await session.scalar(
            select(Partner).where(Partner.code == code).with_for_update()
        )
        if partner is None:
            raise not_found()
        partner.status = status
    current.services.authenticator.forget()


@router.post("/partners/{code}/suspend")
async def suspend(code: str, current: Viewer = Depends(operator)) -> Response:
    await _set_status(current, code, "suspended")
    return redirect(BASE + "/operator/partners?notice=suspended")


@router.post("/partners/{code}/reactivate")
async def reactivate(code: str, current: Viewer = Depends(operator)) -> Response:
    await _set_status(current, code, "active")
    return redirect(BASE + "/operator/partners?notice=reactivated")


# ------------------------------------------------------------------------------ catalogue


async def _products_page(
    current: Viewer,
    *,
    document: str = "",
    errors: dict[str, list[str]] | None = None,
    loaded: list[LoadedProduct] | None = None,
) -> Response:
    async with current.services.database.reading() as session:
        products = list(
            await session.scalars(
                select(Product).order_by(Product.policy_type, Product.policy_type_version)
            )
        )
        versions = list(
            await session.execute(
                select(
                    ProductVersion.id,
                    ProductVersion.product_id,
                    ProductVersion.revision,
                    ProductVersion.created_at,
                ).order_by(ProductVersion.product_id, ProductVersion.revision.desc())
            )
        )
    by_product: dict[int, list[object]] = {}
    for row in versions:
        by_product.setdefault(row.product_id, []).append(row)
    return await operator_page(
        current,
        "operator/products.html",
        "operator-products",
        status_code=422 if errors else 200,
        products=products,
        versions=by_product,
        document=document,
        errors=errors or {},
        loaded=loaded,
    )


@router.get("/products")
async def products(current: Viewer = Depends(operator)) -> Response:
    return await _products_page(current)


@router.get("/products/versions/{version_id}")
async def product_version(version_id: str, current: Viewer = Depends(operator)) -> Response:
    async with current.services.database.reading() as session:
        row = (
            await session.execute(
                select(ProductVersion, Product)
                .join(Product, Product.id == ProductVersion.product_id)
                .where(ProductVersion.id == version_id)
            )
        ).first()
    if row is None:
        raise not_found()
    version, product = row
    return await operator_page(
        current,
        "operator/version.html",
        "operator-products",
        version=version,
        product=product,
        definition=json.dumps(version.definition, indent=2, ensure_ascii=False),
    )


def _parse_document(text: str) -> CatalogDocument:
    """The same parsing as `coverline catalog load` (exact decimals, duplicate keys
    refused): JSON when the document starts with `{`, YAML otherwise."""
    suffix = ".json" if text.lstrip().startswith("{") else ".yaml"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"catalogue{suffix}"
        path.write_text(text, encoding="utf-8")
        try:
            return load_catalog_file(path)
        except CatalogError as exc:
            raise CatalogError(str(exc).replace(str(path), "the document")) from None


@router.post("/products")
async def load_version(current: Viewer = Depends(operator)) -> Response:
    text = current.form.get("document")
    if not text.strip():
        return await _products_page(
            current, errors={"document": ["Paste a catalogue document (YAML or JSON)."]}
        )
    if len(text) > MAX_DOCUMENT_CHARS:
        return await _products_page(
            current, errors={"document": [f"At most {MAX_DOCUMENT_CHARS} characters."]}
        )
    try:
        document = await asyncio.to_thread(_parse_document, text)
    except CatalogError as exc:
        return await _products_page(current, document=text, errors={"document": [str(exc)]})
    services = current.services
    async with services.database.transaction() as session:
        loaded = await load_catalog(session, document, services.clock.now())
    services.catalog.forget()
    return await _products_page(current, loaded=loaded)
