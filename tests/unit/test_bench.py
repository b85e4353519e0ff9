"""The bench's helpers, through their doctests. ``bench/`` is not a test path: its
modules start brokers and workers when run (``make bench``), not when imported."""

from __future__ import annotations

import doctest
import importlib


def test_bench_run_doctests_pass() -> None:
    results = doctest.testmod(importlib.import_module("bench.run"))
    assert results.attempted >= 1
    assert results.failed == 0
