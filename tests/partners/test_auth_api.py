"""Authentication of partner requests over HTTP (API-CONTRACT §2)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote

import httpx
from sqlalchemy import update

from coverline.partners.models import Partner
from coverline.runtime import Services
from tests.conftest import PartnerFixture
from tests.fixtures.signing import http_date, signed_headers


def bookings_path(partner: PartnerFixture) -> str:
    return f"/api/partners/{partner.code}/bookings/"


def error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["type"], body["message"]


async def test_signed_request_is_accepted(partner: PartnerFixture) -> None:
    response = await partner.sandbox.call("GET", "bookings/")
    assert response.status_code == 200
    assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}


async def test_get_with_null_json_body_as_xcover_python_sends(
    http: httpx.AsyncClient, partner: PartnerFixture
) -> None:
    cred = partner.sandbox.credential
    path = bookings_path(partner)
    headers = signed_headers(cred.api_key, cred.api_secret, "GET", path)
    headers["Content-Type"] = "application/json"
    response = await http.request("GET", path, content=b"null", headers=headers)
    assert response.status_code == 200


async def test_signature_over_the_percent_encoded_path_is_accepted(
    http: httpx.AsyncClient, partner: PartnerFixture
) -> None:
    """The draft signs the request target as sent; xcover-python signs it decoded: both pass."""
    cred = partner.sandbox.credential
    sent = f"/api/partners/{partner.code}/quotes/NO%20SUCH-INS/"
    decoded = f"/api/partners/{partner.code}/quotes/NO SUCH-INS/"
    for signed in (sent, decoded, f"{sent}?policy=a%2Fb"):
        headers = signed_headers(cred.api_key, cred.api_secret, "GET", signed)
        response = await http.get(f"{sent}?policy=a%2Fb", headers=headers)
        assert response.status_code == 404, signed
        assert response.json()["message"] == "Quote package NO SUCH-INS not found."
    forged = signed_headers(cred.api_key, cred.api_secret, "GET", sent.replace("%20", "%21"))
    refused = await http.get(sent, headers=forged)
    assert refused.status_code == 401
    assert refused.json()["message"] == "Invalid signature."


async def test_bearer_secret_is_accepted(http: httpx.AsyncClient, partner: PartnerFixture) -> None:
    secret = partner.live.credential.api_secret
    response = await http.get(bookings_path(partner), headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200


async def test_bare_secret_without_bearer_is_400(
    http: httpx.AsyncClient, partner: PartnerFixture
) -> None:
    secret = partner.sandbox.credential.api_secret
    response = await http.get(bookings_path(partner), headers={"Authorization": secret})
    assert response.status_code == 400
    assert response.json() == {
        "type": "invalid_request_error",
        "message": "Invalid bearer token format.",
        "errors": {},
    }


async def test_missing_credentials(http: httpx.AsyncClient, partner: PartnerFixture) -> None:
    response = await http.get(bookings_path(partner))
    assert error(response) == (
        401,
        "authentication_error",
        "Authentication credentials were not provided.",
    )


async def test_unknown_key_and_wrong_signature_look_the_same(
    http: httpx.AsyncClient, partner: PartnerFixture
) -> None:
    path = bookings_path(partner)
    cred = partner.sandbox.credential
    wrong_secret = await http.get(path, headers=signed_headers(cred.api_key, "nope", "GET", path))
    unknown_key = await http.get(
        path, headers=signed_headers("pk_sandbox_unknown", cred.api_secret, "GET", path)
    )
    assert wrong_secret.status_code == unknown_key.status_code == 401
    assert (
        wrong_secret.json()
        == unknown_key.json()
        == {
            "type": "authentication_error",
            "message": "Invalid signature.",
            "errors": {},
        }
    )
    unknown_bearer = await http.get(path, headers={"Authorization": "Bearer sk_sandbox_nope"})
    assert error(unknown_bearer) == (401, "authentication_error", "Invalid API secret.")


async def test_signature_for_another_path_or_method_is_refused(
    http: httpx.AsyncClient, partner: PartnerFixture
) -> None:
    cred = partner.sandbox.credential
    path = bookings_path(partner)
    other_path = signed_headers(cred.api_key, cred.api_secret, "GET", path + "X/")
    assert (await http.get(path, headers=other_path)).status_code == 401
    other_method = signed_headers(cred.api_key, cred.api_secret, "POST", path)
    assert (await http.get(path, headers=other_method)).status_code == 401


async def test_request_target_with_query_string(
    http: httpx.AsyncClient, partner: PartnerFixture
) -> None:
    cred = partner.sandbox.credential
    path = bookings_path(partner)
    for signed_path in (path, f"{path}?limit=1&offset=1"):
        headers = signed_headers(cred.api_key, cred.api_secret, "GET", signed_path)
        response = await http.get(path, params={"limit": 1, "offset": 1}, headers=headers)
        assert response.status_code == 200, signed_path


async def test_every_algorithm_and_date_only_signatures(
    http: httpx.AsyncClient, partner: PartnerFixture
) -> None:
    cred = partner.sandbox.credential
    path = bookings_path(partner)
    for algorithm in ("hmac-sha256", "hmac-sha384", "hmac-sha512"):
        for headers in (("date",), ("(request-target)", "date")):
            signed = signed_headers(
                cred.api_key, cred.api_secret, "GET", path, algorithm=algorithm, headers=headers
            )
            assert (await http.get(path, headers=signed)).status_code == 200, (algorithm, headers)
    sha1 = signed_headers(cred.api_key, cred.api_secret, "GET", path, algorithm="hmac-sha1")
    response = await http.get(path, headers=sha1)
    assert error(response) == (
        401,
        "authentication_error",
        "The hmac-sha1 algorithm is not enabled for this partner.",
    )


async def test_postman_pre_request_script(http: httpx.AsyncClient, partner: PartnerFixture) -> None:
    """The documentation's Postman script: no headers parameter, encodeURIComponent."""
    cred = partner.sandbox.credential
    date = http_date()
    digest = hmac.new(cred.api_secret.encode(), f"date: {date}".encode(), hashlib.sha512).digest()
    signature = quote(base64.b64encode(digest).decode(), safe="-_.!~*'()")
    headers = {
        "Date": date,
        "Authorization": (
            f'Signature keyId="{cred.api_key}",algorithm="hmac-sha512",signature="{signature}"'
        ),
    }
    assert (await http.get(bookings_path(partner), headers=headers)).status_code == 200


