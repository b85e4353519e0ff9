"""streams.urls: path templating, query filtering, registrable domains."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from streams.detect import find_leak
from streams.urls import (
    check_patterns,
    compile_allow,
    filter_query,
    registrable_domain,
    template_path,
    template_segment,
    template_value,
)

PATHS = [
    ("/", "/"),
    ("", ""),
    ("/blog/how-to-cook-pasta", "/blog/how-to-cook-pasta"),
    ("/v2/api", "/v2/api"),
    ("/static/app.3f2a.css", "/static/app.3f2a.css"),  # short fingerprint kept
    ("/static/main.3f2a9b1c4d5e6f70.js", "/static/{token}"),  # hex >= 16
    ("/users/12345/orders", "/users/{id}/orders"),
    ("/users/12345/", "/users/{id}/"),  # trailing slash kept
    ("//a//b/", "//a//b/"),  # empty segments kept
    ("/o/550e8400-e29b-41d4-a716-446655440000", "/o/{uuid}"),
    ("/o/550E8400E29B41D4A716446655440000", "/o/{uuid}"),
    ("/u/john@example.com", "/u/{email}"),
    ("/u/John.Doe+tag@Example.COM/x", "/u/{email}/x"),
    ("/u/john%40example.com", "/u/{email}"),
    ("/u/john%2540example.com", "/u/{email}"),  # double-encoded
    ("/u/user-john@x.com", "/u/{email}"),
    ("/img/logo@2x.png", "/img/logo@2x.png"),
    ("/img/Icon@1.5X.WEBP", "/img/Icon@1.5X.WEBP"),
    ("/u/jane@1x.com", "/u/{email}"),  # digits and x: a domain, not an image density
    ("/u/jane@2x.example.org/x", "/u/{email}/x"),
    ("/m/@10xgenomics.com", "/m/{email}"),  # a mailbox domain (left of a split address)
    ("/o/order-12345-confirmation", "/o/{id}"),  # a 5-digit run identifies
    ("/t/a1b2c3d4e5f6-abcdefgh", "/t/{token}"),  # 21 characters, 12 irregular: a token
    ("/t/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "/t/{token}"),
    ("/p/4111-1111-1111-1111", "/p/{id}"),
    ("/p/4111%201111%201111%201111", "/p/{id}"),
    ("/orders/ORD-123456", "/orders/{id}"),
    ("/a/aB3dE5fG7hJ9kL1mN3pQ", "/a/{token}"),
    ("/reset/dGhpcyBpcyBhIHNlY3JldCB0b2tlbg", "/reset/{token}"),
    ("/report-2024", "/report-2024"),
    ("/p/iphone-15-pro-max-256gb", "/p/iphone-15-pro-max-256gb"),
    ("/dl/linux-x86_64.tar.gz", "/dl/linux-x86_64.tar.gz"),
    ("/caf%C3%A9/%E2%9C%93", "/caf%C3%A9/%E2%9C%93"),  # non-ASCII kept as sent
    ("/straße/über", "/straße/über"),
    ("/ping/1.2.3.4", "/ping/{id}"),
    ("/h/fe80::1", "/h/{token}"),
    ("/h/%5B2001:db8::1%5D", "/h/{id}"),  # digit-heavy wins; any placeholder will do
    ("/a;jsessionid=ABC/b", "/a/b"),  # matrix params dropped
    ("/BLOG/How-To", "/BLOG/How-To"),
]


@pytest.mark.parametrize(("path", "expected"), PATHS)
def test_template_path(path: str, expected: str) -> None:
    assert template_path(path) == expected


@given(
    st.lists(
        st.one_of(
            st.sampled_from(["users", "orders", "a@b.io", "x%40y.io", "v2", "", "12ab"]),
            st.integers(0, 10**9).map(str),
            st.uuids().map(str),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_paths_of_one_shape_share_work_but_not_results(segments: list[str]) -> None:
    # The second memo is keyed by the path with ids and UUIDs already replaced: a path
    # met first through another of its shape must come out as if it were new.
    path = "/" + "/".join(segments)
    twin = "/" + "/".join("7" + s if s.isdigit() else s for s in segments)
    expected = "/" + "/".join(template_segment(s) for s in path.split("/")[1:])
    assert template_path(twin) == template_path(path) == expected


def test_very_long_segments() -> None:
    # 20 letters or more are classified (tokens of letters only); 32 hex letters in a
    # row have the UUID's shape. Either way: no placeholder-less copy, and no hang.
    assert template_path("/" + "a" * 10_000) == "/{uuid}"
    # One letter repeated does not read like words (streams/wordlike.py): a token.
    assert template_path("/" + "k" * 10_000) == "/{token}"
    assert template_path("/" + "information" * 1_000) == "/" + "information" * 1_000
    assert template_path("/" + "a1" * 5_000) in {"/{id}", "/{uuid}", "/{token}"}
    assert template_path("/" + "9" * 10_000) == "/{id}"


def test_template_segment_fast_path() -> None:
    assert template_segment("products") == "products"
    assert template_segment("") == ""


ALLOW = compile_allow(["utm_*", "page", "lang"])


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ""),
        ("utm_source=x&token=abc", "utm_source=x"),
        ("UTM_Source=A&Page=2", "utm_source=A&page=2"),  # case-insensitive, lowered
        ("utm_source=a&utm_source=b", "utm_source=a&utm_source=b"),  # repeated: all kept
        ("page=2&utm_medium=cpc&lang=de", "page=2&utm_medium=cpc&lang=de"),  # order kept
        ("utm_source=john%40x.com", "utm_source={email}"),
        ("utm_source=john%2540x.com", "utm_source={email}"),
        ("utm_source=a+b%2Bc@x.io", "utm_source={email}"),
        ("utm_content=123456789", "utm_content={id}"),
        ("page=123456", "page={id}"),
        ("utm_campaign=spring+sale", "utm_campaign=spring%20sale"),
        ("utm_source", "utm_source="),
        ("utm_source=", "utm_source="),
        ("&&&utm_source=x&&", "utm_source=x"),
        ("utm_%73ource=x", "utm_source=x"),  # encoded key decoded once, then matched
        ("utm%255Fsource=x", ""),  # double-encoded key: default deny
        ("q=secret&email=a@b.co&gclid=Cj0KCQiA", ""),
        ("utm_term=%E2%9C%93", "utm_term=%E2%9C%93"),
    ],
)
def test_filter_query(query: str, expected: str) -> None:
    assert filter_query(query, ALLOW) == expected


def test_compile_allow() -> None:
    allow = compile_allow(["UTM_*", "Page"])
    assert allow.exact == frozenset({"page"})
    assert allow.prefixes == ("utm_",)
    assert allow("utm_x") and allow("PAGE") and not allow("pages") and not allow("utm")


@pytest.mark.parametrize("bad", [["*"], ["a*b"], [""], ["a=b"], [" page"]])
def test_check_patterns_refuses(bad: list[str]) -> None:
    assert check_patterns(bad) is not None


def test_check_patterns_accepts() -> None:
    assert check_patterns(["utm_*", "page"]) is None


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("www.google.co.uk", "google.co.uk"),
        ("WWW.Google.CO.UK.", "google.co.uk"),
        ("user:pw@www.example.com:8443", "example.com"),
        ("alice.github.io", "alice.github.io"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("www.xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("localhost", None),
        ("co.uk", None),
        ("", None),
        ("1.2.3.4", None),
        ("1.2.3.4:80", None),
        ("[2001:db8::1]", None),
        ("[2001:db8::1]:443", None),
        ("2001:db8::1", None),
        ("127.1", None),
        ("3232235777", None),
        ("0x7f.0.0.1", None),
        ("foo.123", None),
        ("a..b", None),
        ("%31.2.3.4", None),
        ("www.%65xample.com", "example.com"),  # browsers decode the host
        ("jane@doe@www.example.com", "example.com"),  # the host follows the last "@"
        # Fullwidth digits and dots: UTS 46 maps them to an IP (the check after IDNA).
        ("１９２.０.２.７", None),
        ("１９２．０．２．７", None),
        ("１２７．１", None),
        ("www.example.１２３", None),
    ],
)
def test_registrable_domain(host: str, expected: str | None) -> None:
    assert registrable_domain(host) == expected


_WORDS = st.text(alphabet=string.ascii_lowercase + "-", min_size=1, max_size=15)


@settings(max_examples=300)
@given(st.lists(_WORDS, min_size=1, max_size=8))
def test_slugs_survive(words: list[str]) -> None:
    path = "/" + "/".join(words)
    assert template_path(path) == path


@pytest.mark.parametrize(
    "segment",
    # A control character or space before the "@" once decoded (found by the property
    # below: Hypothesis' emails() may put "%09" in a local part).
    ["%09%40A.AC", "j%09%40gmail.com", "j%20%40gmail.com", "%09%2540a.ac"],
)
def test_an_at_domain_after_a_separator_is_an_email(segment: str) -> None:
    assert template_path(f"/a/{segment}/x") == "/a/{email}/x"


@example(email="%09@A.AC", at="%40", word="a")
@settings(max_examples=300)
@given(st.emails(), st.sampled_from(["", "%40", "%2540"]), _WORDS)
def test_emails_never_survive_template(email: str, at: str, word: str) -> None:
    # A "/" in the local part splits the address across segments: a path can't hold
    # it as one value. Documented limitation; the domain part is still replaced.
    assume("/" not in email)
    if at:
        email = email.replace("@", at)
    out = template_path(f"/{word}/{email}/x")
    assert out == f"/{word}/{{email}}/x"
    assert find_leak(out) is None


def _reference_filter(query: str, patterns: list[str]) -> str:
    """filter_query written with the standard library's parser (the old implementation)."""
    from urllib.parse import parse_qsl, quote

    from streams.urls import template_value

    allow = compile_allow(patterns)
    if not query or not allow.may_match(query):
        return ""
    return "&".join(
        f"{quote(k.lower(), safe='-._~{}')}={quote(template_value(v), safe='-._~{}')}"
        for k, v in parse_qsl(query, keep_blank_values=True)
        if allow(k)
    )


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                ["utm_source", "UTM_Medium", "page", "p%61ge", "utm+x", "q", "", "sid"]
            ),
            st.one_of(st.none(), st.text(alphabet="ab12+%=;&@.-_~é", max_size=12)),
        ),
        max_size=6,
    )
)
def test_filter_query_decodes_like_parse_qsl(pairs: list[tuple[str, str | None]]) -> None:
    query = "&".join(k if v is None else f"{k}={v}" for k, v in pairs)
    patterns = ["utm_*", "page"]
    assert filter_query(query, compile_allow(patterns)) == _reference_filter(query, patterns)


