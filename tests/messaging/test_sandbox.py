"""The sandbox of partners' templates: no template builds a huge value, however it asks.

Each template below, unbounded, builds gigabytes (or a number of millions of digits) in one
step of C or in a few dozen; here each is refused with a clear message while the render
allocates a few megabytes at most (measured with tracemalloc).
"""

from __future__ import annotations

import tracemalloc

import pytest

from coverline.messaging import sandbox
from coverline.messaging.context import Branding, sample_context
from coverline.messaging.sandbox import MAX_VALUE, weight
from coverline.messaging.templates import EMAIL, SMS, Source, check_source, render_source

LARGE = "The template builds a value too large."
MUCH = "The template builds too much text."
NUMBER = "Number too large."
# Far below what any of the templates below would allocate unbounded (a gigabyte or more).
PEAK_BYTES = 32 * 2**20

SAMPLE = sample_context("purchase", Branding("Tickets Ltd", None, None, "#112233"), "en")
NESTED = "[[0] * 100000] * 100000"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        # A separator, an indent or a wrap string written once per item or line.
        ("{{ range(100000)|join('x' * 5000) }}", LARGE),
        ("{{ ('x' * 5000).join(['a'] * 90000) }}", LARGE),
        ("{{ ('a\\n' * 50000)|indent(100000) }}", LARGE),
        ("{{ ('a\\n' * 50000)|indent('x' * 50000) }}", LARGE),
        ("{{ ('a ' * 50000)|wordwrap(1, wrapstring='x' * 100000) }}", LARGE),
        ("{{ ('\\t' * 100000).expandtabs(100000) }}", LARGE),
        ("{{ ('{0}' * 30000).format('x' * 100000) }}", LARGE),
        ("{{ ('%s' * 30000) % (('x' * 100000,) * 3) }}", LARGE),
        ("{{ ('%s' * 30000)|format('x' * 100000) }}", LARGE),
        ("{{ range(1)|batch(100000, 'x' * 100000)|map('join')|join }}", LARGE),
        # Doubling, thirty times over.
        (
            "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
            LARGE,
        ),
        (
            "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
            "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}",
            LARGE,
        ),
        (
            "{% set ns = namespace(s=[1]) %}{% for i in range(40) %}"
            "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}",
            LARGE,
        ),
        (
            "{% set ns = namespace(x=10 ** 100) %}{% for i in range(30) %}"
            "{% set ns.x = ns.x * ns.x %}{% endfor %}{{ ns.x > 1 }}",
            NUMBER,
        ),
        ("{{ (10 ** 100) ** 100 * (10 ** 100) ** 100 }}", NUMBER),
        # One list held 100,000 times: small in memory, 30 GB written out or compared.
        (f"{{{{ {NESTED} }}}}", LARGE),
        (f"{{{{ 'a' ~ {NESTED} }}}}", LARGE),
        (f"{{{{ {NESTED} == {NESTED} }}}}", LARGE),
        (f"{{{{ ({NESTED})|string }}}}", LARGE),
        (f"{{{{ ({NESTED})|tojson }}}}", LARGE),
        (f"{{{{ ({NESTED})|map('list')|sort|length }}}}", LARGE),
        ("{{ ([[1]] * 100000)|sum(start=[])|length }}", LARGE),
        ("{{ [0] * 99999 in ([[0] * 99999] * 1000)|map('list') }}", LARGE),
        # Many strings of 100,000 characters, each kept by a block or a macro.
        (
            "{% set s %}{% for i in range(100000) %}{{ ('x' * 100000) ~ i }}{% endfor %}"
            "{% endset %}{{ s|length }}",
            MUCH,
        ),
        (
            "{% macro m() %}{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}"
            "{% endmacro %}{{ m()|length }}",
            MUCH,
        ),
        (
            "{{ ('x' * 100000).translate({120: 'y' * 100000}) }}",
            "translate is not available in templates.",
        ),
        ("{{ ('x' * 10)|tojson(100000) }}", "tojson: an indent of at most 8."),
        ("{{ [1]|sum(start=[]) }}", "sum adds numbers only."),
        # Lists and dicts cannot be changed in place (not even into holding themselves).
        (
            "{% set l = [] %}{{ l.append(l) }}",
            "access to attribute 'append' of 'list' object is unsafe.",
        ),
        # A sum of 5,000 terms is as deep a tree as 5,000 parentheses.
        ("{{ " + "+".join(["1"] * 5000) + " }}", "The template is nested too deeply."),
    ],
)
def test_a_template_that_would_build_a_huge_value_is_refused(
    text: str, problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bound on size is under test, not the deadline: tracemalloc on a busy machine slows
    # the steps that come before a refusal past half a second.
    monkeypatch.setattr(sandbox, "RENDER_SECONDS", 60.0)
    tracemalloc.start()
    try:
        problems = check_source(Source(None, text, None), SMS, SAMPLE)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert problems == {"text": [problem]}
    assert peak < PEAK_BYTES


def test_what_templates_do_every_day_still_works() -> None:
    source = Source(
        "{{ partner.name ~ ': ' ~ policies|length ~ ' policies' }}",
        "{% set ns = namespace(names=[]) %}{% for p in policies %}"
        "{% set ns.names = ns.names + [p.name] %}{% endfor %}"
        "{{ ns.names|join(', ') }}|{{ '%s-%s'|format(1, 2) }}|{{ '{}/{}'.format(3, 4) }}"
        "|{{ ('ab' * 3)|center(10) }}|{{ [1, 2, 3]|sum }}|{{ 2 ** 10 }}|{{ 'x' + 'y' }}"
        "|{{ {'a': 1}|tojson }}|{{ policy.status == 'active' }}|{{ 'a\\nb'|indent(2) }}"
        "|{{ range(3)|map('string')|join }}|{{ [3, 1, 2]|sort|list }}",
        "<p>{{ customer.first_name ~ ' <3' }}</p>",
    )
    rendered = render_source(source, EMAIL, SAMPLE)
    names = ", ".join(p["name"] for p in SAMPLE["policies"])
    status = SAMPLE["policy"]["status"] == "active"
    assert rendered.subject == f"Tickets Ltd: {len(SAMPLE['policies'])} policies"
    assert rendered.text == (
        f'{names}|1-2|3/4|  ababab  |6|1024|xy|{{"a": 1}}|{status}|a\n  b|012|[1, 2, 3]\n'
    )
    assert rendered.html == f"<p>{SAMPLE['customer']['first_name']} &lt;3</p>"


def test_weight_is_what_a_value_takes_written_out() -> None:
    assert weight("abc") == 3
    assert weight([1, 2]) == 3 * 2 + 2 + 2
    assert weight({"a": "bc"}) == 4 + 2 + 1 + 2
    inner = [0] * 1000
    # Counted only until past the limit: one list held 1,000 times weighs 1,000 of it.
    assert weight([inner] * 1000, limit=10_000) > 10_000
    assert weight([inner] * 90, limit=MAX_VALUE) == 3 * 90 + 2 + 90 * (3 * 1000 + 2 + 1000)
