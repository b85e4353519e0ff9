"""Memory held after a call, for tests that caches and memos keep no long client text."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

#: Client text near input.max_line_bytes (65,536): far longer than anything parsed.
BIG = 60_000
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 "
)


def retained(run: Callable[[], object]) -> int:
    """Bytes still allocated after ``run()`` returned and garbage was collected."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
