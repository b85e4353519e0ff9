"""referrer_policy action: cross-site domains, same-site paths, schemes, IP hosts."""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.actions.base import BuildContext
from streams.actions.referrer_policy import SPEC
from streams.detect import find_leak

CTX = BuildContext()
SITE = {"site_domains": ["shop.example.com"]}


def build(ctx: BuildContext = CTX, **options: object) -> Callable[[object], object]:
    """The rule, on lines without a host (the transform reads ``(host, referrer)``)."""
    f = SPEC.build(options, ctx)
    return lambda referrer: f((None, referrer))


def test_spec_shape() -> None:
    assert SPEC.name == "referrer_policy"
    assert [o.name for o in SPEC.options] == ["site_domains", "same_site", "allow_query", "keep"]


@pytest.mark.parametrize(("options", "value", "expected"), SPEC.examples)
def test_spec_examples(options: dict[str, object], value: object, expected: object) -> None:
    assert SPEC.build(options, CTX)(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://www.google.co.uk/search?q=john%40x.com", "google.co.uk"),
        ("HTTPS://WWW.BING.COM/", "bing.com"),
        ("https://user:pw@news.ycombinator.com:443/item?id=1", "ycombinator.com"),
        ("https://alice.github.io/post", "github.io"),  # a registry holds github.io
        ("https://bücher.de/x", "xn--bcher-kva.de"),
        ("https://www.example.com/account/12345?utm_source=mail&sid=abc#x",
         "/account/{id}?utm_source=mail"),
        ("https://example.com", "/"),
        ("https://EXAMPLE.com/u/john@x.com/", "/u/{email}/"),
        ("https://shop.example.com/u/jane@1x.com", "/u/{email}"),  # not an image name
        ("https://www.google.com/" + "a" * 9000, None),  # over 8 KiB
        ("junk https://www.google.com/", None),  # the URL must start the referrer
        ("android-app://com.example/https://www.google.com/", None),
        ("http://192.0.2.7/admin", None),
        ("http://192.0.2.7:8080/", None),
        ("http://[2001:db8::1]/", None),
        ("http://[::ffff:192.0.2.7]/", None),
        ("http://3232235777/", None),
        ("http://127.1/", None),
        ("http://localhost:3000/", None),
        ("android-app://com.google.android.gm/", None),
        ("file:///C:/Users/john/x.html", None),
        ("data:text/html,hi", None),
        ("javascript:alert(1)", None),
        ("about:blank", None),
        ("www.google.com/search", None),
        ("//www.google.com/", None),
        ("-", None),
        ("", None),
        (None, None),
        (42, None),
        ("http://[::1/", None),
    ],
)  # fmt: skip
def test_referrers(value: object, expected: object) -> None:
    assert build(**SITE)(value) == expected


def test_same_site_domain_mode() -> None:
    f = build(same_site="domain", **SITE)
    assert f("https://www.example.com/account/1") == "example.com"


def test_keep_none_drops_cross_site_only() -> None:
    f = build(keep="none", **SITE)
    assert f("https://www.google.com/") is None
    assert f("https://example.com/a") == "/a"


def test_site_from_context() -> None:
    f = build(BuildContext(site="www.example.com"))
    assert f("https://example.com/a") == "/a"
    g = build(BuildContext(site="shop"))  # a name, not a host: nothing is same-site
    assert g("https://example.com/a") == "example.com"


def test_allow_query_option() -> None:
    f = build(allow_query=["page"], **SITE)
    assert f("https://example.com/a?page=2&utm_source=x") == "/a?page=2"
    # Same-site paths keep allowlisted keys: search terms and session ids need unsafe
    # here exactly as in url_policy.
    assert SPEC.validate is not None
    assert SPEC.validate({"allow_query": ["sid"]}, CTX) != []
    assert SPEC.validate({"allow_query": ["q"]}, BuildContext(unsafe=True)) == []


def test_site_domains_check() -> None:
    opt = next(o for o in SPEC.options if o.name == "site_domains")
    assert opt.check is not None
    assert opt.check(["1.2.3.4"]) is not None
    assert opt.check(["example.com"]) is None


_LABEL = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=12)


@settings(max_examples=300)
@given(st.ip_addresses(), st.sampled_from(["http", "https"]), st.text(max_size=20))
def test_ip_hosts_never_published(ip: object, scheme: str, rest: str) -> None:
    host = f"[{ip}]" if ":" in str(ip) else str(ip)
    assert build(**SITE)(f"{scheme}://{host}/{rest}") is None