def _reference_filter_query(query: str, patterns: list[str], template: bool) -> str:
    """filter_query, may_match and the key check as they were before their memos (kept
    verbatim here so the memoized version can be compared with them byte for byte)."""
    from urllib.parse import quote, unquote

    from streams.urls import template_value

    def form_decode(text: str) -> str:
        if "%" in text or "+" in text:
            return unquote(text.replace("+", " "))
        return text

    allow = compile_allow(patterns)
    lowered = query.lower()
    if not query or not (
        any(k in lowered for k in allow.exact) or any(p in lowered for p in allow.prefixes)
    ):
        return ""
    out = []
    for pair in query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        key = form_decode(key)
        lowered_key = key.lower()
        # Past a prefix pattern only a short run of letters and "_.~-" (session 10).
        if not (
            lowered_key in allow.exact
            or any(
                lowered_key.startswith(p)
                and re.fullmatch(r"[a-z_.~-]{0,19}", lowered_key[len(p) :])
                for p in allow.prefixes
            )
        ):
            continue
        value = form_decode(value)
        if template:
            value = template_value(value)
        out.append(f"{quote(key.lower(), safe='-._~{}')}={quote(value, safe='-._~{}')}")
    return "&".join(out)


# Query text with everything the parser and the quoting treat specially: separators,
# escapes (valid, truncated, double), "+", upper case (keys match case-insensitively),
# non-ASCII (quoted as UTF-8; "İ" and "K" change length or script when lower-cased), an
# email and digits (templated values), braces (kept unquoted).
_QUERY_CHARS = "aAuUtTmM_sSpPgGeE12+%=&;@.-~{}é✓İK/ 5F4"
_QUERY_KEYS = ["utm_source", "UTM_Medium", "utm_%73ource", "utm%5Fx", "page", "PAGE",
               "p%61ge", "utm+x", "lang", "q", "", "sid", "utm_", "pagé"]  # fmt: skip
