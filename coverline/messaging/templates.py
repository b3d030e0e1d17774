"""Message templates: the built-in English ones (files under `templates/`) and partners' own,
rendered in a Jinja2 sandbox.

A partner's template is checked when it is saved: it must parse, use no variable outside
`VARIABLES`, include or extend nothing, and render the sample context of its kind. At send
time a partner's template that fails to render falls back to the built-in one, so a message
is never lost to a template.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateSyntaxError,
    meta,
)

from coverline.messaging import sandbox
from coverline.messaging.sandbox import MAX_OUTPUT, PartnerSandbox

log = logging.getLogger("coverline.messaging")

TEMPLATES = Path(__file__).parent / "templates"
EMAIL = "email"
SMS = "sms"
CHANNELS = (EMAIL, SMS)
# Customer messages, in the order of a policy's life.
KINDS = (
    "purchase",
    "activation",
    "modification",
    "cancellation",
    "renewal_notification",
    "renewal_due",
    "renewal_expired",
    "renewal_success",
)
# Messages from the operator to the partner itself: built in, not overridable.
OPERATOR_KINDS = ("endpoint_disabled",)
BUILT_IN_LANGUAGE = "en"
LANGUAGE = re.compile(r"^[a-z]{2}(-[a-z0-9]{2,8})?$")

# The variables a template may use, and what each holds (docs/messaging.md lists them too).
VARIABLES: dict[str, str] = {
    "event": "the message kind, e.g. purchase",
    "language": "the language the message is written in, e.g. en",
    "partner": "name, support_url, support_email, brand_colour",
    "customer": "first_name, last_name, full_name, email, phone",
    "booking": "id, status, currency, total_price, pds_url, certificate_url, "
    "partner_transaction_id",
    "policies": "a list of policies: id, name, type, status, start_date, end_date, price, "
    "cover_amount, pds_url, refund",
    "policy": "the first of policies",
    "cover_start": "when the earliest policy starts",
    "cover_end": "when the latest policy ends",
    "renewal": "id, status, policy_name, start_date, notification_date, due_date, "
    "expiry_date, paid_on, price (none outside renewal messages)",
    "refund": "total, amount (cancellations only)",
}

MAX_SUBJECT = 300
MAX_TEXT = 20_000
MAX_HTML = 200_000


class TemplateProblem(Exception):
    """A template that cannot be used; `field` names the part (subject, text, html)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


# No database stores these, and a message with them could not be sent.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


# Both kinds of environment render the same way.
_OPTIONS: dict[str, Any] = {
    "undefined": StrictUndefined,
    "trim_blocks": True,
    "lstrip_blocks": True,
    "keep_trailing_newline": False,
}


def _sandboxed(autoescape: bool) -> PartnerSandbox:
    """Partners' templates: sandboxed (`coverline.messaging.sandbox`), compiled from their
    source (`_compiled`)."""
    return PartnerSandbox(autoescape=autoescape, **_OPTIONS)


class _Shipped(Environment):
    """The environment of Coverline's own templates. Their variables are dicts (see
    `coverline.messaging.context`), and `booking.policyholder` in a template is Jinja's
    attribute lookup: an attribute first, then the key. On a dict every such lookup raised
    and caught an AttributeError before finding the key, dozens of times per message; here a
    dict's key is looked up first. The built-in templates use no dict method."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def _trusted(autoescape: bool) -> Environment:
    """Coverline's own templates: shipped with the code, so neither sandboxed nor re-read."""
    # autoescape is False only for the plain-text parts.
    return _Shipped(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=autoescape,
        auto_reload=False,
        **_OPTIONS,
    )


_built_in_text = _trusted(False)
_built_in_html = _trusted(True)
_partner_text = _sandboxed(False)
_partner_html = _sandboxed(True)


def _flat_globals(template: Template) -> Template:
    """The template's globals as one plain dict, not the ChainMap of its own and its
    environment's (which never change once loaded): Jinja copies them into every render's
    context, and iterated the ChainMap twice per render to do so (a fifth of the cost of
    rendering the purchase and activation e-mails)."""
    template.globals = dict(template.globals)
    return template


@lru_cache(maxsize=1024)
def _compiled(source: str, html: bool) -> Template:
    return _flat_globals((_partner_html if html else _partner_text).from_string(source))


@lru_cache(maxsize=256)
def _built_in(name: str) -> Template:
    environment = _built_in_html if name.endswith(".html") else _built_in_text
    return _flat_globals(environment.get_template(name))


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    text: str
    html: str | None


@dataclass(frozen=True)
class Source:
    """A template's source: subject and html for e-mail only (html optional: the text in the
    partner's layout when absent)."""

    subject: str | None
    text: str
    html: str | None


def built_in_source(kind: str, channel: str) -> Source:
    def read(name: str) -> str:
        return (TEMPLATES / name).read_text(encoding="utf-8")

    if channel == SMS:
        return Source(None, read(f"sms/{kind}.txt"), None)
    return Source(
        read(f"email/{kind}.subject.txt"), read(f"email/{kind}.txt"), read(f"email/{kind}.html")
    )