@settings(max_examples=300)
@given(st.lists(_LABEL, min_size=1, max_size=3), st.emails(), st.text(max_size=30))
def test_outputs_are_clean(labels: list[str], email: str, rest: str) -> None:
    value = f"https://{'.'.join(labels)}.com/{email}?q={email}&{rest}"
    out = build(**SITE)(value)
    if out is not None:
        assert find_leak(out) is None
        assert email not in out


# --- host names as browsers send them (session 10 audit) ------------------------------


def test_idn_domains_are_encoded_as_browsers_do() -> None:
    # UTS 46 non-transitional (IDNA 2008): straße.de is xn--strae-oqa.de, not strasse.de.
    from streams.urls import registrable_domain

    assert registrable_domain("www.straße.de") == registrable_domain("xn--strae-oqa.de")
    assert registrable_domain("straße.de") == "xn--strae-oqa.de"
    f = build(site_domains=["straße.de"])
    assert f("https://www.xn--strae-oqa.de/a?x=1") == "/a"


@pytest.mark.parametrize(
    ("referrer", "expected"),
    [
        ("https://www.google.com\\jane.doe", "google.com"),  # "\" ends the host
        ("https://www.google.com%20jane%20doe/", None),
        ("https://www.google.com%0ajane/", None),
        ("https://my_host.example.com/", "example.com"),  # "_" occurs in DNS names
    ],
)
def test_only_host_names_are_published(referrer: str, expected: str | None) -> None:
    f = build(site_domains=["www.example.org"])
    assert f(referrer) == expected


def test_a_backslash_in_a_same_site_referrer_is_a_path_separator() -> None:
    f = build(site_domains=["www.example.org"])
    assert f("https://www.example.org\\u\\12345") == "/u/{id}"


REFERRERS = st.one_of(
    st.sampled_from(
        [
            "https://www.google.co.uk/search?q=x",
            "https://shop.example.com/cart/12345?utm_source=a",
            "http://shop.example.com\\jane.doe@example.org",
            "https://www.example.com/a?sid=1",
            "http://192.0.2.7/admin",
            "android-app://com.google.android.gm/",
            "-",
            "",
            "https://shop.example.com/u/jane.doe@example.org/orders",
            "HTTPS://T.CO/x",
            None,
            # Cross-site domains the leak sweep hits (a token, an address): null,
            # counted at every occurrence.
            "https://a8f3kq9z0x7c2v5b1n4m6l8k0j3h5g7f.com/x",
            "http://203.0.113.9.nip.io/",
        ]
    ),
    st.builds(
        "https://{}/{}".format,
        st.sampled_from(["shop.example.com", "a.b.example.net", "localhost", "co.uk"]),
        st.text(string.ascii_letters + string.digits + "/?=&@.%", max_size=30),
    ),
    st.text(max_size=40),
)
RULES = [
    dict(SITE),  # the product's: same-site paths, cross-site domains
    {**SITE, "same_site": "domain"},  # the aggregation input's
    {**SITE, "keep": "none", "allow_query": ["utm_*"]},
]


HOSTS = st.sampled_from(
    [None, "shop.example.com", "www.example.net:443", "Blog.Example.NET.", "203.0.113.9",
     "localhost", "a.b.example.net"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(HOSTS, REFERRERS), max_size=12))
def test_rules_built_together_give_each_rules_own_values_and_leak_counts(
    values: list[tuple[str | None, object]],
) -> None:
    """One match and one domain lookup a referrer for several rules (session 13): the
    same values as each rule alone, swept and memoized as the rules compiler does, and
    the same leak counts (a hit counted at every occurrence, in both). Memoized per
    (host, referrer): a referrer's answer for one site is not another's."""
    from collections import Counter

    from streams.rules import swept, swept_group

    assert SPEC.build_group is not None
    alone_leaks: Counter[str] = Counter()
    group_leaks: Counter[str] = Counter()
    ctx = BuildContext(site="www.example.com", cache_size=4)
    alone = [swept(SPEC.build(options, ctx), alone_leaks, 4) for options in RULES]
    together = swept_group(SPEC.build_group([(o, ctx) for o in RULES]), group_leaks, 4)
    fresh = [SPEC.build(options, ctx) for options in RULES]  # no memo at all
    for value in values * 2:  # the second time from the memos
        expected = tuple(rule(value) for rule in alone)
        assert together(value) == expected
        assert all(e is None or e == f(value) for e, f in zip(expected, fresh, strict=True))
    assert group_leaks == alone_leaks


