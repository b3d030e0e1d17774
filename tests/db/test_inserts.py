"""`insert_loaded` writes new objects as the ORM's flush would, in the caller's transaction,
and leaves them in the session as loaded rows: found by the identity map, later changes
written as UPDATEs, nothing written when the transaction rolls back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text

from coverline.db.inserts import insert_loaded
from coverline.kit import ids
from coverline.quotes.models import Policyholder, QuotePackage
from coverline.runtime import Services
from tests.conftest import PartnerFixture

AT = datetime(2026, 12, 2, 18, 30, 5, 250000, tzinfo=UTC)


def _package(partner_id: int) -> tuple[QuotePackage, Policyholder]:
    """A new package with its policyholder, leaving the columns with defaults unset."""
    package = QuotePackage(
        id=ids.package_id(),
        partner_id=partner_id,
        mode="sandbox",
        status="CONFIRMED",
        currency="NGN",
        customer_country="NG",
        customer_region=None,
        customer_language="yo",
        partner_transaction_id="order-7",
        security_token=ids.security_token(),
        created_at=AT,
        updated_at=AT,
    )
    holder = Policyholder(
        package_id=package.id,
        first_name="Ọláolúwa",
        middle_name=None,
        last_name="Adéwálé",
        email="olaoluwa@example.ng",
        phone="+2348031234567",
        country="NG",
        age=34,
        address1=None,
        address2=None,
        city="Lagos",
        postcode=None,
        region="Lagos",
        secondary_email=None,
        birth_date=None,
        company=None,
    )
    package.quotes = []
    package.renewals = []
    package.policyholder = holder
    return package, holder


async def _rows(services: Services, package_id: str) -> list[tuple[object, ...]]:
    async with services.database.reading() as session:
        found = await session.execute(
            text(
                "SELECT p.status, p.is_booking, p.booked_at IS NULL, p.customer_language, "
                "h.first_name, h.last_name, h.phone, h.age, h.allow_updates "
                "FROM quote_packages p JOIN policyholders h ON h.package_id = p.id "
                "WHERE p.id = :id"
            ),
            {"id": package_id},
        )
        return [tuple(row) for row in found.all()]


async def test_writes_what_the_flush_writes(services: Services, partner: PartnerFixture) -> None:
    flushed, _ = _package(partner.id)
    async with services.database.transaction() as session:
        session.add(flushed)
    inserted, holder = _package(partner.id)
    async with services.database.transaction() as session:
        await insert_loaded(session, [inserted, holder])
    expected = [
        ("CONFIRMED", False, True, "yo", "Ọláolúwa", "Adéwálé", "+2348031234567", 34, False)
    ]
    assert await _rows(services, flushed.id) == expected
    assert await _rows(services, inserted.id) == expected
    # The defaults were given to the objects too, as a load would have.
    assert (inserted.is_booking, inserted.booked_at) == (False, None)


async def test_the_objects_are_the_sessions_rows(
    services: Services, partner: PartnerFixture
) -> None:
    package, holder = _package(partner.id)
    async with services.database.transaction() as session:
        await insert_loaded(session, [package, holder])
        assert not session.new and not session.dirty
        assert await session.get(QuotePackage, package.id) is package
        assert await session.get(Policyholder, package.id) is holder
        # A change afterwards is an UPDATE of the written row.
        holder.phone = "+2348039876543"
        package.status = "CANCELLED"
    rows = await _rows(services, package.id)
    assert [(row[0], row[6]) for row in rows] == [("CANCELLED", "+2348039876543")]


async def test_nothing_is_written_when_the_transaction_fails(
    services: Services, partner: PartnerFixture
) -> None:
    package, holder = _package(partner.id)
    package_id = package.id
    with pytest.raises(RuntimeError, match="abandoned"):
        async with services.database.transaction() as session:
            await insert_loaded(session, [package, holder])
            raise RuntimeError("abandoned")
    assert await _rows(services, package_id) == []


async def test_refuses_what_is_not_new(services: Services, partner: PartnerFixture) -> None:
    package, holder = _package(partner.id)
    async with services.database.transaction() as session:
        session.add(package)
        with pytest.raises(ValueError, match="is not a new object"):
            await insert_loaded(session, [package, holder])
        session.expunge_all()
    missing_key = QuotePackage(partner_id=partner.id, mode="sandbox")
    async with services.database.transaction() as session:
        with pytest.raises(TypeError, match="primary key left unset"):
            await insert_loaded(session, [missing_key])
    async with services.database.reading() as session:
        written = await session.scalar(
            select(QuotePackage.id).where(QuotePackage.partner_id == partner.id).limit(1)
        )
    assert written is None
