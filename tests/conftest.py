"""Shared fixtures: tiny geo databases, a deterministic key ring, configs for samples."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streams.config import load_file
from streams.enrich.geo import GeoLookup
from streams.keys import DerivedKeyRing
from streams.pipeline import Pipeline
from tests.support.mmdb import default_test_dbs

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "data" / "samples"
TEST_KEY = bytes(range(32))  # tests only: golden files need stable pseudonyms

#: sample file -> input section that parses it
SAMPLE_INPUTS: dict[str, dict[str, Any]] = {
    "combined.log": {"format": "combined"},
    "common.log": {"format": "common"},
    "vhost_combined.log": {"format": "vhost_combined"},
    "nginx_main.log": {"format": "nginx_main", "trusted_proxies": ["10.0.0.0/8"]},
    "nginx.json": {"format": "json", "trusted_proxies": ["10.0.0.0/8"]},
    "custom.log": {"format": 'apache:%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i" %D '
                             '"%{Accept-Language}i"'},
}  # fmt: skip


@pytest.fixture(scope="session")
def geo_dbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return default_test_dbs(tmp_path_factory.mktemp("mmdb"))


@pytest.fixture(scope="session")
def default_config(geo_dbs: dict[str, str]) -> dict[str, Any]:
    """config/logfog.yaml with the tiny test databases instead of DB-IP."""
    config, _ = load_file(ROOT / "config" / "logfog.yaml")
    config["enrich"]["geo"] = {"city": geo_dbs["city"], "country": None, "asn": geo_dbs["asn"]}
    return config


@pytest.fixture
def make_pipeline(default_config: dict[str, Any]) -> Callable[..., Pipeline]:
    """``make_pipeline(input={...}, **overrides)`` -> a pipeline on the default rules."""

    def make(
        input: dict[str, Any] | None = None, keyring: Any = None, **overrides: Any
    ) -> Pipeline:
        config = copy.deepcopy(default_config)
        if input is not None:
            config["input"].update(input)
        config.update(overrides)
        ring = keyring if keyring is not None else DerivedKeyRing(TEST_KEY, 86400)
        geo = GeoLookup.from_config(config["enrich"]["geo"])
        return Pipeline.from_normalized(config, keyring=ring, geo=geo)

    return make
