"""Accept-Language -> the primary language subtag of the preferred entry.

Only the primary subtag leaves this module (``de-CH`` -> ``de``): the full header, with
its regions, scripts, order and q-values, is a fingerprinting signal.

>>> primary_language("de-CH,de;q=0.9,en;q=0.8")
'de'
>>> primary_language("en;q=0.5, fr-FR;q=0.9")
'fr'
>>> primary_language("*;q=1, en;q=0.1")
'en'
>>> primary_language("da, en-GB;q=1")  # tie on q: the first one wins
'da'
>>> primary_language("zh-Hant-TW")
'zh'
>>> primary_language("de;q=0, <script>") is None
True
>>> primary_language(None) is None
True
"""

from __future__ import annotations

import functools
import re
from typing import Final

__all__ = ["primary_language"]

MAX_HEADER_LENGTH: Final = 512
"""Only this many leading characters of the header are looked at."""

_PRIMARY_RE: Final = re.compile(r"[A-Za-z]{2,3}")
_Q_RE: Final = re.compile(r"\s*q\s*=\s*(0(?:\.\d{0,3})?|1(?:\.0{0,3})?)\s*", re.IGNORECASE)


def primary_language(accept_language: str | None) -> str | None:
    """The primary subtag (lowercase, 2-3 ASCII letters) of the highest-q language.

    Entries that are ``*``, malformed, or have ``q=0`` (or an unparsable q) are
    ignored; among equal q-values the first entry wins. ``None`` when nothing valid is
    left. ``_`` is accepted as a subtag separator (``en_US``, sent by some clients).
    Only the first ``MAX_HEADER_LENGTH`` characters are read, and the entry the cut
    falls in is left out: cut before its ";q=0.1", it would win with the implicit q=1.
    """
    if not accept_language:
        return None
    if len(accept_language) > MAX_HEADER_LENGTH:
        # Cut before the cache: its keys would otherwise hold whole headers (an audit:
        # 4,096 entries of 64 KB each).
        accept_language = accept_language[: MAX_HEADER_LENGTH + 1].rpartition(",")[0]
    return _primary_language(accept_language)


@functools.lru_cache(maxsize=4096)
def _primary_language(accept_language: str) -> str | None:
    best: str | None = None
    best_q = 0.0
    for entry in accept_language.split(","):
        tag, _, params = entry.partition(";")
        primary = tag.strip().replace("_", "-").partition("-")[0]
        if not _PRIMARY_RE.fullmatch(primary):
            continue
        primary = primary.lower()
        q = 1.0
        if params:
            m = _Q_RE.fullmatch(params.partition(";")[0])
            if m is None:
                continue
            q = float(m.group(1))
        if q > best_q:
            best, best_q = primary, q
            if q >= 1.0:
                break  # nothing can beat it, and ties go to the first
    return best
