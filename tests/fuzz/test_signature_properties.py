"""Properties of the Authorization header parsing: the draft-cavage Signature parser alone, and
the whole authentication path of the real application for arbitrary header values."""

from __future__ import annotations

import string
from urllib.parse import unquote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coverline.partners.signatures import (
    ALGORITHMS,
    SignatureHeaderError,
    SignatureParams,
    encode_signature,
    parse_signature_header,
)
from coverline.runtime import Services
from tests.conftest import PartnerFixture, partner_state
from tests.fixtures.payloads import quote_request
from tests.fixtures.signing import http_date, signed_headers

BUDGET = settings(max_examples=300, derandomize=True, database=None, deadline=None)
APP_BUDGET = settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

NAMES = ["keyId", "algorithm", "headers", "signature", "KeyID", "extra"]
quoted_values = st.text(st.characters(exclude_characters='"'), max_size=30)
parameter = st.tuples(st.sampled_from(NAMES), quoted_values).map(lambda p: f'{p[0]}="{p[1]}"')
near_valid = st.lists(parameter, max_size=6).flatmap(
    lambda params: st.sampled_from([",", ", ", " ,", ",,"]).map(
        lambda separator: "Signature " + separator.join(params)
    )
)
headers_text = st.one_of(
    st.text(),
    st.text().map(lambda rest: "Signature " + rest),
    near_valid,
)


@BUDGET
@given(value=headers_text)
def test_parser_returns_params_or_raises_its_own_error(value: str) -> None:
    try:
        parsed = parse_signature_header(value)
    except SignatureHeaderError:
        return
    assert isinstance(parsed, SignatureParams)
    assert parsed.key_id and parsed.headers and isinstance(parsed.signature, bytes)


key_ids = st.text(st.characters(exclude_characters='"', exclude_categories=("Cs",)), min_size=1)
header_names = st.lists(
    st.text(string.ascii_lowercase + string.digits + "-()", min_size=1, max_size=20),
    min_size=1,
    max_size=5,
).map(tuple)


@BUDGET
@given(
    key_id=key_ids,
    algorithm=st.sampled_from(sorted(ALGORITHMS)),
    headers=header_names,
    signature=st.binary(min_size=1, max_size=64),
    url_encoded=st.booleans(),
)
def test_formatting_then_parsing_round_trips(
    key_id: str, algorithm: str, headers: tuple[str, ...], signature: bytes, url_encoded: bool
) -> None:
    encoded = encode_signature(signature) if url_encoded else unquote(encode_signature(signature))
    value = (
        f'Signature keyId="{key_id}",algorithm="{algorithm}",'
        f'headers="{" ".join(headers)}",signature="{encoded}"'
    )
    assert parse_signature_header(value) == SignatureParams(key_id, algorithm, headers, signature)


# What an HTTP header can carry: Latin-1 without line breaks or NUL.
header_values = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")),
    headers_text.filter(lambda v: all(0x20 <= ord(c) <= 0xFF for c in v)),
    st.sampled_from(["Bearer ", "Bearer", "Signature ", "Basic dXNlcg==", http_date()]),
)


@APP_BUDGET
@given(
    authorization=st.none() | header_values,
    date=st.none() | header_values | st.just(http_date(0)),
    api_key=st.none() | header_values,
    signed_for_date=st.booleans(),
)
async def test_arbitrary_credentials_are_refused_with_a_4xx_and_change_nothing(
    http: httpx.AsyncClient,
    services: Services,
    partner: PartnerFixture,
    authorization: str | None,
    date: str | None,
    api_key: str | None,
    signed_for_date: bool,
) -> None:
    path = f"/api/partners/{partner.code}/quotes/"
    headers: dict[str, bytes] = {}
    if signed_for_date and date is not None:
        # A real signature for a forged Date, X-Api-Key or both.
        credential = partner.sandbox.credential
        authorization = signed_headers(
            credential.api_key, credential.api_secret, "POST", path, date=date
        )["Authorization"]
    for name, value in (("Authorization", authorization), ("Date", date), ("X-Api-Key", api_key)):
        if value is not None:
            headers[name] = value.encode("latin-1")
    before = await partner_state(services, partner.id)
    response = await http.post(path, json=quote_request(), headers=headers)
    if response.status_code == 201:
        # Only a genuine signature with a current Date and a matching (or no) X-Api-Key.
        assert signed_for_date and api_key in (None, partner.sandbox.credential.api_key)
        return
    assert response.status_code in {400, 401}, response.text
    body = response.json()
    assert set(body) == {"type", "message", "errors"}
    assert body["type"] in {"invalid_request_error", "authentication_error"}
    assert await partner_state(services, partner.id) == before
