"""The auxiliary look-ups as the application serves them: authenticated, any partner."""

from __future__ import annotations

import httpx

from tests.conftest import PartnerFixture


async def test_auxiliary_needs_authentication(
    http: httpx.AsyncClient, partner: PartnerFixture
) -> None:
    anonymous = await http.get("/api/auxiliary/countries/")
    assert anonymous.status_code == 401
    assert anonymous.json()["type"] == "authentication_error"
    secret = partner.live.credential.api_secret
    countries = await http.get(
        "/api/auxiliary/countries/", headers={"Authorization": f"Bearer {secret}"}
    )
    assert countries.status_code == 200
    assert countries.json()["count"] == 249
    regions = await http.get(
        "/api/auxiliary/countries/ng/regions", headers={"Authorization": f"Bearer {secret}"}
    )
    body = regions.json()
    assert body["count"] == 37
    assert sum(len(r["local_government_areas"]) for r in body["results"]) == 774
    assert "X-Ratelimit-Limit" in regions.headers
