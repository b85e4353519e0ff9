"""The bounded memo used on the hot path: a plain dict, cleared when full.

Why not ``functools.lru_cache``: the generated rules code inlines ``memo.get`` (a hit
costs one dict lookup, no call), and misses must sometimes not be memoized (leak hits
are counted every time). Clearing on overflow keeps memory bounded at the price of an
occasional cold start, which is cheap for the skewed values logs repeat.

>>> memo = {}
>>> remember(memo, "a", 1, size=2), remember(memo, "b", 2, size=2), remember(memo, "c", 3, size=2)
(1, 2, 3)
>>> memo
{'c': 3}
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

V = TypeVar("V")

#: Keys with a longer text (or a tuple holding one) are not stored: memos are bounded
#: in entries, and client text (a 30 KB referrer, a 64 KB user agent) would make that
#: gigabytes (an audit: 92 MB for 3,000 long referrers). Such keys are rare: their
#: values are computed every time.
MAX_KEY_CHARS: Final = 1024


def remember(memo: dict[Any, Any], key: Any, value: V, size: int) -> V:
    """Store ``value`` under ``key``; first empty the memo if it holds ``size`` entries.

    >>> memo = {}
    >>> remember(memo, "x" * 2000, 1, 10), remember(memo, ("a", "x" * 2000), 2, 10), memo
    (1, 2, {})
    """
    if type(key) is str:
        if len(key) > MAX_KEY_CHARS:
            return value
    elif type(key) is tuple and any(type(k) is str and len(k) > MAX_KEY_CHARS for k in key):
        return value
    if len(memo) >= size:
        memo.clear()
    memo[key] = value
    return value
