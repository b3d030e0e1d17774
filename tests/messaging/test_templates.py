"""Partners' settings and templates through the API: templates are checked when saved
(unknown variables are refused and nothing is saved), previews render sample or real data,
and the sandbox keeps templates from reaching anything they should not."""

from __future__ import annotations

from typing import Any

import pytest
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from coverline.messaging import service
from coverline.messaging.context import Branding, sample_context, with_renewal
from coverline.messaging.models import MessageTemplate
from coverline.messaging.schemas import SettingsPatch, TemplateIn
from coverline.messaging.templates import (
    EMAIL,
    KINDS,
    SMS,
    TEMPLATES,
    Source,
    _built_in,
    _built_in_html,
    _built_in_text,
    check_source,
    render_built_in,
    render_source,
)
from coverline.runtime import Services
from tests.conftest import PartnerFixture
from tests.messaging.conftest import (
    FULL_NAME,
    NAME_FIRST,
    customer_email,
    gadget_request,
    messages_of,
    sell,
)

PURCHASE_EMAIL = "messaging/templates/purchase/email/en"
TOO_LARGE = "center: 300000000 is too large."
WIDE = "Format width too large."


async def templates_of(partner: PartnerFixture) -> list[dict[str, Any]]:
    response = await partner.sandbox.call("GET", "messaging/templates/")
    assert response.status_code == 200, response.text
    return list(response.json()["results"])


async def test_an_unknown_variable_is_refused_and_nothing_is_saved(
    partner: PartnerFixture,
) -> None:
    before = await templates_of(partner)
    refused = await partner.sandbox.call(
        "PUT",
        PURCHASE_EMAIL,
        {
            "subject": "Thanks {{ customer.first_name }}",
            "text": "Use {{ coupon_code }} on {{ booking.id }} before {{ expiry }}.",
        },
    )
    assert refused.status_code == 422
    assert refused.json() == {
        "type": "validation_error",
        "message": "An API error occurred.",
        "errors": {"text": ["Unknown variables: coupon_code, expiry."]},
    }
    assert await templates_of(partner) == before
    purchase = next(t for t in before if (t["event"], t["channel"]) == ("purchase", EMAIL))
    assert purchase["source"] == "built_in"


