"""Host values the nginx-json example config publishes in ``ops.host`` (client text,
kept as it came) go through the leak sweep: an address in any form a browser or a
reader takes for one must not be published (an audit, session 16, found each of these
kept). Documentation addresses (203.0.113.77); nothing raw is printed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.config import load_file
from streams.enrich.geo import GeoLookup
from streams.keys import EphemeralKeyRing
from streams.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[2]

HOSTS = {
    "2-part inet_aton": "203.29005",
    "3-part inet_aton": "203.0.29005",
    "3-part octal": "0313.0.070515",
    "with a port": "203.0.29005:443",
    "Arabic-Indic digits": "\u0662\u0660\u0663.\u0660.\u0661\u0661\u0663.\u0667\u0667",
    "Devanagari digits": "\u0968\u0966\u0969.\u0966.\u0967\u0967\u0969.\u096d\u096d",
    "after a digit-ended label": "app-1.203.0.113.77.nip.io",
    "after v1": "v1.203.0.113.77.nip.io",
    "after a number": "10.203.0.113.77",
    "dot operator in an email": "jane.doe@gmail\u22c5com",
    "modifier colons": "2a01\ua7894f8\ua789c2c\ua789abcd\ua789\ua7891",
}
KEPT = ["www.example.com", "shop.example.co.uk", "1.2.3", "2024.11.30"]


@pytest.fixture(scope="module")
def pipeline(geo_dbs: dict[str, str]) -> Pipeline:
    config, errors = load_file(ROOT / "config" / "examples" / "nginx-json.yaml")
    assert not errors
    config["enrich"]["geo"] = {"city": geo_dbs["city"], "country": None, "asn": geo_dbs["asn"]}
    return Pipeline.from_normalized(
        config, keyring=EphemeralKeyRing(86400), geo=GeoLookup.from_config(config["enrich"]["geo"])
    )


def _ops_host(pipeline: Pipeline, host: str) -> Any:
    line = orjson.dumps({
        "remote_addr": "192.0.2.10", "time_iso8601": "2024-03-04T10:15:01+01:00",
        "request": "GET / HTTP/1.1", "status": "200", "body_bytes_sent": "5",
        "request_time": "0.010", "http_referer": "-", "http_user_agent": "Mozilla/5.0",
        "host": host,
    })  # fmt: skip
    out = pipeline.test([line])
    assert not out.rejections
    return orjson.loads(out.per_destination[pipeline.names.index("ops")][0][1])["host"]


@pytest.mark.parametrize("case", list(HOSTS))
def test_an_address_as_host_is_not_published(pipeline: Pipeline, case: str) -> None:
    published = _ops_host(pipeline, HOSTS[case])
    assert published is None, f"{case}: host published"


@pytest.mark.parametrize("host", KEPT)
def test_an_ordinary_host_is_published(pipeline: Pipeline, host: str) -> None:
    assert _ops_host(pipeline, host) == host
