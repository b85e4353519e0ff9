"""The bench's helpers, through their doctests. ``bench/`` is not a test path: its
modules start brokers and workers when run (``make bench``), not when imported."""

from __future__ import annotations

import doctest
import importlib
import sys

import pytest


def test_bench_run_doctests_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    # bench/run.py puts the repository and bench/ first on sys.path when imported: undone
    # after the test, so that other tests in this process import nothing from bench/.
    monkeypatch.setattr(sys, "path", list(sys.path))
    results = doctest.testmod(importlib.import_module("bench.run"))
    assert results.attempted >= 1
    assert results.failed == 0
