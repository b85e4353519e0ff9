"""Topic specs from config: replication for every topic, segments that let retention
act on time, and the verdict on existing topics (privacy rule 14)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from streams.admin import DAY_MS, TopicInfo, TopicSpec, compare
from streams.config import normalize
from streams.topics import topic_specs


@pytest.fixture(scope="module")
def default_config() -> dict[str, Any]:
    errors: list[str] = []
    raw = {
        "aggregates": {"enabled": True},
        "destinations": {
            "product": {
                "topic": "logs.product",
                "key": "visitor",
                "fields": {
                    "visitor": {"from": ["client.ip", "agent.original"], "action": "pseudonymize"}
                },
            }
        },
    }
    config = normalize(raw, errors, [])
    assert errors == []
    return config


def test_every_topic_is_listed_with_the_internal_ones(default_config: dict[str, Any]) -> None:
    names = [s.name for s in topic_specs(default_config)]
    assert set(names) >= {"logs.raw", "logs.dead", "logs.product", "logfog.agg.input",
                          "logs.aggregates", "logs.aggregates.ops", "logfog.agg.partials",
                          "logfog.agg.state", "logfog.keys"}  # fmt: skip


@pytest.mark.parametrize(
    ("windows", "expected"),
    [
        (["product/1d"], {"logs.aggregates"}),
        (["ops/5m"], {"logs.aggregates.ops"}),
        (["ops/5m", "product/1h"], {"logs.aggregates", "logs.aggregates.ops"}),
    ],
)
def test_only_the_aggregate_topics_the_chosen_windows_write_are_made(
    default_config: dict[str, Any], windows: list[str], expected: set[str]
) -> None:
    """Topics of outputs ``aggregates.windows`` leaves out were made and required (a
    worker with create_topics: false waited for a topic nothing writes; a review)."""
    config = copy.deepcopy(default_config)
    config["aggregates"]["windows"] = windows
    names = {s.name for s in topic_specs(config)}
    assert names & {"logs.aggregates", "logs.aggregates.ops"} == expected


def test_aggregates_kept_25_months_are_bucketed_to_at_least_an_hour() -> None:
    """Rule 8 buckets analytics to at least 1h; rule 14 keeps operations data at most
    30 d and only analytics aggregates up to 25 months. The ops output's 5-minute
    windows were published to logs.aggregates (760 d) with the product ones (an audit,
    D10): every output's rows now go to a topic that keeps them at most 30 d unless
    their windows are 1h or longer, in the shipped config and by default."""
    from pathlib import Path

    from streams.aggregate.runtime import specs_from_config
    from streams.config import load_file
    from streams.durations import parse_duration
    from streams.topics import aggregate_output_topics

    shipped, _ = load_file(Path(__file__).resolve().parents[2] / "config" / "logfog.yaml")
    default = normalize({"aggregates": {"enabled": True}}, [], [])
    for config in (shipped, default):
        aggregates = config["aggregates"]
        specs = specs_from_config(aggregates)
        routes = aggregate_output_topics(aggregates, specs)
        retention = {s.name: s.retention_ms // 1000 for s in topic_specs(config)
                     if s.retention_ms is not None}  # fmt: skip
        kept = {(spec.name, spec.window_label): retention[routes[spec.name, spec.window_label]]
                for spec in specs}  # fmt: skip
        fine = [(s.name, s.window_label) for s in specs if s.window_seconds < 3600
                and kept[s.name, s.window_label] > 30 * 86400]  # fmt: skip
        assert fine == [], f"kept more than 30 d with windows below 1 h: {fine}"
        assert ("ops", "5m") in kept and kept["ops", "5m"] <= 30 * 86400
        assert kept["product", "1h"] == parse_duration(aggregates["output"]["retention"])


def test_kafka_replication_applies_to_every_topic(default_config: dict[str, Any]) -> None:
    assert {s.replication_factor for s in topic_specs(default_config)} == {1}
    config = copy.deepcopy(default_config)
    config["kafka"]["replication"] = 3
    config["aggregates"]["state"]["replication"] = 5  # a topic's own setting wins
    by_name = {s.name: s.replication_factor for s in topic_specs(config)}
    assert by_name.pop("logfog.agg.state") == 5
    assert set(by_name.values()) == {3}, by_name


def test_replication_below_one_is_a_config_error() -> None:
    from streams.config import validate

    errors = validate({"kafka": {"replication": 0, "raw": {"replication": 0}},
                       "destinations": {"o": {"topic": "o", "fields": {
                           "s": {"from": "response.status", "action": "keep"}}}}})  # fmt: skip
    assert errors == ["kafka.replication: must be at least 1",
                      "kafka.raw.replication: must be at least 1"]  # fmt: skip


def test_segments_roll_within_a_24th_of_retention(default_config: dict[str, Any]) -> None:
    for spec in topic_specs(default_config):
        configs = spec.topic_configs()
        assert spec.retention_ms is not None and "segment.ms" in configs, spec.name
        segment = int(configs["segment.ms"])
        assert segment <= spec.retention_ms / 24 or spec.name == "logfog.keys", spec.name
        assert segment <= 7 * DAY_MS
    state = next(s for s in topic_specs(default_config) if s.name == "logfog.agg.state")
    assert state.topic_configs()["segment.ms"] == str(3 * DAY_MS // 24)


def test_a_spec_may_set_its_own_segment() -> None:
    spec = TopicSpec("k", 1, 10 * DAY_MS, config={"segment.ms": "1000"})
    assert spec.segment_ms == 1000 and spec.topic_configs()["segment.ms"] == "1000"
    assert TopicSpec("n", 1, None).segment_ms is None
    assert "segment.ms" not in TopicSpec("n", 1, None).topic_configs()


RAW = TopicSpec("logs.raw", 4, 3 * DAY_MS)
GOOD = {"retention.ms": str(3 * DAY_MS), "segment.ms": str(3 * DAY_MS // 24),
        "cleanup.policy": "delete"}  # fmt: skip


@pytest.mark.parametrize(
    ("configs", "violation"),
    [
        ({"retention.ms": str(7 * DAY_MS)}, "retention.ms 604800000 (7.0 d) exceeds the declared"),
        ({"retention.ms": "-1"}, "retention.ms -1 (infinite or unknown)"),
        ({"segment.ms": str(7 * DAY_MS)}, "segment.ms 604800000 (7.0 d) exceeds 10800000"),
        ({"cleanup.policy": "compact"}, "cleanup.policy compact (wanted delete): records would "
                                        "never expire"),
    ],
)  # fmt: skip
def test_records_outliving_the_declared_retention_are_violations(
    configs: dict[str, str], violation: str
) -> None:
    bad, diffs = compare(RAW, TopicInfo("logs.raw", 4, {**GOOD, **configs}))
    assert len(bad) == 1 and bad[0].startswith(violation), bad
    assert diffs == []


def test_harmless_differences_are_not_violations() -> None:
    info = TopicInfo("logs.raw", 2, {**GOOD, "retention.ms": str(DAY_MS),
                                     "segment.ms": "60000"}, replication=1)  # fmt: skip
    spec = TopicSpec("logs.raw", 4, 3 * DAY_MS, replication_factor=3)
    bad, diffs = compare(spec, info)
    assert bad == []
    assert diffs == ["partitions 2 (wanted 4)", "replication factor 1 (wanted 3)",
                     "retention.ms 86400000 (1.0 d) is shorter than the declared 259200000 "
                     "(3.0 d)"]  # fmt: skip
    assert compare(RAW, TopicInfo("logs.raw", 4, GOOD)) == ([], [])


def test_compact_delete_topics_may_not_lose_delete() -> None:
    state = TopicSpec("s", 1, 3 * DAY_MS, cleanup_policy="compact,delete")
    bad, _ = compare(state, TopicInfo("s", 1, {**GOOD, "cleanup.policy": "compact"}))
    assert bad and "never expire" in bad[0]
    assert compare(state, TopicInfo("s", 1, {**GOOD, "cleanup.policy": "compact,delete"})) == (
        [], [])  # fmt: skip