def test_a_leak_in_rules_built_together_is_counted_at_every_occurrence() -> None:
    from collections import Counter

    from streams.rules import swept_group

    assert SPEC.build_group is not None
    leaks: Counter[str] = Counter()
    together = swept_group(SPEC.build_group([(o, CTX) for o in RULES]), leaks, 100)
    for _ in range(3):
        value = (None, "https://www.a8f3kq9z0x7c2v5b1n4m6l8k0j3h5g7f.com/")
        assert together(value) == (None, None, None)
    assert leaks == {"token": 2 * 3}  # the third rule drops cross-site referrers


# --- the request's host is the site (an audit) -----------------------------------------


VHOST_LINE = (
    'shop.example.com:443 1.2.3.4 - - [10/Oct/2024:13:55:36 +0000] "GET /x HTTP/1.1" 200 100 '
    '"https://shop.example.com/cart?utm_source=a" "curl/8"'
)


def test_a_referrer_from_the_requests_own_host_is_same_site() -> None:
    """The same-site test ignored the vhost: with site: other.example.net, a shop's own
    cart page was published as the cross-site "example.com", though ``site`` is only the
    fallback for logs without a vhost (and pseudonyms already used the vhost)."""
    f = SPEC.build({}, BuildContext(site="other.example.net"))
    cart = "https://shop.example.com/cart?utm_source=a"
    for host in ("shop.example.com", "Shop.Example.COM:443", "www.example.com."):
        assert f((host, cart)) == "/cart?utm_source=a"
    assert f((None, cart)) == "example.com"  # no vhost: the site decides
    assert f((None, "https://www.other.example.net/a")) == "/a"
    # With a vhost the site is not this line's site; a host without a registrable
    # domain (an address, localhost, nginx's catch-all "_") names none: the site
    # decides, as without a host (a review: it made nothing same-site).
    assert f(("shop.example.com", "https://www.other.example.net/a")) == "example.net"
    assert f(("203.0.113.9", cart)) == "example.com"
    assert f(("[2001:db8::1]:443", cart)) == "example.com"
    for nameless in ("localhost", "_", "10.0.0.5:8080", "web01"):
        assert f((nameless, "https://www.other.example.net/a")) == "/a", nameless
    g = SPEC.build({"site_domains": ["example.org"]}, BuildContext(site="other.example.net"))
    assert g(("shop.example.com", "https://example.org/b")) == "/b"  # listed: too
    assert g(("shop.example.com", cart)) == "/cart?utm_source=a"  # and the host's own
    assert g((None, "https://www.other.example.net/a")) == "example.net"  # listed replace site


def test_a_vhost_log_publishes_same_site_referrers_as_paths(
    make_pipeline: Callable[..., Any],
) -> None:
    """End to end, as the audit found it: vhost_combined input, site: other.example.net."""
    pipeline = make_pipeline(input={"format": ["vhost_combined"]}, site="other.example.net")
    other_host = VHOST_LINE.replace("shop.example.com:443 ", "blog.example.org:443 ", 1)
    out = pipeline.test([VHOST_LINE, other_host, VHOST_LINE])
    assert [e["referrer"] for e in out.events("product")] == [
        "/cart?utm_source=a", "example.com", "/cart?utm_source=a",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("referrer", "expected"),
    [
        ("http://Jane-Does-MacBook-Pro.local:8080/", None),
        ("http://janes-iphone.lan/", None),
        ("https://jsmith-laptop.internal/wiki", None),
        ("http://jane-nas.home.arpa/", None),
        ("http://router.home/", None),
        ("https://jane-nas.duckdns.org/", "duckdns.org"),
        ("https://ab12cd34ef56gh78.myfritz.net/", "myfritz.net"),
        ("https://news.ycombinator.com/item?id=1", "ycombinator.com"),
        ("https://www.bbc.co.uk/news", "bbc.co.uk"),
    ],
)
def test_a_cross_site_referrer_publishes_only_what_a_registry_holds(
    referrer: str, expected: str | None
) -> None:
    """The list's private section and unknown top-level names made device and home
    names "registrable domains": a page on the visitor's own machine or home network
    (``jane-does-macbook-pro.local``, a dynamic DNS name that resolves to the home's
    address) was published as the referrer (an audit, session 16)."""
    f = SPEC.build({}, BuildContext(site="shop.example.com"))
    assert f(("shop.example.com", referrer)) == expected


def test_same_site_is_still_judged_below_a_private_suffix() -> None:
    """A site on github.io keeps its own referrers as paths; another github.io site's
    is cross-site, published as the registry's domain."""
    f = SPEC.build({}, BuildContext())
    assert f(("alice.github.io", "https://alice.github.io/post/7")) == "/post/{id}"
    assert f(("alice.github.io", "https://bob.github.io/")) == "github.io"