_QUERY_VALUES = ["", "x", "spring+sale", "a%40b.io", "a%2540b.io", "123456", "2",
                 "%E2%9C%93", "%zz", "{id}", "é"]  # fmt: skip
_PAIRS = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(_QUERY_KEYS), st.text(alphabet=_QUERY_CHARS, max_size=8)),
        st.one_of(
            st.none(),
            st.sampled_from(_QUERY_VALUES),
            st.text(alphabet=_QUERY_CHARS, max_size=12),
            st.text(max_size=6),  # any Unicode, surrogates included
        ),
    ),
    max_size=6,
)
_PATTERNS = st.sampled_from(
    [["utm_*", "page"], ["utm_source", "lang"], ["UTM_*"], ["p*", "lang"], ["a"], []]
)


@settings(max_examples=1000, deadline=None)
@example(pairs=[("utm_source", "a%40b.io"), ("UTM_SOURCE", "a%40b.io")], raw="", patterns=["utm_*"])
@example(pairs=[("İutm_x", "1")], raw="", patterns=["utm_*"])
@example(pairs=[("page", "123456")], raw="page=123456", patterns=["page"])
@given(_PAIRS, st.text(alphabet=_QUERY_CHARS, max_size=30), _PATTERNS)
def test_filter_query_is_byte_identical_to_the_unmemoized_one(
    pairs: list[tuple[str, str | None]], raw: str, patterns: list[str]
) -> None:
    # The memos live on the allowlist: calls with memos warm (the same query again,
    # with either template flag) must give the same bytes as the first, cold one.
    allow = compile_allow(patterns)
    for query in ("&".join(k if v is None else f"{k}={v}" for k, v in pairs), raw):
        for template in (True, False, True, False):
            expected = _reference_filter_query(query, patterns, template)
            assert filter_query(query, allow, template) == expected


