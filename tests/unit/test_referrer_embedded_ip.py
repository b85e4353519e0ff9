"""A referrer host that spells an IPv4 address (with dashes or dots) is not published.

``registrable_domain`` uses the PSL's private section, where tunnel and dynamic-DNS
suffixes (``ngrok.io``, ``duckdns.org``, ``*.compute.amazonaws.com``) make the full
host name the "registrable domain", and ngrok's free URLs (``<hex>-a-b-c-d.ngrok.io``)
and home dynamic-DNS names carry the owner's public address. Only dotted IP literals
were refused (an audit). Documentation addresses; nothing raw is printed.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.cli import _FileAggregates

DASHED = "203-0-113-9"  # 203.0.113.9
HOSTS = {"ngrok": f"1a2b-{DASHED}.ngrok.io", "duckdns": f"home-{DASHED}.duckdns.org"}
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"


def _line(referrer: str, client: str = "198.51.100.7", minute: int = 55) -> str:
    return (f'{client} - - [10/Oct/2000:13:{minute:02d}:36 -0700] "GET / HTTP/1.1" 200 5 '
            f'"{referrer}" "{UA}"')  # fmt: skip


@pytest.mark.parametrize("suffix", list(HOSTS))
def test_dashed_ipv4_referrer_host_never_published(make_pipeline: Any, suffix: str) -> None:
    pipeline = make_pipeline()
    out = pipeline.test([_line(f"https://{HOSTS[suffix]}/demo")])
    assert not out.rejections
    product = orjson.loads(out.per_destination[pipeline.names.index("product")][0][1])
    in_product = DASHED in (product["referrer"] or "")
    rows = out.per_destination[pipeline.names.index("_aggregate")]
    in_rows = sum(DASHED in value.decode() for _key, value, _ in rows)
    assert not in_product, "an IPv4 address in product.referrer"
    assert in_rows == 0, "an IPv4 address in the aggregation input"


def test_dashed_ipv4_referrer_host_never_in_published_aggregates(make_pipeline: Any) -> None:
    pipeline = make_pipeline()
    lines = [_line(f"https://{HOSTS['ngrok']}/demo", client=f"198.51.{i}.7", minute=10 + i)
             for i in range(12)]  # fmt: skip
    out = pipeline.test(lines)
    aggregates = _FileAggregates(pipeline)
    rows = aggregates.add(out.per_destination[pipeline.names.index("_aggregate")])
    rows += aggregates.finish()
    cells = [orjson.loads(r) for r in rows.splitlines()]
    assert cells, "no aggregate rows"
    leaked = sum(DASHED in str(c.get("value")) for c in cells)
    assert leaked == 0, "an IPv4 address in aggregates"


# Found by an audit (session 15): labels that spell a whole address another way, under
# a private suffix that names hosts after them (ip.linodeusercontent.com).
SPELLED = {
    "dashed IPv6": "2600-3c01--f03c-93ff-fe12-abcd.ip.linodeusercontent.com",
    "hex IPv4": "cb00710d.ip.linodeusercontent.com",
    "zero-padded IPv4": "198-051-100-077.ip.linodeusercontent.com",
    "IPv4 as one number": "3405803789.ip.linodeusercontent.com",
    "IPv4 with underscores": "x_203_0_113_7.duckdns.org",
    # and by another (session 16): twelve zero-padded digits, and digits of other
    # scripts, written in Unicode or in punycode, which is how they are published.
    "IPv4 zero-padded to 12 digits": "203000113077.duckdns.org",
    "dashed IPv4 in Devanagari digits": "\u0968\u0966\u0969-\u0966-\u0967\u0967\u0969-\u096d\u096d.duckdns.org",
    "the same in punycode": "xn------mphbhackf9ba.duckdns.org",
    "zero-padded, Arabic-Indic digits": "\u0662\u0660\u0663\u0660\u0660\u0660\u0661\u0661\u0663\u0660\u0667\u0667.duckdns.org",
    "dotted IPv4 in Arabic-Indic digits": "\u0662\u0660\u0663.\u0660.\u0661\u0661\u0663.\u0667\u0667",
}


@pytest.mark.parametrize("form", list(SPELLED))
def test_labels_spelling_an_address_give_no_domain(form: str) -> None:
    from streams.urls import registrable_domain

    assert registrable_domain(f"https://{SPELLED[form]}/".split("/")[2]) is None


def test_ordinary_labels_under_the_same_suffix_still_give_their_domain() -> None:
    from streams.urls import registrable_domain

    assert registrable_domain("web-2024.ip.linodeusercontent.com") == (
        "web-2024.ip.linodeusercontent.com"
    )
    assert registrable_domain("www.decade.example") == "decade.example"
    assert registrable_domain("203000113256.duckdns.org") == "203000113256.duckdns.org"  # > 255
    assert registrable_domain("www.xn--bcher-kva.de") == "xn--bcher-kva.de"
    assert registrable_domain("b\u00fccher-24.de") == "xn--bcher-24-65a.de"


def test_unicode_digit_referrer_is_published_as_no_domain(make_pipeline: Any) -> None:
    # The audit's path: a referrer in Devanagari digits, published as punycode.
    pipeline = make_pipeline()
    out = pipeline.test([_line(f"https://{SPELLED['dashed IPv4 in Devanagari digits']}/")])
    product = orjson.loads(out.per_destination[pipeline.names.index("product")][0][1])
    assert product["referrer"] is None