@pytest.mark.parametrize(
    ("template", "errors"),
    [
        (
            {"subject": "Hi {{ customer.first_name ", "text": "x"},
            {"subject": ["Line 1: unexpected end of template, expected 'end of print statement'."]},
        ),
        (
            {"subject": "Hi", "text": "{{ booking.nonexistent }}"},
            {"text": ["'dict object' has no attribute 'nonexistent'"]},
        ),
        (
            {"subject": "Hi", "text": "{% include 'email/base.html' %}"},
            {"text": ["Templates cannot include, import or extend other templates."]},
        ),
        (
            {"subject": "Hi", "text": "{{ customer.__class__.__mro__ }}"},
            {"text": ["access to attribute '__class__' of 'dict' object is unsafe."]},
        ),
        (
            {"subject": "Hi", "text": "{{ 'x' * 100000000 }}"},
            {"text": ["Repetition too long."]},
        ),
        # Whatever a template raises, or would build, is refused when it is saved (never a 500).
        (
            {"subject": "Hi", "text": "{{ '\\ud800' }}"},
            {"text": ["The rendered message contains U+0000 or an unpaired surrogate."]},
        ),
        (
            {"subject": "Hi", "text": "a{{ '\\x00' }}"},
            {"text": ["The rendered message contains U+0000 or an unpaired surrogate."]},
        ),
        (
            {"subject": "Hi", "text": "{{ " + "(" * 2000 + "1" + ")" * 2000 + " }}"},
            {"text": ["The template is nested too deeply."]},
        ),
        (
            {"subject": "Hi", "text": "{{ 'abc'|truncate(-5) }}"},
            {"text": ["AssertionError: expected length >= 3, got -5"]},
        ),
        (
            {"subject": "Hi", "text": "{{ 1e400|int }}"},
            {"text": ["NameError: name 'inf' is not defined"]},
        ),
        ({"subject": "Hi", "text": "{{ 'x'|center(300000000) }}"}, {"text": [TOO_LARGE]}),
        ({"subject": "Hi", "text": "{{ 'x'.center(300000000) }}"}, {"text": [TOO_LARGE]}),
        ({"subject": "Hi", "text": "{{ '%999999999d' % 1 }}"}, {"text": [WIDE]}),
        ({"subject": "Hi", "text": "{{ '{:999999999}'.format(1) }}"}, {"text": [WIDE]}),
        (
            {"subject": "Hi", "text": "{{ '%d'|format(1)|center(10) }}{{ '%*d'|format(9, 1) }}"},
            {"text": [WIDE]},
        ),
        (
            {"subject": "Hi", "text": "{{ ('x' * 100000)|replace('x', 'y' * 100000) }}"},
            {"text": ["Replacement too long."]},
        ),
        (
            {"subject": "Hi", "text": "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}"},
            {"text": ["The rendered message is too long."]},
        ),
        (
            {
                "subject": "Hi",
                "text": "{% for i in range(99999) %}{% for j in range(99999) %}"
                "{% endfor %}{% endfor %}",
            },
            {"text": ["The template takes too long to render."]},
        ),
        (
            {"subject": "Hi", "text": "{{ range(100000)|join('x' * 5000) }}"},
            {"text": ["The template builds a value too large."]},
        ),
        (
            {"subject": "Hi", "text": "{{ [[0] * 100000] * 100000 }}"},
            {"text": ["The template builds a value too large."]},
        ),
        (
            {"subject": "Hi", "text": "{{ (10 ** 100) ** 100 * (10 ** 100) ** 100 }}"},
            {"text": ["Number too large."]},
        ),
        (
            {"subject": "Hi", "text": "{{ 'abc'.translate({}) }}"},
            {"text": ["translate is not available in templates."]},
        ),
        ({"subject": "Hi", "text": "{{ lipsum(5) }}"}, {"text": ["Unknown variables: lipsum."]}),
        ({"text": "No subject"}, {"subject": ["This field is required."]}),
        ({"subject": "  ", "text": "x"}, {"subject": ["This field may not be blank."]}),
        (
            {"subject": "Hi", "text": "x", "html": "<p>{{ partner.nme }}</p>"},
            {"html": ["'dict object' has no attribute 'nme'"]},
        ),
    ],
)
async def test_templates_that_cannot_be_used_are_refused(
    partner: PartnerFixture, template: dict[str, Any], errors: dict[str, Any]
) -> None:
    refused = await partner.sandbox.call("PUT", PURCHASE_EMAIL, template)
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"] == errors
    assert all(t["source"] == "built_in" for t in await templates_of(partner))


async def test_sms_templates_have_a_text_only(partner: PartnerFixture) -> None:
    refused = await partner.sandbox.call(
        "PUT", "messaging/templates/purchase/sms/en", {"subject": "x", "text": "y"}
    )
    assert refused.status_code == 422
    assert refused.json()["errors"] == {
        "text": ["SMS templates have a text only (no subject, no html)."]
    }


async def test_wrong_addresses(partner: PartnerFixture) -> None:
    body = {"subject": "x", "text": "y"}
    cases = {
        "messaging/templates/launch/email/en": {"event"},
        "messaging/templates/purchase/fax/en": {"channel"},
        "messaging/templates/purchase/email/english": {"language"},
    }
    for path, fields in cases.items():
        response = await partner.sandbox.call("PUT", path, body)
        assert response.status_code == 422, path
        assert set(response.json()["errors"]) == fields