async def test_x_api_key_must_match_key_id(
    http: httpx.AsyncClient, partner: PartnerFixture
) -> None:
    cred = partner.sandbox.credential
    path = bookings_path(partner)
    headers = signed_headers(cred.api_key, cred.api_secret, "GET", path)
    assert (await http.get(path, headers={**headers, "X-Api-Key": cred.api_key})).status_code == 200
    mismatch = await http.get(path, headers={**headers, "X-Api-Key": "pk_sandbox_other"})
    assert mismatch.status_code == 401


async def test_malformed_signature_header_is_400(
    http: httpx.AsyncClient, partner: PartnerFixture
) -> None:
    response = await http.get(
        bookings_path(partner),
        headers={"Authorization": 'Signature keyId="x",signature=broken', "Date": http_date()},
    )
    assert response.status_code == 400
    assert response.json()["type"] == "invalid_request_error"


async def test_sandbox_key_cannot_act_for_another_partner(
    partner: PartnerFixture, other_partner: PartnerFixture
) -> None:
    response = await partner.sandbox.call("GET", "bookings/", code=other_partner.code)
    assert response.status_code == 404
    assert response.json() == {"type": "not_found", "message": "Not found.", "errors": {}}


async def test_rotation_keeps_the_old_key_until_revoked(
    http: httpx.AsyncClient, partner: PartnerFixture
) -> None:
    created = await partner.sandbox.call("POST", "api_keys/", {})
    assert created.status_code == 201
    new = created.json()
    assert new["mode"] == "sandbox"
    assert new["api_key"].startswith("pk_sandbox_") and new["api_secret"].startswith("sk_sandbox_")
    path = bookings_path(partner)
    new_headers = signed_headers(new["api_key"], new["api_secret"], "GET", path)
    assert (await http.get(path, headers=new_headers)).status_code == 200
    assert (await partner.sandbox.call("GET", "bookings/")).status_code == 200

    listed = (await partner.sandbox.call("GET", "api_keys/")).json()
    assert listed["count"] == 2
    assert all("api_secret" not in key for key in listed["results"])
    assert {key["api_key"] for key in listed["results"]} == {
        partner.sandbox.credential.api_key,
        new["api_key"],
    }

    revoked = await http.delete(
        f"/api/partners/{partner.code}/api_keys/{partner.sandbox.credential.api_key}/",
        headers=signed_headers(
            new["api_key"],
            new["api_secret"],
            "DELETE",
            f"/api/partners/{partner.code}/api_keys/{partner.sandbox.credential.api_key}/",
        ),
    )
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked"
    old = await partner.sandbox.call("GET", "bookings/")
    assert error(old) == (401, "authentication_error", "Invalid signature.")
    assert (
        await http.get(path, headers=signed_headers(new["api_key"], new["api_secret"], "GET", path))
    ).status_code == 200
    # The live key is another mode and untouched.
    assert (await partner.live.call("GET", "bookings/")).status_code == 200


async def test_live_key_cannot_revoke_sandbox_keys(partner: PartnerFixture) -> None:
    key = partner.sandbox.credential.api_key
    response = await partner.live.call("DELETE", f"api_keys/{key}/")
    assert response.status_code == 404
    assert (await partner.sandbox.call("GET", "bookings/")).status_code == 200


async def test_bearer_can_be_turned_off(
    http: httpx.AsyncClient, services: Services, partner: PartnerFixture
) -> None:
    async with services.database.transaction() as session:
        await session.execute(
            update(Partner).where(Partner.id == partner.id).values(bearer_enabled=False)
        )
    services.authenticator.forget()
    secret = partner.sandbox.credential.api_secret
    response = await http.get(bookings_path(partner), headers={"Authorization": f"Bearer {secret}"})
    assert error(response) == (401, "authentication_error", "Invalid API secret.")
    assert (await partner.sandbox.call("GET", "bookings/")).status_code == 200


async def test_suspended_partner_is_refused(services: Services, partner: PartnerFixture) -> None:
    async with services.database.transaction() as session:
        await session.execute(
            update(Partner).where(Partner.id == partner.id).values(status="suspended")
        )
    services.authenticator.forget()
    response = await partner.sandbox.call("GET", "bookings/")
    assert error(response) == (401, "authentication_error", "Invalid signature.")