def _reference_classify(text: str) -> str | None:
    """streams.urls._classify as it was before its fast paths (verbatim)."""
    from streams import detect, urls

    if urls._has_email(text):
        return "{email}"
    if "eyJ" in text and urls._JWT_RE.search(text):
        return "{token}"
    if text.isdigit():
        return "{id}"
    size = len(text)
    if size >= 32 and urls._UUID_RE.search(text):
        return "{uuid}"
    if size >= 16 and urls._HEX16_RE.search(text):
        return "{token}"
    digits = sum(map(str.isdigit, text))
    if digits >= 4:
        alnum = sum(map(str.isalnum, text))
        if digits * 2 >= alnum or urls._DIGIT_RUN5_RE.search(text):
            return "{id}"
    if size >= 20:
        for m in urls._B64_RUN_RE.finditer(text):
            if detect.looks_random(m.group(), min_mixed=12):
                return "{token}"
    leak = detect.find_leak(text)
    if leak is not None:
        return "{id}" if leak == "card" else "{email}" if leak == "email" else "{token}"
    return None


def _reference_template_raw(text: str) -> str | None:
    from streams import urls

    return "{email}" if urls._has_email(text) else _reference_classify(urls._decode(text))


def _reference_template_path(path: str) -> str:
    """template_path as it was before its fast paths, without its memos (verbatim)."""
    import re

    from streams import urls

    def segment(m: re.Match[str]) -> str:
        seg = m.group()
        if urls._PLAIN_RE.fullmatch(seg):
            return seg
        seg = seg.partition(";")[0]
        placeholder = _reference_template_raw(seg)
        return seg if placeholder is None else placeholder

    digits = re.compile(r"(?<![^/])[0-9]+(?![^/])")
    uuid = re.compile(
        r"(?<![^/])[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?![^/])"
    )
    shape = uuid.sub("{uuid}", digits.sub("{id}", path))
    return urls._CANDIDATE_SEGMENT_RE.sub(segment, shape)


