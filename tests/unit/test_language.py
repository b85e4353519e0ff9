"""primary_language: Accept-Language -> primary subtag of the preferred entry."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.enrich.language import MAX_HEADER_LENGTH, _primary_language, primary_language
from tests.support.memory import BIG, retained


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("de-CH,de;q=0.9,en;q=0.8", "de"),
        ("en-US,en;q=0.9", "en"),
        ("en", "en"),
        ("EN-gb", "en"),
        ("fr-FR;q=0.5, ja;q=0.8", "ja"),
        ("fr;q=0.5,de;q=0.5", "fr"),  # tie: first wins
        ("da, en-gb;q=0.8, en;q=0.7", "da"),
        ("da;q=1.0, en;q=1", "da"),
        ("zh-Hant-TW,zh;q=0.9", "zh"),
        ("gsw-CH", "gsw"),  # three-letter primary subtags are valid
        ("en_US", "en"),  # underscore, sent by some clients
        (" de ; q = 0.7 , *;q=0.9", "de"),
        ("*", None),
        ("*;q=0.9, it;q=0.1", "it"),
        ("de;q=0", None),
        ("de;q=0.000,fr;q=0.001", "fr"),
        ("de;q=2, fr;q=0.2", "fr"),  # q out of range -> entry ignored
        ("de;q=abc, fr;q=0.2", "fr"),
        ("de;level=1", None),
        ("i-klingon", None),  # one-letter primary subtags are not languages
        ("x-pig-latin, es;q=0.3", "es"),
        ("english", None),
        ("d3", None),
        ("<script>alert(1)</script>", None),
        ("", None),
        ("-", None),
        (",,,;;;", None),
        (None, None),
        ("\u212aa", None),  # Kelvin sign lowercases to ASCII "k": still rejected
        ("é", None),
    ],
)
def test_primary_language(header: str | None, expected: str | None) -> None:
    assert primary_language(header) == expected


def test_long_header_is_cut() -> None:
    header = "x" * MAX_HEADER_LENGTH + ",de"
    assert primary_language(header) is None
    assert primary_language("de," + "x" * 10_000) == "de"


def test_cached() -> None:
    _primary_language.cache_clear()
    primary_language("nl-BE,nl;q=0.9")
    primary_language("nl-BE,nl;q=0.9")
    info = _primary_language.cache_info()
    assert (info.hits, info.misses, info.maxsize) == (1, 1, 4096)


def test_the_cache_holds_headers_only_as_long_as_what_is_read() -> None:
    # Keyed by whole headers, its 4,096 entries could hold 64 KB each (an audit).
    _primary_language.cache_clear()

    def run() -> None:
        for i in range(50):
            assert primary_language(f"de,{i:06d}" + "x" * BIG) == "de"

    try:
        assert retained(run) < 50 * 4096  # whole headers: about 50 * 60 KB
    finally:
        _primary_language.cache_clear()


def test_the_entry_cut_by_the_length_limit_is_left_out() -> None:
    # Cut before its ";q=0.1", ",fr-FR;q=0.1" would become ",fr" with the implicit q=1.
    header = "de;q=0.9" + ",en;q=0.1" * 9 + ",es;q=0.11" * 42
    assert len(header) == MAX_HEADER_LENGTH - 3
    assert primary_language(header + ",fr-FR;q=0.1") == "de"


_VALID = re.compile(r"[a-z]{2,3}")


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(max_size=80),
        st.lists(
            st.tuples(
                st.from_regex(r"[A-Za-z]{1,4}(-[A-Za-z0-9]{1,8}){0,2}|\*", fullmatch=True),
                st.one_of(st.none(), st.floats(0, 1).map(lambda q: f"{q:.3f}")),
            ),
            max_size=6,
        ).map(lambda xs: ",".join(t if q is None else f"{t};q={q}" for t, q in xs)),
    )
)
def test_result_is_always_a_primary_subtag_from_the_header(header: str) -> None:
    result = primary_language(header)
    assert result is None or _VALID.fullmatch(result)
    if result is not None:
        assert result in header.lower().replace("_", "-")