async def test_save_list_preview_and_delete(partner: PartnerFixture) -> None:
    template = {
        "subject": "{{ partner.name }}: {{ policy.name }} for {{ customer.full_name }}",
        "text": "{% for p in policies %}{{ p.name }} costs {{ p.price }}.\n{% endfor %}",
        "html": "<h1 style='color: {{ partner.brand_colour }}'>{{ customer.full_name }}</h1>",
    }
    saved = await partner.sandbox.call("PUT", "messaging/templates/purchase/email/FR_ca", template)
    assert saved.status_code == 200, saved.text
    assert saved.json()["language"] == "fr-ca"
    assert saved.json()["source"] == "partner"

    listed = await partner.sandbox.call("GET", "messaging/templates/")
    body = listed.json()
    assert set(body["variables"]) >= {"customer", "booking", "policies", "renewal", "refund"}
    assert body["count"] == len(KINDS) * 2 + 1
    mine = [t for t in body["results"] if t["source"] == "partner"]
    assert [(t["event"], t["channel"], t["language"]) for t in mine] == [
        ("purchase", EMAIL, "fr-ca")
    ]

    preview = await partner.sandbox.call(
        "POST", "messaging/templates/purchase/email/fr-ca/preview", {}
    )
    assert preview.status_code == 200, preview.text
    shown = preview.json()
    assert shown["subject"] == (
        f"Partner {partner.code}: Gadget Cover for your Tecno Camon 30 for {FULL_NAME}"
    )
    assert shown["text"] == "Gadget Cover for your Tecno Camon 30 costs ₦5,000.00.\n"
    assert shown["html"] == f"<h1 style='color: #1a56db'>{FULL_NAME}</h1>"

    address = customer_email()
    booking = await sell(partner.sandbox, gadget_request(address))
    real = await partner.sandbox.call(
        "POST",
        "messaging/templates/purchase/email/fr-ca/preview",
        {"booking": booking["id"]},
    )
    assert real.status_code == 200, real.text
    price = booking["quotes"][0]["price_formatted"]
    assert real.json()["text"] == f"Gadget Cover for your Tecno Camon 30 costs {price}.\n"

    deleted = await partner.sandbox.call("DELETE", "messaging/templates/purchase/email/fr-ca")
    assert deleted.status_code == 204
    again = await partner.sandbox.call("DELETE", "messaging/templates/purchase/email/fr-ca")
    assert again.status_code == 404
    built_in = await partner.sandbox.call(
        "POST", "messaging/templates/purchase/email/fr-ca/preview", {}
    )
    assert built_in.json()["subject"] == "Your cover is confirmed: booking GX7KD-4M2QP-INS"


async def test_preview_of_a_draft_and_of_another_partners_booking(
    partner: PartnerFixture, other_partner: PartnerFixture
) -> None:
    draft = await partner.sandbox.call(
        "POST",
        "messaging/templates/renewal_due/sms/en/preview",
        {"text": "{{ customer.first_name }}: renew by {{ renewal.expiry_date }}"},
    )
    assert draft.status_code == 200, draft.text
    assert draft.json() == {
        "event": "renewal_due",
        "channel": SMS,
        "language": "en",
        "subject": None,
        "text": f"{NAME_FIRST}: renew by 14 June 2030, 10:00 (UTC+01:00)",
        "html": None,
    }
    bad = await partner.sandbox.call(
        "POST", "messaging/templates/renewal_due/sms/en/preview", {"text": "{{ nope }}"}
    )
    assert bad.status_code == 422
    assert bad.json()["errors"] == {"text": ["Unknown variables: nope."]}

    theirs = await sell(other_partner.sandbox, gadget_request(customer_email()))
    hidden = await partner.sandbox.call(
        "POST", "messaging/templates/purchase/email/en/preview", {"booking": theirs["id"]}
    )
    assert hidden.status_code == 404


async def test_settings_put_patch_and_validation(partner: PartnerFixture) -> None:
    defaults = (await partner.live.call("GET", "messaging/settings")).json()
    assert defaults == {
        "mode": "live",
        "enabled": True,
        "channels": ["email"],
        "events": list(KINDS),
        "sender_name": None,
        "sender_email": None,
        "reply_to": None,
        "support_url": None,
        "brand_colour": "#1a56db",
        "sms_sender": None,
        "send_in_sandbox": False,
        "effective": {"sender_name": f"Partner {partner.code}", "reply_to": None, "sending": True},
    }
    sandbox = (await partner.sandbox.call("GET", "messaging/settings")).json()
    assert sandbox["effective"]["sending"] is False

    put = await partner.live.call(
        "PUT",
        "messaging/settings",
        {
            "channels": ["sms", "email"],
            "events": ["cancellation", "purchase"],
            "sender_name": "Shop NG — Cover",
            "reply_to": "Help@Shop-NG.example",
            "support_url": "https://shop-ng.example/help",
            "brand_colour": "#0A7D4F",
            "sms_sender": "ShopNG",
        },
    )
    assert put.status_code == 200, put.text
    body = put.json()
    assert body["channels"] == ["email", "sms"]
    assert body["events"] == ["purchase", "cancellation"]
    assert body["reply_to"] == "Help@shop-ng.example"
    assert body["brand_colour"] == "#0a7d4f"
    assert body["effective"]["sender_name"] == "Shop NG — Cover"

    patched = await partner.live.call("PATCH", "messaging/settings", {"enabled": False})
    assert patched.status_code == 200
    assert patched.json()["enabled"] is False
    assert patched.json()["sms_sender"] == "ShopNG"
    replaced = await partner.live.call("PUT", "messaging/settings", {})
    assert replaced.json()["sms_sender"] is None and replaced.json()["enabled"] is True

    refusals = [
        ("brand_colour", "blue"),
        # `$` matches before a final newline: the whole value is checked.
        ("brand_colour", "#aabbcc\n"),
        ("channels", ["email", "pigeon"]),
        ("events", ["birthday"]),
        ("reply_to", "not an address"),
        ("support_url", "javascript:alert(1)"),
        ("sender_name", "Evil\r\nBcc: victim@example.com"),
        ("sms_sender", "ThisIsTooLongForAnSms"),
        ("sms_sender", "ACME\n"),
        ("sms_sender", "+12345678901234\n"),
        ("surprise", True),
    ]
    for name, value in refusals:
        refused = await partner.live.call("PUT", "messaging/settings", {name: value})
        assert refused.status_code == 422, name
        assert name in refused.json()["errors"], refused.json()
    null = await partner.live.call("PATCH", "messaging/settings", {"channels": None})
    assert null.status_code == 422
    assert null.json()["errors"] == {"channels": ["This field may not be null."]}
    after = (await partner.live.call("GET", "messaging/settings")).json()
    assert after == replaced.json()


