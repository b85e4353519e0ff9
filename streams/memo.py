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

from typing import Any, TypeVar

V = TypeVar("V")


def remember(memo: dict[Any, Any], key: Any, value: V, size: int) -> V:
    """Store ``value`` under ``key``; first empty the memo if it holds ``size`` entries."""
    if len(memo) >= size:
        memo.clear()
    memo[key] = value
    return value
