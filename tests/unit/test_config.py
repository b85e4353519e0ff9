"""Config validation: each mistake gives its own specific message, all at once."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from streams.config import ConfigError, json_schema, load_file, validate

ROOT = Path(__file__).resolve().parents[2]


def base() -> dict[str, Any]:
    return {
        "destinations": {
            "ops": {
                "topic": "logs.ops",
                "fields": {
                    "net": {"from": "client.ip", "action": "truncate_ip"},
                    "route": {"from": "request.target", "action": "url_policy"},
                },
            }
        }
    }


def with_rule(rule: dict[str, Any], kind: str = "operations") -> dict[str, Any]:
    cfg = base()
    cfg["destinations"]["ops"]["kind"] = kind
    cfg["destinations"]["ops"]["fields"]["x"] = rule
    return cfg


CASES = [
    (with_rule({"from": "request.target", "action": "url_policy", "allow_qery": []}),
     "destinations.ops.fields.x: unknown option 'allow_qery' (did you mean 'allow_query'?)"),
    (with_rule({"from": "client.ip", "action": "keep"}),
     "destinations.ops.fields.x: keep would publish client.ip as it is"),
    (with_rule({"from": "agent.original", "action": "keep"}),
     "keep would publish agent.original"),
    (with_rule({"from": "request.cookie", "action": "keep"}), "keep would publish request.cookie"),
    (with_rule({"from": "request.referrer", "action": "keep"}), "keep would publish request.referrer"),
    (with_rule({"from": "client.ip", "action": "truncate_ip", "ipv4_prefix": 32}),
     "ipv4_prefix 32 keeps more than /24"),
    (with_rule({"from": "client.ip", "action": "truncate_ip", "ipv4_prefix": 24}, "analytics"),
     "ipv4_prefix 24 keeps more than /16, the limit for analytics"),
    (with_rule({"from": "client.ip", "action": "truncate_ip", "ipv4_prefix": 40}),
     "destinations.ops.fields.x.ipv4_prefix: must be between 0 and 32"),
    (with_rule({"from": "request.time", "action": "coarsen_time", "bucket": "10s"}),
     "bucket 10s is finer than 1m"),
    (with_rule({"from": "request.time", "action": "coarsen_time", "bucket": "soon"}),
     "fields.x.bucket: 'soon' is not a duration"),
    (with_rule({"from": "client.addr", "action": "truncate_ip"}),
     "fields.x.from: unknown field 'client.addr' (did you mean 'client.ip'?)"),
    (with_rule({"from": "client.ip", "action": "trunc_ip"}),
     "fields.x: unknown action 'trunc_ip' (did you mean 'truncate_ip'?)"),
    (with_rule({"from": "client.ip"}), "fields.x: 'action' is required"),
    (with_rule({"action": "keep"}), "fields.x: 'from' is required"),
    (with_rule({"from": "request.time", "action": "truncate_ip"}),
     "truncate_ip cannot read request.time"),
    (with_rule({"from": ["client.ip", "agent.original"], "action": "truncate_ip"}),
     "truncate_ip takes one field, not 2"),
    (with_rule({"from": "request.time", "action": "coarsen_time", "format": "unix"}),
     "fields.x.format: 'unix' is not one of iso, epoch"),
    (with_rule({"from": "response.status", "action": "keep", "unsafe": "yes"}),
     "fields.x.unsafe: must be true/false"),
    (with_rule("keep"), "fields.x: a rule is a mapping"),
    ({**base(), "inputt": {}}, "inputt: unknown key (did you mean 'input'?)"),
    ({**base(), "input": {"format": "combind"}}, "input.format: unknown format 'combind'"),
    ({**base(), "input": {"format": "apache:%h %Z"}}, "unsupported directive '%Z' at column 3"),
    ({**base(), "input": {"trusted_proxies": ["10.0.0.0/33"]}}, "'10.0.0.0/33' is not a network"),
    ({**base(), "input": {"max_line_bytes": "big"}}, "input.max_line_bytes: must be an integer"),
    ({**base(), "kafka": {"raw": {"retention": "7d"}}}, "kafka.raw.retention: 7d is longer than the raw limit of 3d"),
    ({"destinations": {}}, "destinations: at least one destination is required"),
    ({"destinations": {"ops": {"fields": {"s": {"from": "response.status", "action": "keep"}}}}},
     "destinations.ops.topic: required"),
    ({"destinations": {"ops": {"topic": "t", "fields": {}}}}, "destinations.ops.fields: at least one"),
    # A list of rules (it holds one) was told "at least one field rule is required".
    ({"destinations": {"ops": {"topic": "t", "fields": [{"from": "response.status", "action": "keep"}]}}},
     "destinations.ops.fields: must be a mapping of output field names to rules, not a list"),
    ({"destinations": {"ops": {"topic": "t", "retention": "90d", "fields": {
        "s": {"from": "response.status", "action": "keep"}}}}}, "retention: 90d is longer"),
    ({"destinations": {"a": {"topic": "t", "fields": {"s": {"from": "response.status", "action": "keep"}}},
                       "b": {"topic": "t", "fields": {"s": {"from": "response.status", "action": "keep"}}}}},
     "destinations.b.topic: 't' is already used by destinations.a"),
    ({"destinations": {"a": {"topic": "t", "key": "nope", "fields": {
        "s": {"from": "response.status", "action": "keep"}}}}}, "destinations.a.key: 'nope' is not"),
]  # fmt: skip


#: Values of the right type that the runtime cannot use: each passed check-config once,
#: then crashed ``logfog anonymize`` or made every line fail.
RANGE_CASES = [
    ({**base(), "enrich": {"cache_size": -1}}, "enrich.cache_size: must be at least 0, not -1"),
    ({**base(), "input": {"max_line_bytes": -5}}, "input.max_line_bytes: must be at least 1, not -5"),
    ({**base(), "input": {"max_line_bytes": 0}}, "input.max_line_bytes: must be at least 1, not 0"),
    # Above 512 KiB the shipper's cut line outgrows a Kafka record: "not shipped", no dead letter.
    ({**base(), "input": {"max_line_bytes": 16 << 20}},
     "input.max_line_bytes: must be at most 524288 (512 KiB: a line cut to it must fit in one "
     "Kafka record), not 16777216"),
    ({**base(), "input": {"format": "json", "json_fields": {"client": 5}}},
     "input.json_fields: client: must be a JSON key (dotted for nesting), not 5"),
    ({**base(), "input": {"format": "json", "json_fields": {"client": "a..b"}}},
     "input.json_fields: client: must be a JSON key"),
    ({**base(), "keys": {"epoch": "0s"}}, "keys.epoch: must be longer than 0s"),
    ({**base(), "kafka": {"raw": {"partitions": 0}}}, "kafka.raw.partitions: must be at least 1, not 0"),
    # zstd and snappy: kafka-python, which reads the checkpoints back, has neither
    ({**base(), "kafka": {"compression": "zstd"}},
     "kafka.compression: 'zstd' is not one of none, gzip, lz4"),
    ({**base(), "aggregates": {"max_cells": 0}}, "aggregates.max_cells: must be at least 1, not 0"),
    ({**base(), "aggregates": {"source_idle": "0s"}}, "aggregates.source_idle: must be longer than 0s"),
    (with_rule({"from": [], "action": "pseudonymize"}),
     "destinations.ops.fields.x.from: names no field"),
    ({"destinations": {"a": {"topic": "t", "key": "c", "fields": {
        "c": {"from": "request.cookie", "action": "drop"},
        "s": {"from": "response.status", "action": "keep"}}}}},
     "destinations.a.key: 'c' is dropped, so there is no value to key by"),
    ({"destinations": {"rejected": {"topic": "t", "fields": {"s": {"from": "response.status", "action": "keep"}}}}},
     "destinations.rejected: the name is reserved for logfog's own outputs"),
    ({"destinations": {"_aggregate": {"topic": "t", "fields": {"s": {"from": "response.status", "action": "keep"}}}}},
     "destinations._aggregate: the name is reserved"),
    (with_rule({"from": "geo.country", "action": "keep"}),
     "destinations.ops.fields.x.from: geo.country needs enrich.geo.city or enrich.geo.country"),
    ({**with_rule({"from": "geo.city", "action": "keep"}), "enrich": {"geo": {"country": "c.mmdb"}}},
     "destinations.ops.fields.x.from: geo.city needs enrich.geo.city"),
    ({**with_rule({"from": "geo.city", "action": "generalize", "to": "country"}),
      "enrich": {"geo": {"asn": "a.mmdb"}}},
     "fields.x.from: geo.country needs enrich.geo.city or enrich.geo.country"),
    ({**with_rule({"from": "geo.asn", "action": "keep"}), "enrich": {"geo": {"country": "c.mmdb"}}},
     "fields.x.from: geo.asn needs enrich.geo.asn or enrich.geo.city"),
    # Accepted once, then a GeoDatabaseError when a command opened the databases.
    ({**base(), "enrich": {"geo": {"asn": "builtin:dbip-city-lite"}}},
     "enrich.geo.asn: builtin:dbip-city-lite is a city database, not an ASN database"),
    ({**base(), "enrich": {"geo": {"city": "builtin:dbip-city"}}},
     "enrich.geo.city: unknown builtin database 'builtin:dbip-city' (known: builtin:dbip-city-lite)"),
    # Once accepted, then "environment variable  is not set" at start.
    ({**base(), "keys": {"source": "env:"}}, "keys.source: env: needs a variable name"),
    ({**base(), "keys": {"source": "file:"}}, "keys.source: file: needs a path"),
    ({**base(), "keys": {"source": "env:LOGFOG KEY"}}, "keys.source: env: must be followed by"),
    # Accepted once: partials keyed by input partition reached several mergers, each
    # waiting for all of them, so no window was ever published.
    ({**base(), "aggregates": {"partials": {"partitions": 4}}},
     "aggregates.partials.partitions: must be 1, not 4: one merge agent must receive"),
    # Accepted once, then a ValueError traceback from TopicSpec in `topics create`.
    ({"destinations": {"ops": {"topic": "logs ops", "fields": {"s": {"from": "response.status", "action": "keep"}}}}},
     "destinations.ops.topic: 'logs ops' is not a Kafka topic name"),
    ({"destinations": {"ops": {"topic": "", "fields": {"s": {"from": "response.status", "action": "keep"}}}}},
     "destinations.ops.topic: '' is not a Kafka topic name"),
    ({**base(), "kafka": {"raw": {"topic": ".."}}}, "kafka.raw.topic: '..' is not a Kafka topic name"),
    ({**base(), "kafka": {"dead_letter": {"topic": "x" * 250}}}, "kafka.dead_letter.topic: 'xxx"),
    ({**base(), "keys": {"topic": "logfog/keys"}}, "keys.topic: 'logfog/keys' is not a Kafka topic"),
    ({**base(), "aggregates": {"state": {"topic": "état"}}}, "aggregates.state.topic: 'état' is not"),
    ({"destinations": {"ops": {"topic": "logs.ops", "retention": "0s", "fields": {
        "s": {"from": "response.status", "action": "keep"}}}}},
     "destinations.ops.retention: must be longer than 0s"),
    ({**base(), "kafka": {"raw": {"retention": "0d"}}}, "kafka.raw.retention: must be longer than 0s"),
]  # fmt: skip


@pytest.mark.parametrize(("config", "message"), CASES + RANGE_CASES)
def test_each_mistake_has_its_message(config: dict[str, Any], message: str) -> None:
    errors = validate(config)
    assert any(message in e for e in errors), errors


def test_all_problems_are_reported_at_once() -> None:
    cfg = copy.deepcopy(base())
    cfg["inputt"] = {}
    cfg["destinations"]["ops"]["fields"]["a"] = {"from": "client.ip", "action": "keep"}
    cfg["destinations"]["ops"]["fields"]["b"] = {
        "from": "request.time",
        "action": "coarsen_time",
        "bucket": "1s",
    }
    assert len(validate(cfg)) == 3


def test_unsafe_is_allowed_and_warned() -> None:
    warnings: list[str] = []
    cfg = with_rule({"from": "client.ip", "action": "keep", "unsafe": True})
    assert validate(cfg, warnings) == []
    assert any("UNSAFE" in w and "client.ip" in w for w in warnings)


def test_shipped_configs_are_valid() -> None:
    for path in [
        ROOT / "config" / "logfog.yaml",
        *sorted((ROOT / "config" / "examples").glob("*.*")),
    ]:
        if path.suffix in (".yaml", ".yml", ".toml"):
            load_file(path)


def test_load_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("destinations: [unclosed\n")
    with pytest.raises(ConfigError, match="line 2, column 1: not valid YAML"):
        load_file(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_file(tmp_path / "missing.yaml")


def test_yaml_duplicate_keys_are_errors_as_in_toml(tmp_path: Path) -> None:
    """PyYAML keeps the last of two equal keys, tomllib refuses them: a second `kafka:`
    section silently dropped the first (here the raw retention), a second field of the
    same name silently replaced the first rule."""
    path = tmp_path / "dup.yaml"
    path.write_text(
        "destinations:\n  ops:\n    topic: logs.ops\n    fields:\n"
        "      network: {from: client.ip, action: truncate_ip}\n"
        "      status: {from: response.status, action: keep, action: drop}\n"
        "      network: {from: client.ip, action: drop}\n"
        "kafka:\n  raw: {topic: logs.raw, retention: 1d}\n"
        "kafka:\n  dead_letter: {topic: logs.dead}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_file(path)
    assert caught.value.problems == [
        "line 6, column 53: duplicate key 'action' (first on line 6)",
        "line 7, column 7: duplicate key 'network' (first on line 5)",
        "line 10, column 1: duplicate key 'kafka' (first on line 8)",
    ]
    toml = tmp_path / "dup.toml"
    toml.write_text('[destinations.ops]\ntopic = "logs.ops"\n[destinations.ops.fields]\n'
                    'network = { from = "client.ip", action = "truncate_ip" }\n'
                    'network = { from = "client.ip", action = "drop" }\n')  # fmt: skip
    with pytest.raises(ConfigError):
        load_file(toml)
    # A key given beside a merge ("<<") overrides the merged one: not a duplicate.
    path = tmp_path / "merge.yaml"
    path.write_text(
        "x-keep: &keep {from: response.status, action: keep}\n"
        "destinations:\n  ops:\n    topic: logs.ops\n    fields:\n"
        "      status: {<<: *keep, from: response.bytes}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:  # x-keep is an unknown key, nothing else
        load_file(path)
    assert caught.value.problems == ["x-keep: unknown key"]


def test_toml_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[destinations.ops]\ntopic = "t"\n[destinations.ops.fields.s]\n'
                    'from = "response.status"\naction = "keep"\n')  # fmt: skip
    config, _ = load_file(path)
    assert config["destinations"]["ops"]["fields"]["s"]["action"] == "keep"


def test_published_json_schema_is_current() -> None:
    published = orjson.loads((ROOT / "config" / "logfog.schema.json").read_bytes())
    assert published == orjson.loads(orjson.dumps(json_schema())), "run: make schema"


def test_default_config_validates_against_json_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    config = yaml.safe_load((ROOT / "config" / "logfog.yaml").read_text())
    jsonschema.validate(config, json_schema())


def test_range_mistakes_are_reported_together() -> None:
    cfg = with_rule({"from": [], "action": "pseudonymize"})
    cfg["enrich"] = {"cache_size": -1}
    cfg["keys"] = {"epoch": "0s"}
    cfg["input"] = {"max_line_bytes": -5}
    errors = validate(cfg)
    assert [e.split(":")[0] for e in errors] == [
        "input.max_line_bytes", "enrich.cache_size", "keys.epoch", "destinations.ops.fields.x.from"
    ], errors  # fmt: skip


def test_an_unknown_action_does_not_hide_the_rest_of_the_rule() -> None:
    errors = validate(with_rule({"from": "nope", "action": "kep"}))
    assert errors == [
        "destinations.ops.fields.x: unknown action 'kep' (did you mean 'keep'?)",
        "destinations.ops.fields.x.from: unknown field 'nope'",
    ]


def test_geo_needs_cover_every_geo_source() -> None:
    from streams.config import GEO_DATABASES
    from streams.enrich.geo import GEO_SOURCES

    assert set(GEO_DATABASES) == set(GEO_SOURCES)


def test_a_geo_rule_with_its_database_is_accepted() -> None:
    cfg = with_rule({"from": "geo.region", "action": "keep"})
    cfg["enrich"] = {"geo": {"city": "city.mmdb"}}
    assert validate(cfg) == []


OWN_TOPICS = {"logs.raw": "kafka.raw.topic", "logs.dead": "kafka.dead_letter.topic",
              "logfog.keys": "keys.topic", "logs.aggregates": "aggregates.output.topic",
              "logfog.agg.input": "aggregates.input.topic",
              "logfog.agg.partials": "aggregates.partials.topic",
              "logfog.agg.state": "aggregates.state.topic"}  # fmt: skip


@pytest.mark.parametrize("taken", sorted(OWN_TOPICS))
def test_a_destination_on_one_of_logfogs_own_topics_is_a_config_error(
    tmp_path: Path, taken: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """check-config compared destinations' topics only with each other: a destination
    on the raw topic (the worker would read its own events back as raw lines), the
    dead-letter, keys or aggregation topics passed ("OK"). topic_specs then held the
    topic twice, and `logfog topics create` (like the worker's start) died with
    ValueError("duplicate topic names in specs"): a traceback, exit 1. Whether or not
    aggregation is on (turning it on later must not change what a topic holds)."""
    import logging

    from streams.cli import main

    config = base()
    config["destinations"]["ops"]["topic"] = taken
    errors = validate(config)
    assert errors == [
        f"destinations.ops.topic: {taken!r} is logfog's own {OWN_TOPICS[taken]}; a destination "
        "needs a topic of its own"
    ]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        checked = main(["check-config", str(path)])
        created = main(["topics", "create", "-c", str(path), "--bootstrap", "127.0.0.1:9"])
    finally:
        root.handlers[:], root.level = handlers, level
    err = capsys.readouterr().err
    assert checked == 2 and created == 2 and "Traceback" not in err
    assert f"destinations.ops.topic: {taken!r} is logfog's own" in err


def test_two_of_logfogs_own_topics_may_not_be_one() -> None:
    config = {**base(), "kafka": {"dead_letter": {"topic": "logs.raw"}},
              "aggregates": {"state": {"topic": "logfog.keys"}}}  # fmt: skip
    assert validate(config) == [
        "kafka.dead_letter.topic: 'logs.raw' is already kafka.raw.topic",
        "aggregates.state.topic: 'logfog.keys' is already keys.topic",
    ]
