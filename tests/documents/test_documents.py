"""The PDS and certificate links in responses lead to real pages; the certificate needs the
booking's security token and escapes what partners send."""

from __future__ import annotations

import httpx

from tests.conftest import PartnerFixture
from tests.fixtures.payloads import instant_booking_request, policyholder


async def test_pds_and_certificate(http: httpx.AsyncClient, partner: PartnerFixture) -> None:
    body = instant_booking_request(
        policyholder=policyholder(first_name="<script>alert(1)</script>", last_name="Adéwálé")
    )
    booking = (await partner.sandbox.call("POST", "instant_booking/", body)).json()
    base = "https://cover.test"
    pds = await http.get(booking["pds_url"].removeprefix(base))
    assert pds.status_code == 200
    assert "Missed Event Cover for Ariana Grande" in pds.text
    assert "Adéwálé" not in pds.text  # no personal data without the token
    assert pds.headers["content-security-policy"].startswith("default-src 'none'")
    product = await http.get(booking["quotes"][0]["pds_url"].removeprefix(base))
    assert product.status_code == 200 and "MECG0001" in product.text

    coi = await http.get(booking["coi"]["url"].removeprefix(base))
    assert coi.status_code == 200
    assert "Adéwálé" in coi.text
    assert "<script>alert(1)</script>" not in coi.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in coi.text
    assert booking["id"] in coi.text and "£2.01" in coi.text

    wrong = await http.get(f"/coi/{booking['id']}", params={"security_token": "nope"})
    assert wrong.status_code == 404
    missing = await http.get(f"/coi/{booking['id']}")
    assert missing.status_code == 404
    unknown = await http.get("/pds/AAAAA-BBBBB-INS")
    assert unknown.status_code == 404


async def test_health_and_readiness(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "database": "ok"}
