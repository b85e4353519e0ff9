"""Topic specs from config: every topic with its partitions, replication and retention.

Replication: a topic's own ``replication``, else ``kafka.replication`` (the keys topic
and the internal aggregation topics included, so no topic is created with one replica
on a production cluster by mistake).

>>> from streams.config import normalize
>>> cfg = normalize({"destinations": {"ops": {"topic": "logs.ops", "fields": {
...     "s": {"from": "response.status", "action": "keep"}}}}}, [], [])
>>> [(t.name, t.retention_ms // 86400000) for t in topic_specs(cfg)]
[('logs.raw', 3), ('logs.dead', 7), ('logs.ops', 7)]
>>> cfg["kafka"]["replication"] = 3
>>> cfg["kafka"]["raw"]["replication"] = 2
>>> [t.replication_factor for t in topic_specs(cfg)]
[2, 3, 3]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from streams.admin import TopicSpec
from streams.aggregate.spec import DEFAULT_SPECS, AggregateSpec, published_specs
from streams.config import pseudonymizes
from streams.durations import parse_duration


def aggregate_output_topics(
    aggregates: Mapping[str, Any], specs: Iterable[AggregateSpec] = DEFAULT_SPECS
) -> dict[tuple[str, str], str]:
    """(output, window) of each aggregate output -> the topic its rows are published to,
    looked up per row by the ``output`` and ``window`` fields every row carries.

    Windows shorter than an hour are operations data (privacy rule 8 buckets analytics
    to at least 1h): they go to ``aggregates.ops_output``, kept at most 30 days (rule
    14). Only windows of an hour or more go to ``aggregates.output``, the analytics
    aggregates kept up to 25 months.

    >>> from streams.config import normalize
    >>> aggregates = normalize({"aggregates": {"enabled": True}}, [], [])["aggregates"]
    >>> aggregate_output_topics(aggregates)
    {('ops', '5m'): 'logs.aggregates.ops', ('product', '1h'): 'logs.aggregates', \
('product', '1d'): 'logs.aggregates'}
    """
    ops, analytics = aggregates["ops_output"]["topic"], aggregates["output"]["topic"]
    return {(s.name, s.window_label): ops if s.operations else analytics for s in specs}


def topic_specs(config: Mapping[str, Any]) -> list[TopicSpec]:
    kafka = config["kafka"]
    default_replication = kafka.get("replication", 1)

    def _spec(section: Mapping[str, Any]) -> TopicSpec:
        return TopicSpec(
            name=section["topic"],
            partitions=section["partitions"],
            retention_ms=parse_duration(section["retention"]) * 1000,
            replication_factor=section.get("replication") or default_replication,
        )

    specs = [_spec(kafka["raw"]), _spec(kafka["dead_letter"])]
    specs += [_spec(d) for d in config["destinations"].values()]
    aggregates = config.get("aggregates", {})
    if aggregates.get("enabled"):
        published = published_specs(aggregates.get("windows"))
        # Only the topics the chosen windows write (a worker with create_topics: false
        # would wait for one nothing is ever written to).
        if any(not s.operations for s in published):
            specs.append(_spec(aggregates["output"]))
        if any(s.operations for s in published):
            specs.append(_spec(aggregates["ops_output"]))
        specs.append(_spec(aggregates["partials"]))
        state = _spec(aggregates["state"])
        # Window state (with pseudonyms) is checkpointed here: latest per key matters,
        # and a day window's visitor sets can exceed Kafka's 1 MB default.
        specs.append(
            TopicSpec(
                state.name,
                state.partitions,
                state.retention_ms,
                cleanup_policy="compact,delete",
                replication_factor=state.replication_factor,
                config={"max.message.bytes": str(64 << 20)},
            )
        )
    keys = config["keys"]
    if keys["source"] in ("auto", "shared") and pseudonymizes(config):
        from streams.keyshare import topic_spec as keys_topic_spec

        epoch, grace = parse_duration(keys["epoch"]), parse_duration(keys["grace"])
        specs.append(keys_topic_spec(keys["topic"], epoch, grace,
                                     replication_factor=default_replication))  # fmt: skip
    return specs