def test_every_built_in_template_renders_the_sample() -> None:
    branding = Branding(
        "Shop NG", "https://shop-ng.example/help", "help@shop-ng.example", "#0a7d4f"
    )
    for kind in KINDS:
        context = sample_context(kind, branding, "en")
        email = render_built_in(kind, EMAIL, context)
        assert email.subject and "\n" not in email.subject
        assert email.text.startswith(f"Dear {NAME_FIRST},\n\n")
        assert "\n\n\n" not in email.text
        assert email.html is not None and "#0a7d4f" in email.html
        sms = render_built_in(kind, SMS, context)
        assert sms.subject is None and sms.html is None
        assert sms.text.startswith(f"Shop NG: Hi {NAME_FIRST}")
        source = Source(email.subject, "{{ customer.first_name }}", None)
        assert check_source(source, EMAIL, context) == {}


def test_built_in_templates_render_as_with_jinjas_own_lookup() -> None:
    """The built-in templates' environment looks a dict's key up before its attributes (a
    speed-up, `templates._Shipped`); rendered with Jinja's own order, every built-in template
    gives the same text for every kind's sample (a brand name outside ASCII, language yo)."""
    jinja = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        auto_reload=False,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    jinja_text = jinja.overlay(autoescape=False)
    branding = Branding("Ọjà NG", "https://oja.example/help", "help@oja.example", "#0a7d4f")
    names = sorted(
        str(path.relative_to(TEMPLATES)) for path in TEMPLATES.rglob("*") if path.is_file()
    )
    rendered = 0
    for kind in KINDS:
        context = sample_context(kind, branding, "yo")
        for name in names:
            if not name.split("/")[-1].startswith(f"{kind}."):
                continue
            ours = (_built_in_html if name.endswith(".html") else _built_in_text).get_template(name)
            theirs = (jinja if name.endswith(".html") else jinja_text).get_template(name)
            assert ours.render(context) == theirs.render(context), name
            rendered += 1
    assert rendered == len(KINDS) * 4  # subject, text and html of the e-mail, the SMS
    # Where the two orders differ: a key named as a dict method.
    named = {"values": {"items": "three tickets"}}
    assert _built_in_text.from_string("{{ values.items }}").render(named) == "three tickets"
    assert jinja_text.from_string("{{ values.items }}").render(named).startswith("<built-in")


def test_jinjas_globals_stay_available_to_every_template() -> None:
    """Templates keep Jinja's globals (`range`, `namespace`, …) as a plain dict of their own
    (`templates._flat_globals`): partners' templates and the built-in ones still see them."""
    branding = Branding("Shop NG", None, None, "#0a7d4f")
    context = sample_context("purchase", branding, "en")
    source = Source(
        "{{ range(2) | list }}",
        "{% set total = namespace(n=1) %}{% set total.n = total.n + 2 %}{{ total.n }}",
        "<p>{{ dict(a=1) | length }} {{ customer.first_name }}</p>",
    )
    twice = [render_source(source, EMAIL, context) for _ in range(2)]
    assert twice[0] == twice[1]
    assert twice[0].subject == "[0, 1]"
    assert twice[0].text == "3\n"
    assert twice[0].html == f"<p>1 {NAME_FIRST}</p>"
    built_in = _built_in("email/purchase.html").globals
    assert type(built_in) is dict and {"range", "namespace", "dict"} <= built_in.keys()