def _reference_template_value(value: str) -> str:
    if len(value) <= 4 and value.isdigit():
        return value
    from streams import urls

    if urls._PLAIN_RE.fullmatch(value):
        return value
    placeholder = _reference_template_raw(value)
    return value if placeholder is None else placeholder


# Path and value text that reaches every branch of the classification: digits (ASCII
# and not: "²", "٣"), hex and UUID runs, "-" and "/", escapes (valid, double, broken),
# "@" and a domain, JWT and base64-ish runs, ";" (matrix parameters), non-ASCII.
_SEGMENT_TEXTS = ["/", "//", "-", ".", "_", ";x=1", "%", "%40", "%2540", "%2F", "%zz", "@",
                  "@x.io", "a.b@ex.com", "0", "12", "12345", "2024-05-17", "4111-1111-1111-1111",
                  "550e8400-e29b-41d4-a716-446655440000", "550E8400E29B41D4A716446655440000",
                  "3f2a9b1c4d5e6f70", "eyJhbGciOi.eyJzdWIi", "aB3dE5fG7hJ9kL1mN3pQ", "{id}",
                  "{uuid}", "webp", "x", "Ab", "²", "٣", "é", "1.2.3.4", "fe80::1"]  # fmt: skip
_SEGMENT_PARTS = st.sampled_from(_SEGMENT_TEXTS)
_PATHS = st.one_of(
    st.lists(_SEGMENT_PARTS, max_size=10).map("".join),
    st.text(alphabet="/0123456789abcdefABCDEF-.%@;x²٣é", max_size=40),
)


@settings(max_examples=1000, deadline=None)
@example(path="12/34")
@example(path="/1/2//3/")
@example(path="550e8400-e29b-41d4-a716-446655440000/12")
@given(_PATHS)
def test_template_path_is_byte_identical_to_the_previous_one(path: str) -> None:
    expected = _reference_template_path(path)
    assert template_path(path) == expected
    assert template_path(path) == expected  # memos warm


@settings(max_examples=600, deadline=None)
@given(_PATHS)
def test_template_value_is_byte_identical_to_the_previous_one(value: str) -> None:
    assert template_value(value) == _reference_template_value(value)


def test_a_token_of_letters_only_is_templated_in_paths_and_values() -> None:
    """The fast paths kept every segment or value without a digit, "@", "%" or ";":
    about 2.6% of ``secrets.token_urlsafe(16)`` (reset and magic-link tokens) have no
    digit, and were published as they came (an audit)."""
    token = "qZxWvKpRtYhGfDsLmNbVcX"  # 22 letters, random-looking
    assert template_path(f"/reset/{token}/confirm") == "/reset/{token}/confirm"
    assert template_segment(token) == "{token}" == template_value(token)
    # Long words and slugs are not tokens.
    slug = "/blog/how-to-cook-a-perfect-steak-tonight/internationalization"
    assert template_path(slug) == slug


def test_random_tokens_without_digits_are_almost_always_templated() -> None:
    import random

    rng = random.Random(7)
    tokens = ["".join(rng.choice(string.ascii_letters) for _ in range(22))
              for _ in range(2000)]  # fmt: skip
    kept = sum(template_path(f"/r/{t}") != "/r/{token}" for t in tokens)
    # What is left is the looks-random heuristic's misses (about 0.75%; all before).
    assert kept / len(tokens) < 0.02
