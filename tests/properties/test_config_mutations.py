"""Property: a config mistake is a message, never a traceback.

The default config with one to three values replaced (by values of other types, out of
range, or names of other actions, fields and formats) or keys removed: check-config
(``validate``) reports problems without raising, and a config it accepts compiles into
a pipeline and runs, or stops with one of the errors the command line reports in one
line (``cli._expected_errors``: a geo database path that is not a file, for instance).
A random search of 10,500 such configs found one traceback (``enrich.cache_size:
2**70``, an OverflowError in ``functools.lru_cache``), now a config error.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from streams.cli import _expected_errors
from streams.config import normalize
from streams.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = yaml.safe_load((ROOT / "config" / "logfog.yaml").read_text(encoding="utf-8"))


def _places(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    places = [path] if path else []
    if isinstance(node, dict):
        places += [p for k, v in node.items() for p in _places(v, (*path, k))]
    elif isinstance(node, list):
        places += [p for i, v in enumerate(node) for p in _places(v, (*path, i))]
    return places


PLACES = _places(DEFAULT)
REMOVE = object()
ANY_VALUE = st.sampled_from(
    [
        REMOVE, None, True, False, 0, -1, 1, 3, 32, 129, 2**31, 2**70, 1.5, float("nan"), "",
        "x", "-1", "0s", "1h", "99999d", "é", [], ["x"], {}, {"a": 1}, "keep", "drop",
        "truncate_ip", "pseudonymize", "coarsen_time", "url_policy", "referrer_policy",
        "generalize", "client.ip", "request.target", "request.referrer", "geo.city",
        "agent.original", "json", "common", "vhost_combined", "%h %Z", "$remote_addr", "*",
        "utm_*", "10.0.0.0/8", "::/0", "env:", "file:/nonexistent", "ephemeral", "domain",
        {"from": "client.ip", "action": "keep"}, {"from": "request.target"},
    ]
)  # fmt: skip
#: A value of the same type as the one replaced: more of the configs get past the
#: type checks, to the bounds and to the compiler.
SAME_KIND: dict[type, st.SearchStrategy[Any]] = {
    int: st.sampled_from([0, -1, 1, 2, 7, 33, 129, 2**15, 2**31 - 1, 2**31, 2**63, 2**70]),
    bool: st.booleans(),
    str: st.sampled_from(["", "x", "1s", "5m", "1d", "400d", "keep", "drop", "country", "city",
                          "path", "domain", "address", "hmac-sha256", "replace", "reject",
                          "analytics", "operations", "combined", "json", "auto"]),
    list: st.lists(st.sampled_from(["utm_*", "q", "*", "", "page", "10.0.0.0/8"]), max_size=3),
}  # fmt: skip


def _at(node: Any, place: tuple[Any, ...]) -> Any:
    for part in place:
        node = node[part]
    return node


@st.composite
def changes(draw: st.DrawFn) -> tuple[tuple[Any, ...], Any]:
    place = draw(st.sampled_from(PLACES))
    same_kind = SAME_KIND.get(type(_at(DEFAULT, place)))
    if same_kind is not None and draw(st.integers(0, 3)):  # three times in four
        return place, draw(same_kind)
    return place, draw(ANY_VALUE)


def mutated(changes: list[tuple[tuple[Any, ...], Any]]) -> dict[str, Any]:
    config = copy.deepcopy(DEFAULT)
    for place, value in changes:
        node = config
        for part in place[:-1]:
            if not isinstance(node, dict | list):
                break
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                break
        else:
            last = place[-1]
            if isinstance(node, dict) and value is REMOVE:
                node.pop(last, None)
            elif isinstance(node, dict) or (
                isinstance(node, list) and isinstance(last, int) and last < len(node)
            ):
                node[last] = None if value is REMOVE else value
    return config


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(changes(), min_size=1, max_size=3))
def test_a_mutated_config_is_refused_with_messages_or_runs(
    changes: list[tuple[tuple[Any, ...], Any]],
) -> None:
    errors: list[str] = []
    config = normalize(mutated(changes), errors, [])  # raises nothing
    assert all(isinstance(e, str) and e for e in errors)
    if errors:
        event("refused by check-config")
        return
    try:
        pipeline = Pipeline.from_normalized(config)
    except _expected_errors():
        event("accepted, then a one-line error at start")
        return
    event("accepted and run")
    line = (
        '203.0.113.9 - - [10/Oct/2026:13:55:36 +0000] "GET /a/12345?utm_source=x HTTP/1.1" '
        '200 512 "https://www.example.com/" "Mozilla/5.0 (X11; Linux x86_64)"'
    )
    out = pipeline.test([line, "junk"])
    assert len(out.rejections) >= 1  # the junk line, at least