async def test_a_transaction_reads_settings_and_templates_again_after_changing_them(
    services: Services, partner: PartnerFixture
) -> None:
    """A transaction reads the settings and templates once for all its events, and again
    after it saves or deletes one: its later messages never use what it replaced."""
    now = services.clock.now()
    address = ("purchase", EMAIL, "en")
    async with services.database.transaction() as session:
        before = await service._config_in_transaction(session, partner.id, "sandbox")
        assert (before.sender_name, before.customised) == (None, False)
        assert await service._overrides(session, partner.id, "sandbox") == []

        await service.patch_settings(
            session, partner.id, "sandbox", SettingsPatch(sender_name="Renamed"), now
        )
        after = await service._config_in_transaction(session, partner.id, "sandbox")
        assert (after.sender_name, after.customised) == ("Renamed", True)
        assert await service._overrides(session, partner.id, "sandbox") == []

        await service.save_template(
            session,
            partner.id,
            "sandbox",
            address,
            TemplateIn(subject="Cover", text="Yours, {{ partner.name }}"),
            now,
        )
        [saved] = await service._overrides(session, partner.id, "sandbox")
        assert (saved.kind, saved.channel, saved.language, saved.text) == (
            "purchase",
            EMAIL,
            "en",
            "Yours, {{ partner.name }}",
        )
        # The other mode is not this one.
        assert await service._overrides(session, partner.id, "live") == []

        await service.delete_template(session, partner.id, "sandbox", address)
        assert await service._overrides(session, partner.id, "sandbox") == []


async def test_a_stored_template_that_fails_leaves_the_booking_to_the_built_in_one(
    services: Services, partner: PartnerFixture
) -> None:
    """A template stored before a check refused it (here one that renders an unpaired
    surrogate, which no database stores) never costs a booking: the built-in one is used."""
    before = await sell(partner.sandbox, gadget_request("ada@example.com"))
    now = services.clock.now()
    async with services.database.transaction() as session:
        session.add(
            MessageTemplate(
                partner_id=partner.id,
                mode="sandbox",
                kind="purchase",
                channel=EMAIL,
                language="en",
                subject="Partner's own",
                text="Hi {{ '\\ud800' }}",
                created_at=now,
                updated_at=now,
            )
        )
    after = await sell(partner.sandbox, gadget_request("ada@example.com"))
    assert after["status"] == "CONFIRMED"
    sent = []
    for booking in (before, after):
        [message] = [
            m
            for m in await messages_of(services, booking["id"])
            if (m.kind, m.channel) == ("purchase", EMAIL)
        ]
        sent.append(message)
    assert sent[1].subject == f"Your cover is confirmed: booking {after['id']}"
    assert sent[0].subject == f"Your cover is confirmed: booking {before['id']}"
    assert sent[1].text.splitlines()[:2] == sent[0].text.splitlines()[:2]
    assert after["id"] in sent[1].text


def test_renewal_dates_are_shown_in_the_offset_of_the_policy() -> None:
    """The renewal record's times are UTC; a message shows them in the offset the partner
    sent the policy's dates in, as it shows the policy's own."""
    booking = {
        "currency": "GBP",
        "quotes": [
            {
                "id": "q1",
                "policy_start_date": "2030-01-31T10:30:00+01:00",
                "policy_end_date": "2030-02-28T10:30:00+01:00",
            }
        ],
    }
    renewal = {
        "id": "r1",
        "quote_id": "q1",
        "status": "ACTIVE",
        "start_date": "2030-02-28T09:30:00Z",
        "due_date": "2030-02-28T09:30:00Z",
        "notification_date": "2030-02-21T09:30:00Z",
        "expiry_date": "2030-03-14T09:30:00Z",
        "paid_on": None,
    }
    shown = with_renewal({}, renewal, booking)["renewal"]
    assert shown["due_date"] == "28 February 2030, 10:30 (UTC+01:00)"
    assert shown["expiry_date"] == "14 March 2030, 10:30 (UTC+01:00)"
    assert shown["paid_on"] is None
    utc = with_renewal({}, renewal, {"currency": "GBP", "quotes": []})["renewal"]
    assert utc["due_date"] == "28 February 2030, 09:30 UTC"
