"""keep and drop: the two actions that do not transform, and the guard around keep."""

from __future__ import annotations

import pytest

from streams.actions.base import BuildContext
from streams.actions.drop import DROPPED
from streams.actions.drop import SPEC as DROP
from streams.actions.keep import SPEC as KEEP
from streams.config import validate
from streams.fields import SENSITIVE


def test_keep_returns_the_value_and_drop_the_marker() -> None:
    assert KEEP.build({}, BuildContext())(404) == 404
    assert DROP.build({}, BuildContext())("sid=abc") is DROPPED


@pytest.mark.parametrize("source", sorted(SENSITIVE))
def test_keep_on_any_sensitive_field_needs_unsafe(source: str) -> None:
    rule = {"from": source, "action": "keep"}
    config = {"destinations": {"d": {"topic": "t", "fields": {"x": rule}}}}
    assert any(f"keep would publish {source}" in e for e in validate(config))
    rule["unsafe"] = True
    warnings: list[str] = []
    assert validate(config, warnings) == [] and warnings


def test_a_dropped_field_is_absent_from_the_event() -> None:
    from streams.pipeline import Pipeline

    p = Pipeline.from_config({"destinations": {"d": {"topic": "t", "fields": {
        "status": {"from": "response.status", "action": "keep"},
        "cookie": {"from": "request.cookie", "action": "drop"}}}}})  # fmt: skip
    out = p.test(['203.0.113.9 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 5'])
    assert out.events("d") == [{"status": 200}]