def normalise_language(value: str | None) -> str:
    if not value:
        return BUILT_IN_LANGUAGE
    return value.strip().lower().replace("_", "-")


def language_candidates(language: str) -> list[str]:
    """Which languages' templates may serve a customer: the exact one, its primary language,
    then the built-in language."""
    candidates = [language]
    primary = language.split("-", 1)[0]
    for extra in (primary, BUILT_IN_LANGUAGE):
        if extra not in candidates:
            candidates.append(extra)
    return candidates


def _one_line(text: str) -> str:
    return " ".join(text.split())[:MAX_SUBJECT]


_BLANK_LINES = re.compile(r"\n\s*\n(\s*\n)+")


def _finish(text: str) -> str:
    """Plain text as sent: at most one blank line in a row, one final newline."""
    if len(text) > MAX_OUTPUT:
        raise TemplateError("The rendered message is too long.")
    return _BLANK_LINES.sub("\n\n", text).strip() + "\n"


def render_built_in(kind: str, channel: str, context: Mapping[str, Any]) -> Rendered:
    if channel == SMS:
        return Rendered(None, _finish(_built_in(f"sms/{kind}.txt").render(context)).strip(), None)
    return Rendered(
        _one_line(_built_in(f"email/{kind}.subject.txt").render(context)),
        _finish(_built_in(f"email/{kind}.txt").render(context)),
        _built_in(f"email/{kind}.html").render(context),
    )


def render_source(source: Source, channel: str, context: Mapping[str, Any]) -> Rendered:
    """Render a partner's template; raises TemplateProblem naming the part that failed."""

    def run(part: str, text: str, html: bool) -> str:
        try:
            output = sandbox.render(_compiled(text, html), context)
        except TemplateError as exc:
            raise TemplateProblem(part, _describe(exc)) from None
        except RecursionError:
            raise TemplateProblem(part, "The template is nested too deeply.") from None
        except Exception as exc:  # whatever a partner's template raises is its problem
            raise TemplateProblem(part, f"{type(exc).__name__}: {exc}") from None
        if _UNSTORABLE.search(output):
            raise TemplateProblem(
                part, "The rendered message contains U+0000 or an unpaired surrogate."
            )
        return output

    text = run("text", source.text, False)
    if channel == SMS:
        return Rendered(None, _finish(text).strip(), None)
    subject = _one_line(run("subject", source.subject or "", False))
    if source.html is not None:
        html = run("html", source.html, True)
    else:
        html = _built_in("email/_text.html").render({**context, "body_text": text.strip()})
    return Rendered(subject, _finish(text), html)


def render(
    kind: str, channel: str, override: Source | None, context: Mapping[str, Any]
) -> Rendered:
    """The message: the partner's template when it renders, otherwise the built-in one."""
    if override is not None:
        try:
            return render_source(override, channel, context)
        except TemplateProblem as exc:
            log.warning(
                "partner template for %s/%s failed, using the built-in: %s", kind, channel, exc
            )
    return render_built_in(kind, channel, context)


def _describe(exc: TemplateError) -> str:
    if isinstance(exc, TemplateSyntaxError):
        return f"Line {exc.lineno}: {exc.message}"
    return str(exc.message if exc.message else exc)


def check_source(source: Source, channel: str, sample: Mapping[str, Any]) -> dict[str, list[str]]:
    """Problems of a partner's template, by part; empty when it may be saved."""
    problems: dict[str, list[str]] = {}
    parts: list[tuple[str, str | None, int]] = [("text", source.text, MAX_TEXT)]
    if channel == EMAIL:
        parts += [("subject", source.subject, MAX_SUBJECT), ("html", source.html, MAX_HTML)]
    elif source.subject is not None or source.html is not None:
        problems["text"] = ["SMS templates have a text only (no subject, no html)."]
    for part, text, limit in parts:
        if text is None:
            if part == "subject":
                problems[part] = ["This field is required."]
            continue
        if not text.strip():
            problems[part] = ["This field may not be blank."]
            continue
        if len(text) > limit:
            problems[part] = [f"At most {limit} characters."]
            continue
        environment = _partner_html if part == "html" else _partner_text
        try:
            tree = environment.parse(text)
            # Both walk the tree by recursion too (a sum of 5,000 terms is 5,000 levels).
            undeclared = meta.find_undeclared_variables(tree)
            references = any(True for _ in meta.find_referenced_templates(tree))
        except TemplateSyntaxError as exc:
            problems[part] = [_describe(exc)]
            continue
        except RecursionError:
            problems[part] = ["The template is nested too deeply."]
            continue
        unknown = sorted(undeclared - VARIABLES.keys())
        if unknown:
            problems[part] = [f"Unknown variables: {', '.join(unknown)}."]
            continue
        if references:
            problems[part] = ["Templates cannot include, import or extend other templates."]
    if problems:
        return problems
    try:
        render_source(source, channel, sample)
    except TemplateProblem as exc:
        problems[exc.field] = [exc.message]
    return problems
