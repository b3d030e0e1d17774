"""draft-cavage signatures: the contract's test vectors and the parser."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from coverline.partners.signatures import (
    SignatureHeaderError,
    encode_signature,
    parse_signature_header,
    sign,
    string_to_sign,
    verify,
)

DATE_2019 = "Tue, 01 Jan 2019 00:00:00 GMT"


def test_vector_date_only_sha512() -> None:
    message = string_to_sign(("date",), "get", "/", {"date": DATE_2019})
    assert message == f"date: {DATE_2019}"
    assert encode_signature(sign("efgh", "hmac-sha512", message)) == (
        "f6RnwuCiDBJiAgi7fbc4cXEeKF%2BPKiIA%2BQbKVHqQmu3KHemhLg2wV5FDceUEbzPurmnqQi5H7W9Ot1om0o7W3A%3D%3D"
    )


def test_vector_date_only_sha256() -> None:
    message = string_to_sign(("date",), "get", "/", {"date": "Sun, 29 Aug 2021 12:07:26 GMT"})
    assert message is not None
    assert encode_signature(sign("test_api_secret", "hmac-sha256", message)) == (
        "bfxytCfvFqito27v0%2FKcN1jBJsgnCReimKXdAWwoi0k%3D"
    )


def test_vector_request_target_and_date() -> None:
    message = string_to_sign(
        ("(request-target)", "date"), "POST", "/api/partners/LLODT/quotes/", {"date": DATE_2019}
    )
    assert message == f"(request-target): post /api/partners/LLODT/quotes/\ndate: {DATE_2019}"
    assert encode_signature(sign("efgh", "hmac-sha512", message)) == (
        "UcylBqzj%2BjXSzOQZKZe%2BWH%2FZOx6Lq5fk066xlnZYmbqy8zVPJNtJjoOtJQDxS%2FJ%2F2SiaY6LrxQoKbO8KJr5glg%3D%3D"
    )


def test_parse_full_header_and_url_encoded_signature() -> None:
    header = (
        'Signature keyId="abcd",algorithm="hmac-sha512",headers="(request-target) date",'
        'signature="UcylBqzj%2BjXSzOQZKZe%2BWH%2FZOx6Lq5fk066xlnZYmbqy8zVPJNtJjoOtJQDxS%2FJ'
        '%2F2SiaY6LrxQoKbO8KJr5glg%3D%3D"'
    )
    params = parse_signature_header(header)
    assert params.key_id == "abcd"
    assert params.algorithm == "hmac-sha512"
    assert params.headers == ("(request-target)", "date")
    assert verify(
        params,
        "efgh",
        method="POST",
        path="/api/partners/LLODT/quotes/",
        query="",
        header_values={"date": DATE_2019},
    )


def test_postman_script_header_without_headers_parameter() -> None:
    # The Postman pre-request script of the XCover documentation: CryptoJS HmacSHA512 of
    # "date: <toUTCString()>", base64, encodeURIComponent, and no headers parameter.
    digest = hmac.new(b"efgh", f"date: {DATE_2019}".encode(), hashlib.sha512).digest()
    from urllib.parse import quote

    signature = quote(base64.b64encode(digest).decode(), safe="-_.!~*'()")
    header = f'Signature keyId="abcd",algorithm="hmac-sha512",signature="{signature}"'
    params = parse_signature_header(header)
    assert params.headers == ("date",)
    assert verify(
        params, "efgh", method="GET", path="/x", query="", header_values={"date": DATE_2019}
    )


def test_signature_not_url_encoded_is_accepted() -> None:
    digest = sign("efgh", "hmac-sha256", f"date: {DATE_2019}")
    header = (
        f'Signature keyId="abcd",algorithm="hmac-sha256",headers="date",'
        f'signature="{base64.b64encode(digest).decode()}"'
    )
    params = parse_signature_header(header)
    assert verify(
        params, "efgh", method="GET", path="/", query="", header_values={"date": DATE_2019}
    )


@pytest.mark.parametrize("with_query", [False, True])
def test_request_target_with_and_without_query(with_query: bool) -> None:
    target = (
        "/api/partners/LLODT/bookings/?limit=1&offset=1"
        if with_query
        else ("/api/partners/LLODT/bookings/")
    )
    message = string_to_sign(("(request-target)", "date"), "get", target, {"date": DATE_2019})
    assert message is not None
    params = parse_signature_header(
        f'Signature keyId="k",algorithm="hmac-sha512",headers="(request-target) date",'
        f'signature="{encode_signature(sign("s", "hmac-sha512", message))}"'
    )
    assert verify(
        params,
        "s",
        method="GET",
        path="/api/partners/LLODT/bookings/",
        query="limit=1&offset=1",
        header_values={"date": DATE_2019},
    )


def test_wrong_secret_and_wrong_path_fail() -> None:
    message = string_to_sign(("(request-target)", "date"), "post", "/a", {"date": DATE_2019})
    assert message is not None
    params = parse_signature_header(
        f'Signature keyId="k",algorithm="hmac-sha512",headers="(request-target) date",'
        f'signature="{encode_signature(sign("s", "hmac-sha512", message))}"'
    )
    values = {"date": DATE_2019}
    assert not verify(params, "other", method="POST", path="/a", query="", header_values=values)
    assert not verify(params, "s", method="POST", path="/b", query="", header_values=values)
    assert not verify(params, "s", method="GET", path="/a", query="", header_values=values)


@pytest.mark.parametrize(
    "header",
    [
        "Signature ",
        'Signature keyId="a"',
        'Signature keyId="a",signature="%%%"',
        'Signature keyId="a",signature="abc",keyId="b"',
        'Signature keyId=a,signature="abc"',
        'Signature keyId="a",signature="not base64!"',
        'Basic keyId="a",signature="abc"',
    ],
)
def test_malformed_headers_are_refused(header: str) -> None:
    with pytest.raises(SignatureHeaderError):
        parse_signature_header(header)
