"""Config validation: each mistake gives its own specific message, all at once."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from streams.config import ConfigError, json_schema, load_file, normalize, validate

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
    # A "%" mid-format that starts no directive was taken as text: check-config passed
    # and every line was parse.no_match (only one after the last directive was refused).
    ({**base(), "input": {"format": 'apache:%h %5 %l %u %t "%r" %>s %b'}},
     "input.format: unsupported directive '%5' at column 3"),
    ({**base(), "input": {"format": ["combined", 'apache:%h %{X}^tx %t "%r" %>s %b']}},
     "input.format: unsupported directive '%{X}^tx' at column 3"),
    ({**base(), "input": {"trusted_proxies": ["10.0.0.0/33"]}}, "'10.0.0.0/33' is not a network"),
    ({**base(), "input": {"max_line_bytes": "big"}}, "input.max_line_bytes: must be an integer"),
    ({**base(), "kafka": {"raw": {"retention": "7d"}}}, "kafka.raw.retention: 7d is longer than the raw limit of 3d"),
    # The 5-minute aggregates are operations data: at most 30 d (rule 14; an audit, D10).
    ({**base(), "aggregates": {"ops_output": {"retention": "760d"}}},
     "aggregates.ops_output.retention: 760d is longer than the operations limit of 30d"),
    # Rule 14: analytics aggregates at most 25 months, and 25 months are at most 762 days
    # (the limit was 25 x 31 = 775 d: 770 d passed; an audit, M2).
    ({**base(), "aggregates": {"output": {"retention": "763d"}}},
     "aggregates.output.retention: 763d is longer than the aggregates limit of 762d"),
    ({**base(), "aggregates": {"output": {"retention": "770d"}}},
     "aggregates.output.retention: 770d is longer than the aggregates limit of 762d"),
    ({"destinations": {}}, "destinations: at least one destination is required"),
    ({"destinations": {"ops": {"fields": {"s": {"from": "response.status", "action": "keep"}}}}},
     "destinations.ops.topic: required"),
    ({"destinations": {"ops": {"topic": "t", "fields": {}}}}, "destinations.ops.fields: at least one"),
    # A list of rules (it holds one) was told "at least one field rule is required".
    ({"destinations": {"ops": {"topic": "t", "fields": [{"from": "response.status", "action": "keep"}]}}},
     "destinations.ops.fields: must be a mapping of output field names to rules, not a list"),
    ({"destinations": {"ops": {"topic": "t", "retention": "90d", "fields": {
        "s": {"from": "response.status", "action": "keep"}}}}},
     "destinations.ops.retention: 90d is longer than the operations limit of 30d"),
    ({"destinations": {"ops": {"topic": "t", "kind": "analytics", "retention": "31d", "fields": {
        "s": {"from": "response.status", "action": "keep"}}}}},
     "destinations.ops.retention: 31d is longer than the analytics limit of 30d"),
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
    # Accepted once, then an OverflowError traceback from functools.lru_cache (a fuzz).
    ({**base(), "enrich": {"cache_size": 2**70}},
     "enrich.cache_size: must be at most 2147483647, not 1180591620717411303424"),
    ({**base(), "kafka": {"raw": {"partitions": 2**31}}},
     "kafka.raw.partitions: must be at most 2147483647, not 2147483648"),
    ({**base(), "kafka": {"replication": 40000}}, "kafka.replication: must be at most 32767"),
    ({**base(), "kafka": {"dead_letter": {"replication": 2**15}}},
     "kafka.dead_letter.replication: must be at most 32767, not 32768"),
    ({**base(), "input": {"max_line_bytes": -5}}, "input.max_line_bytes: must be at least 1, not -5"),
    ({**base(), "input": {"max_line_bytes": 0}}, "input.max_line_bytes: must be at least 1, not 0"),
    # Above 512 KiB the shipper's cut line outgrows a Kafka record: "not shipped", no dead letter.
    ({**base(), "input": {"max_line_bytes": 16 << 20}},
     "input.max_line_bytes: must be at most 524288 (512 KiB: a line cut to it must fit in one "
     "Kafka record), not 16777216"),
    ({**base(), "input": {"format": "json", "json_fields": {"client": 5}}},
     "input.json_fields: client: must be a JSON key (dotted for nesting) or a list of keys "
     "(one per level, dots kept), not 5"),
    ({**base(), "input": {"format": "json", "json_fields": {"client": "a..b"}}},
     "input.json_fields: client: must be a JSON key"),
    ({**base(), "input": {"format": "json", "json_fields": {"client": []}}},
     "input.json_fields: client: must be a JSON key (dotted for nesting) or a list of keys "
     "(one per level, dots kept), not []"),
    ({**base(), "input": {"format": "json", "json_fields": {"client": ["a", ""]}}},
     "input.json_fields: client: must be a JSON key"),
    ({**base(), "input": {"format": "json", "json_fields": {"client": ["a", 5]}}},
     "input.json_fields: client: must be a JSON key"),
    ({**base(), "keys": {"epoch": "0s"}}, "keys.epoch: must be longer than 0s"),
    ({**base(), "kafka": {"raw": {"partitions": 0}}}, "kafka.raw.partitions: must be at least 1, not 0"),
    # zstd and snappy: kafka-python, which reads the checkpoints back, has neither
    ({**base(), "kafka": {"compression": "zstd"}},
     "kafka.compression: 'zstd' is not one of none, gzip, lz4"),
    ({**base(), "version": 2}, "version: 2 is not 1"),  # one choice: no "one of 1"
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
    ({**base(), "aggregates": {"windows": ["product/1w"]}},
     "aggregates.windows: unknown output window 'product/1w' (one of ops/5m, product/1h, "
     "product/1d)"),
    ({**base(), "aggregates": {"windows": []}},
     "aggregates.windows: name at least one (or set aggregates.enabled: false)"),
    ({**base(), "aggregates": {"windows": ["ops/5m", "ops/5m"]}},
     "aggregates.windows: names an output window twice"),
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


@pytest.mark.parametrize(("problems", "count"), [(["a"], "1 problem"), (["a", "b"], "2 problems")])
def test_the_count_of_problems_is_singular_or_plural(problems: list[str], count: str) -> None:
    """It said "1 problem(s)" (an audit)."""
    assert str(ConfigError("c.yaml", problems)).startswith(f"c.yaml: {count}\n  a")


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


def test_json_keys_with_a_dot_validate_in_the_config_and_its_json_schema() -> None:
    """A list of keys maps a key holding a dot (OpenTelemetry's "client.address"):
    check-config and the published JSON Schema take it (audit formats, FMT-9)."""
    jsonschema = pytest.importorskip("jsonschema")
    config = yaml.safe_load((ROOT / "config" / "logfog.yaml").read_text())
    config["input"] = {
        "format": "json",
        "json_fields": {
            "client": ["source.ip"],
            "path": ["attributes", "url.path"],
            "time": "@timestamp",
        },
    }
    assert validate(config) == []
    jsonschema.validate(config, json_schema())
    for wrong in ({"client": []}, {"client": [5]}, {"client": 5}, {"nope": "x"}):
        config["input"]["json_fields"] = wrong
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(config, json_schema())


def _schema_errors(data: Any) -> list[str]:
    """What the published schema (the one editors get) says of ``data``."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = orjson.loads((ROOT / "config" / "logfog.schema.json").read_bytes())
    return [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(data)]


def _default_with(path: list[str], value: Any) -> dict[str, Any]:
    """config/logfog.yaml with the key at ``path`` set to ``value``."""
    data = yaml.safe_load((ROOT / "config" / "logfog.yaml").read_text())
    cur = data
    for part in path[:-1]:
        cur = cur.setdefault(part, {})
    cur[path[-1]] = value
    return data


_PRODUCT_VISITOR = ["destinations", "product", "fields", "visitor"]
_OPS = ["destinations", "ops"]
_SASL = {"protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "username": "u"}


def test_schema_accepts_a_one_element_from_list_that_check_config_accepts() -> None:
    """An audit (docs D1): check-config takes ``from`` as a field or a list of them for
    every action (more than one only for pseudonymize); the schema took a bare string
    only, so an editor flagged ``from: [request.method]``."""
    data = _default_with([*_OPS, "fields", "method"],
                         {"from": ["request.method"], "action": "keep"})  # fmt: skip
    assert validate(data) == []
    assert _schema_errors(data) == []
    data = _default_with([*_OPS, "fields", "method"],
                         {"from": ["request.method", "request.target"], "action": "keep"})  # fmt: skip
    assert validate(data) and _schema_errors(data)


#: Values check-config refuses for reasons a JSON Schema can state (types of list items,
#: bounds, a constant, reserved names, the reference syntax, name patterns, the sources
#: an action reads). Cross-key rules are check-config's alone.
STATIC_REFUSALS: dict[str, dict[str, Any]] = {
    "aggregates.k below 2": _default_with(["aggregates", "k"], 1),
    "kafka.replication 0": _default_with(["kafka", "replication"], 0),
    "a topic's replication 0": _default_with([*_OPS, "replication"], 0),
    "aggregates.partials.partitions must be 1": _default_with(["aggregates", "partials"],
                                                              {"partitions": 2}),
    "trusted_proxies items are strings (CIDR)": _default_with(["input", "trusted_proxies"], [1]),
    "input.max_line_bytes above 512 KiB": _default_with(["input", "max_line_bytes"], 1 << 20),
    "input.format empty list": _default_with(["input", "format"], []),
    "input.format list of non-strings": _default_with(["input", "format"], [1]),
    "input.format unknown name": _default_with(["input", "format"], "combine"),
    "input.json_fields unknown role": _default_with(["input", "json_fields"], {"clint": "ip"}),
    "input.json_fields empty key part": _default_with(["input", "json_fields"], {"client": "a."}),
    "allow_query items are strings": _default_with([*_OPS, "fields", "route"],
        {"from": "request.target", "action": "url_policy", "allow_query": [1]}),
    "allow_query '*' alone": _default_with([*_OPS, "fields", "route"],
        {"from": "request.target", "action": "url_policy", "allow_query": ["*"]}),
    "site_domains items are strings": _default_with([*_OPS, "fields", "ref"],
        {"from": "request.referrer", "action": "referrer_policy", "site_domains": [1]}),
    "bins items are numbers": _default_with([*_OPS, "fields", "duration_ms"],
        {"from": "response.duration_ms", "action": "generalize", "to": "bins", "bins": ["a"]}),
    "ipv4_prefix above 32": _default_with([*_OPS, "fields", "network"],
        {"from": "client.ip", "action": "truncate_ip", "ipv4_prefix": 40}),
    "ipv6_prefix below 0": _default_with([*_OPS, "fields", "network"],
        {"from": "client.ip", "action": "truncate_ip", "ipv6_prefix": -1}),
    "pseudonym length odd/short": _default_with(_PRODUCT_VISITOR,
        {"from": ["client.ip", "agent.original"], "action": "pseudonymize", "length": 3}),
    "pseudonym length odd": _default_with(_PRODUCT_VISITOR,
        {"from": ["client.ip", "agent.original"], "action": "pseudonymize", "length": 17}),
    "pseudonymize of no field": _default_with(_PRODUCT_VISITOR,
        {"from": [], "action": "pseudonymize"}),
    "scope client outside the internal stream": _default_with(_PRODUCT_VISITOR,
        {"from": ["client.ip", "agent.original"], "action": "pseudonymize", "scope": "client"}),
    "bucket that is no duration": _default_with([*_OPS, "fields", "time"],
        {"from": "request.time", "action": "coarsen_time", "bucket": "5 minutes"}),
    "reserved destination name 'rejected'": _default_with(["destinations", "rejected"],
        {"topic": "x.rejected", "fields": {"m": {"from": "request.method", "action": "keep"}}}),
    "reserved destination name 'aggregates'": _default_with(["destinations", "aggregates"],
        {"topic": "x.agg", "fields": {"m": {"from": "request.method", "action": "keep"}}}),
    "reserved destination name '_x'": _default_with(["destinations", "_x"],
        {"topic": "x.under", "fields": {"m": {"from": "request.method", "action": "keep"}}}),
    "destination name that is a path": _default_with(["destinations", "../../evil"],
        {"topic": "x.evil", "fields": {"m": {"from": "request.method", "action": "keep"}}}),
    "destination name with '..'": _default_with(["destinations", "a..b"],
        {"topic": "x.dots", "fields": {"m": {"from": "request.method", "action": "keep"}}}),
    "empty output field name": _default_with([*_OPS, "fields", ""],
        {"from": "request.method", "action": "keep"}),
    "no destination at all": _default_with(["destinations"], {}),
    "destination without fields": _default_with([*_OPS, "fields"], {}),
    "literal SASL password": _default_with(["kafka", "security"],
                                           {**_SASL, "password": "hunter2"}),
    "SASL password env: without a name": _default_with(["kafka", "security"],
                                                        {**_SASL, "password": "env:"}),
    "SASL username file: without a path": _default_with(["kafka", "security"],
        {**_SASL, "username": "file:", "password": "env:P"}),
    "unknown SASL mechanism": _default_with(["kafka", "security"],
        {**_SASL, "sasl_mechanism": "GSSAPI", "password": "env:P"}),
    "keys.source that is the key itself": _default_with(["keys", "source"], "deadbeef" * 8),
    "keys.source env: of no variable name": _default_with(["keys", "source"], "env:1X"),
    "topic name with a space": _default_with([*_OPS, "topic"], "bad topic!"),
    "topic name '..'": _default_with(["kafka", "raw", "topic"], ".."),
    "keys topic of 250 characters": _default_with(["keys", "topic"], "k" * 250),
    "retention that is no duration": _default_with([*_OPS, "retention"], "5x"),
    "keys.epoch that is no duration": _default_with(["keys", "epoch"], "1 day"),
    "k_by_output of an unknown output": _default_with(["aggregates", "k_by_output"], {"x": 20}),
    "k_by_output below 2": _default_with(["aggregates", "k_by_output"], {"ops": 1}),
    "windows unknown": _default_with(["aggregates", "windows"], ["ops/1h"]),
    "windows empty": _default_with(["aggregates", "windows"], []),
    "generalize of a field it cannot read": _default_with([*_OPS, "fields", "browser"],
        {"from": "agent.browser", "action": "generalize", "to": "bins", "bins": [1]}),
    "generalize bins (the default to) of a string": _default_with([*_OPS, "fields", "m"],
        {"from": "request.method", "action": "generalize", "bins": [1]}),
    "generalize status_class of bytes": _default_with([*_OPS, "fields", "b"],
        {"from": "response.bytes", "action": "generalize", "to": "status_class"}),
    "generalize to a finer geo level": _default_with([*_OPS, "fields", "geo"],
        {"from": "geo.country", "action": "generalize", "to": "region"}),
    # unsafe loosens privacy floors, not what `to` can apply to (a TypeError per line).
    "generalize bins of a string, unsafe": _default_with([*_OPS, "fields", "browser"],
        {"from": "agent.browser", "action": "generalize", "bins": [1], "unsafe": True}),
    "generalize to a geo level of the IP, unsafe": _default_with([*_OPS, "fields", "c"],
        {"from": "client.ip", "action": "generalize", "to": "country", "unsafe": True}),
    "generalize status_class of text, unsafe": _default_with([*_OPS, "fields", "s"],
        {"from": "request.method", "action": "generalize", "to": "status_class",
         "unsafe": True}),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(STATIC_REFUSALS))
def test_schema_refuses_what_check_config_refuses_for_static_reasons(case: str) -> None:
    """An audit (docs D2): the schema for editors let through values check-config then
    refused (list items of any type, bounds declared only through ``check=``, reserved
    names, the syntax of topics, durations and references, what generalize reads)."""
    data = STATIC_REFUSALS[case]
    assert validate(data), f"{case}: check-config should refuse it"
    assert _schema_errors(data), f"{case}: the editor schema accepts what check-config refuses"


#: Valid configs near the edges of the constraints above: the schema must not refuse them.
STATIC_ACCEPTS: dict[str, dict[str, Any]] = {
    "replication null": _default_with([*_OPS, "replication"], None),
    "partials.partitions 1": _default_with(["aggregates", "partials"], {"partitions": 1}),
    "a one-element from for every single-field action": _default_with([*_OPS, "fields"], {
        "net": {"from": ["client.ip"], "action": "truncate_ip", "ipv4_prefix": 0,
                "ipv6_prefix": 0},
        "time": {"from": ["request.time"], "action": "coarsen_time", "bucket": " 2 h "},
        "route": {"from": ["request.target"], "action": "url_policy",
                  "allow_query": ["utm_*", "a b*", "page"]},
        "ref": {"from": ["request.referrer"], "action": "referrer_policy",
                "site_domains": ["www.example.org"]},
        "status": {"from": ["response.status"], "action": "generalize", "to": "status_class"},
        "country": {"from": ["geo.city"], "action": "generalize", "to": "country"},
        "bytes": {"from": "response.bytes", "action": "generalize", "bins": [1, 2.5]},
        "gone": {"from": ["client.ip"], "action": "drop"},
    }),
    "generalize of any field with unsafe: true": _default_with([*_OPS, "fields", "x"],
        {"from": "geo.asn", "action": "generalize", "bins": [1], "unsafe": True}),
    "prefixes of every bit with unsafe: true": _default_with([*_OPS, "fields", "net"],
        {"from": "client.ip", "action": "truncate_ip", "ipv4_prefix": 32, "ipv6_prefix": 128,
         "unsafe": True}),
    "scope global with unsafe: true": _default_with(["destinations", "product", "fields", "g"],
        {"from": ["client.ip", "agent.original"], "action": "pseudonymize", "scope": "global",
         "length": 64, "unsafe": True}),
    "SASL references": _default_with(["kafka", "security"],
        {**_SASL, "username": "env:USER", "password": "file:/run/secrets/kafka"}),
    "key sources": _default_with(["keys"], {"source": "file:/run/key", "unsafe": True}),
    "an env: key source": _default_with(["keys"], {"source": "env:LOGFOG_KEY", "unsafe": True}),
    "formats": _default_with(["input"], {"format": ["vhost_combined", "apache:%h %t \"%r\" %>s",
                                                    "nginx:$remote_addr [$time_local] \"$request\" $status"]}),
    "json fields": _default_with(["input"], {"format": "json",
                                             "json_fields": {"client": "http.x_client"}}),
    "k_by_output": _default_with(["aggregates"], {"k_by_output": {"product": 20, "ops": 10}}),
    "one window": _default_with(["aggregates", "windows"], ["product/1d"]),
    "destination names and topics": _default_with(["destinations", "ops_2-x"],
        {"topic": "a_b-C.9", "retention": "30d",
         "fields": {"m": {"from": "request.method", "action": "keep"}}}),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(STATIC_ACCEPTS))
def test_schema_accepts_what_check_config_accepts(case: str) -> None:
    data = STATIC_ACCEPTS[case]
    assert validate(data) == [], f"{case}: check-config should accept it"
    assert _schema_errors(data) == [], case


def test_every_shipped_config_validates_against_the_published_schema() -> None:
    paths = [ROOT / "config" / "logfog.yaml", ROOT / "deploy" / "compose" / "logfog.production.yaml",
             *sorted((ROOT / "config" / "examples").glob("*.*"))]  # fmt: skip
    for path in paths:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
        assert _schema_errors(data) == [], path


@pytest.mark.parametrize(
    "name", ["../../evil", "a/b", "..", "a..b", ".hidden", "-x", "é", "a b", "x" * 201]
)
def test_a_destination_name_must_be_a_safe_file_name(name: str) -> None:
    """``logfog anonymize -o DIR`` writes DIR/NAME.ndjson: a destination ``../../evil``
    passed check-config and wrote two directories above DIR, ``a/b`` failed only at
    the end of a run (an audit). Names are letters, digits, ``_ . -``, no ``..``."""
    cfg = base()
    cfg["destinations"][name] = cfg["destinations"].pop("ops")
    assert validate(cfg) == [
        f"destinations.{name}: {name!r} is not a safe name (it names the file NAME.ndjson of "
        "logfog anonymize -o): up to 200 letters, digits, '_', '.' and '-', starting with a "
        "letter or digit, without '..'"
    ]


def test_an_output_field_needs_a_name() -> None:
    """A field named ``""`` was accepted and published as ``{"": ...}`` (an audit)."""
    cfg = base()
    cfg["destinations"]["ops"]["fields"][""] = {"from": "response.status", "action": "keep"}
    assert validate(cfg) == ["destinations.ops.fields: an output field name must not be empty"]


def test_nginx_variables_matched_but_not_stored_are_warned_of() -> None:
    """nginx has hundreds of variables: one logfog does not read is matched and thrown
    away, and so was a misspelled one: ``$staus`` passed check-config and every event
    had ``status: null`` (an audit). They are allowed, and listed in a warning."""
    cfg = base()
    cfg["input"] = {"format": ["combined", 'nginx:$remote_addr [$time_local] "$request" $staus '
                               "$body_bytes_sent $request_length $staus"]}  # fmt: skip
    warnings: list[str] = []
    assert validate(cfg, warnings) == []
    assert warnings == [
        "input.format[1]: nginx variables matched but not stored (logfog does not read them; "
        "a misspelled one leaves its field null): $staus (did you mean $status?), "
        "$request_length"
    ]
    cfg["input"] = {"format": ["nginx_main", 'nginx:$remote_addr [$time_local] "$request"']}
    assert validate(cfg, warnings := []) == [] and warnings == []


def test_every_bad_trusted_proxy_is_reported() -> None:
    """``trusted_proxies: [10.0.0.0/33, foo]`` reported the first only (an audit)."""
    cfg = base()
    cfg["input"] = {"trusted_proxies": ["10.0.0.0/33", "10.0.0.0/8", "foo"]}
    assert validate(cfg) == [
        "input.trusted_proxies: '10.0.0.0/33' is not a network (CIDR); 'foo' is not a network "
        "(CIDR)"
    ]


@pytest.mark.parametrize("everyone", ["0.0.0.0/0", "::/0"])
def test_trusting_every_proxy_is_warned_of(everyone: str) -> None:
    """A proxy network of every address believes every client's X-Forwarded-For: any
    client then chooses the address logged for it (an audit)."""
    cfg = base()
    cfg["input"] = {"trusted_proxies": ["10.0.0.0/8", everyone]}
    warnings: list[str] = []
    assert validate(cfg, warnings) == []
    assert warnings == [
        f"input.trusted_proxies: {everyone!r} is every address: any client can choose the "
        "address logged for it (its X-Forwarded-For is believed); name only your proxies' "
        "networks"
    ]


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
              "logs.aggregates.ops": "aggregates.ops_output.topic",
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


def test_the_window_names_are_the_aggregate_outputs() -> None:
    """``aggregates.windows`` lists the outputs by name in its default and its schema."""
    from streams.aggregate.spec import OUTPUT_WINDOWS

    schema = json_schema()["properties"]["aggregates"]["properties"]["windows"]
    assert tuple(schema["default"]) == tuple(schema["items"]["enum"]) == OUTPUT_WINDOWS


@pytest.mark.parametrize("place", ["key", "kind"])
@pytest.mark.parametrize("wrong", [["visitor"], [], {"a": 1}, {}])
def test_a_destination_key_or_kind_of_the_wrong_type_is_a_config_error(
    place: str, wrong: Any
) -> None:
    """A list or mapping as destinations.X.key or .kind raised TypeError (unhashable
    type) from check-config; it is an error naming the place, and the rules are still
    checked."""
    config = yaml.safe_load((ROOT / "config" / "logfog.yaml").read_text())
    config["destinations"]["product"][place] = wrong
    config["destinations"]["product"]["fields"]["ip"] = {"from": "client.ip", "action": "keep"}
    errors = validate(config)
    assert f"destinations.product.{place}: must be " in errors[0], errors
    assert any("fields.ip: keep would publish client.ip" in e for e in errors), errors


def _string_places(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The places of every string in ``node`` (keys of mappings, indexes of lists)."""
    if isinstance(node, str):
        return [path]
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _string_places(v, (*path, k))]
    if isinstance(node, list):
        return [p for k, v in enumerate(node) for p in _string_places(v, (*path, k))]
    return []


def test_no_string_in_the_default_config_crashes_check_config_when_mistyped() -> None:
    """Every string in config/logfog.yaml replaced by a list, a mapping or a number:
    check-config reports a problem, never a traceback (a list as a destination's key
    or kind raised TypeError)."""
    default = yaml.safe_load((ROOT / "config" / "logfog.yaml").read_text())
    places = _string_places(default)
    assert len(places) > 50
    for place in places:
        for wrong in (["a"], {"a": 1}, 7):
            config = copy.deepcopy(default)
            node = config
            for part in place[:-1]:
                node = node[part]
            node[place[-1]] = wrong
            try:
                errors = validate(config)
            except Exception as error:
                pytest.fail(f"{'.'.join(map(str, place))} = {wrong!r}: {error!r}")
            assert errors, place


def _int_places(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if type(node) is int:
        return [path]
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _int_places(v, (*path, k))]
    return []


def test_no_integer_of_the_normalized_default_config_takes_any_size() -> None:
    """Every integer of the normalized default config (defaults filled in: partitions,
    replication, sizes, k...) set to 2**70 is a problem check-config reports; a cache
    size that large reached functools.lru_cache as an OverflowError traceback."""
    from streams.config import load_file

    normalized, _ = load_file(ROOT / "config" / "logfog.yaml")
    default = yaml.safe_load((ROOT / "config" / "logfog.yaml").read_text())
    places = _int_places(normalized)
    assert len(places) > 15
    for place in places:
        config = copy.deepcopy(default)
        node = config
        for part in place[:-1]:
            node = node.setdefault(part, {})
        node[place[-1]] = 2**70
        errors = validate(config)
        assert errors, place


def test_the_largest_cache_size_accepted_compiles() -> None:
    from streams.config import INT32_MAX
    from streams.pipeline import Pipeline

    config = copy.deepcopy(base())
    config["enrich"] = {"cache_size": INT32_MAX}
    errors: list[str] = []
    normalized = normalize(config, errors, [])
    assert errors == []
    assert Pipeline.from_normalized(normalized).test(["-"]).rejections


def test_each_destination_kind_has_its_retention_limit_from_one_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``RETENTION_LIMITS`` is the one table of rule 14: a destination's limit is that of
    its kind (the analytics entry was never read: destinations had a 30 d of their own,
    so tightening the table changed nothing; an audit). 762 d, 25 months at most, is
    the longest analytics aggregates retention."""
    from streams import config as config_module

    def dest(kind: str, retention: str) -> dict[str, Any]:
        return {"destinations": {"p": {"topic": "t", "kind": kind, "retention": retention,
                                       "fields": {"s": {"from": "response.status",
                                                        "action": "keep"}}}}}  # fmt: skip

    assert validate(dest("analytics", "30d")) == []
    assert (
        validate({**dest("operations", "30d"), "aggregates": {"output": {"retention": "762d"}}})
        == []
    )
    monkeypatch.setitem(config_module.RETENTION_LIMITS, "analytics", 10 * 86400)
    assert validate(dest("analytics", "14d")) == [
        "destinations.p.retention: 14d is longer than the analytics limit of 10d"
    ]
    assert validate(dest("operations", "14d")) == []


def test_a_normalized_configs_defaults_are_its_own() -> None:
    """normalize returned the declared default lists themselves: changing one config's
    aggregates.windows or trusted_proxies changed every later config's (a review)."""
    first = normalize({"destinations": base()["destinations"]}, [], [])
    first["aggregates"]["windows"].append("changed")
    first["input"]["trusted_proxies"].append("10.0.0.0/8")
    second = normalize({"destinations": base()["destinations"]}, [], [])
    assert "changed" not in second["aggregates"]["windows"]
    assert second["input"]["trusted_proxies"] == []


def _rule_at(field: str, rule: dict[str, Any]) -> dict[str, Any]:
    cfg = base()
    cfg["destinations"]["ops"]["fields"][field] = rule
    return cfg


#: Settings the config accepts that others leave without effect: each was silently
#: ignored, so whoever read the config believed it in force (an audit). Each is now a
#: warning naming its place and why it does nothing.
IGNORED = [
    pytest.param(
        {**base(), "input": {"format": ["combined", "common"],
                             "json_fields": {"client": "remote_addr"}}},
        "input.json_fields: has no effect: input.format has no json (the keys it maps are "
        "read from JSON lines only); remove it, or add json to input.format",
        id="json_fields-without-json",
    ),
    pytest.param(
        _rule_at("status", {"from": "response.status", "action": "generalize",
                            "to": "status_class", "bins": [100, 1000]}),
        "destinations.ops.fields.status.bins: has no effect: to: status_class does not bin "
        "(bins are the edges of to: bins only); remove bins",
        id="bins-with-status_class",
    ),
    pytest.param(
        {**_rule_at("country", {"from": "geo.city", "action": "generalize", "to": "country",
                                "bins": [1]}), "enrich": {"geo": {"city": "city.mmdb"}}},
        "destinations.ops.fields.country.bins: has no effect: to: country does not bin "
        "(bins are the edges of to: bins only); remove bins",
        id="bins-with-a-geo-level",
    ),
    pytest.param(
        _rule_at("route", {"from": "request.target", "action": "url_policy",
                           "keep_query": False, "allow_query": ["page"]}),
        "destinations.ops.fields.route.allow_query: has no effect: keep_query: false drops "
        "the whole query; remove allow_query, or set keep_query: true to keep the keys it "
        "lists",
        id="allow_query-without-keep_query",
    ),
    pytest.param(
        _rule_at("ref", {"from": "request.referrer", "action": "referrer_policy",
                         "same_site": "domain", "allow_query": ["page"]}),
        "destinations.ops.fields.ref.allow_query: has no effect: same_site: domain publishes "
        "a same-site referrer as its domain, with no path or query (allow_query filters the "
        "query of same-site paths only); remove allow_query, or set same_site: path",
        id="referrer-allow_query-with-same_site-domain",
    ),
    pytest.param(
        {**base(), "aggregates": {"enabled": False, "unsafe": True, "k": 20,
                                  "windows": ["product/1d"]}},
        "aggregates.k, aggregates.windows: have no effect: aggregates.enabled is false, so "
        "nothing is aggregated; set enabled: true, or remove them",
        id="aggregates-off",
    ),
    pytest.param(
        {**base(), "aggregates": {"k_by_output": {"ops": 20}}},
        "aggregates.k_by_output: has no effect: aggregates.enabled is false, so nothing is "
        "aggregated; set enabled: true, or remove it",
        id="aggregates-off-by-default",
    ),
    pytest.param(
        {**base(), "aggregates": {"enabled": True, "windows": ["product/1d"],
                                  "k_by_output": {"ops": 20}}},
        "aggregates.k_by_output.ops: has no effect: aggregates.windows publishes no ops "
        "window; remove it, or name one in aggregates.windows (ops/5m)",
        id="k_by_output-of-an-unpublished-output",
    ),
    pytest.param(
        {**base(), "aggregates": {"enabled": True, "windows": ["product/1h", "product/1d"],
                                  "k": 12, "k_by_output": {"product": 20}}},
        "aggregates.k: has no effect: aggregates.k_by_output sets the k of every published "
        "output (product); remove aggregates.k",
        id="k-overridden-everywhere",
    ),
    pytest.param(
        {**base(), "aggregates": {"enabled": True, "windows": ["product/1d"],
                                  "ops_output": {"topic": "agg.ops"}}},
        "aggregates.ops_output: has no effect: aggregates.windows publishes no window "
        "shorter than 1h, so nothing is written to this topic; remove it",
        id="ops_output-without-an-ops-window",
    ),
    pytest.param(
        {**base(), "aggregates": {"enabled": True, "windows": ["ops/5m"],
                                  "output": {"retention": "400d"}}},
        "aggregates.output: has no effect: aggregates.windows publishes no window of 1h or "
        "longer, so nothing is written to this topic; remove it",
        id="output-without-an-analytics-window",
    ),
    pytest.param(
        {**base(), "keys": {"source": "ephemeral", "topic": "my.keys"}},
        "keys.topic: has no effect: keys.source is ephemeral, and only auto or shared keys "
        "go through this topic; remove it",
        id="keys-topic-of-ephemeral-keys",
    ),
    pytest.param(
        {**base(), "keys": {"source": "file:/etc/logfog/key", "grace": "10m"}},
        "keys.grace: has no effect: keys derived from an env: or file: secret are never "
        "destroyed, so no grace ends them; remove it",
        id="keys-grace-of-derived-keys",
    ),
    pytest.param(
        {**base(), "kafka": {"security": {"protocol": "SASL_PLAINTEXT",
                                          "sasl_mechanism": "SCRAM-SHA-512", "username": "u",
                                          "password": "env:P", "check_hostname": False}}},
        "kafka.security.check_hostname: false has no effect: protocol SASL_PLAINTEXT uses "
        "no TLS, so there is no certificate to check; remove it",
        id="check_hostname-without-tls",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("cfg", "warning"), IGNORED)
def test_a_setting_without_effect_is_a_warning(cfg: dict[str, Any], warning: str) -> None:
    warnings: list[str] = []
    assert validate(cfg, warnings) == []
    assert warnings == [warning]


#: The same settings where they do have an effect, or where only a default is
#: ignored (nobody wrote it): no warning.
EFFECTIVE = [
    pytest.param({**base(), "input": {"format": ["combined", "json"],
                                      "json_fields": {"client": "remote_addr"}}}, id="json"),
    pytest.param({**base(), "input": {"format": "json", "json_fields": {"client": "ip"}}},
                 id="json-alone"),
    pytest.param(_rule_at("b", {"from": "response.bytes", "action": "generalize",
                                "bins": [100]}), id="bins-by-default"),
    pytest.param(_rule_at("s", {"from": "response.status", "action": "generalize",
                                "to": "status_class", "bins": []}), id="no-bins"),
    pytest.param(_rule_at("r", {"from": "request.target", "action": "url_policy",
                                "keep_query": False}), id="default-allow_query"),
    pytest.param(_rule_at("r", {"from": "request.target", "action": "url_policy",
                                "keep_query": False, "allow_query": []}), id="empty-allow_query"),
    pytest.param(_rule_at("r", {"from": "request.referrer", "action": "referrer_policy",
                                "allow_query": ["page"]}), id="same_site-path"),
    pytest.param({**base(), "aggregates": {"enabled": False}}, id="aggregates-just-off"),
    pytest.param({**base(), "aggregates": {"enabled": True, "k": 12,
                                           "k_by_output": {"product": 20}}},
                 id="k-still-the-ops-k"),
    pytest.param({**base(), "keys": {"source": "ephemeral", "grace": "10m"}},
                 id="grace-of-ephemeral-keys"),
    pytest.param({**base(), "keys": {"source": "shared", "topic": "my.keys"}}, id="shared"),
    pytest.param({**base(), "kafka": {"security": {"check_hostname": True}}},
                 id="check_hostname-true"),
]  # fmt: skip


@pytest.mark.parametrize("cfg", EFFECTIVE)
def test_a_setting_with_an_effect_is_no_warning(cfg: dict[str, Any]) -> None:
    warnings: list[str] = []
    assert validate(cfg, warnings) == [] and warnings == []


def test_a_setting_without_effect_is_warned_of_in_the_internal_aggregation_stream_too() -> None:
    """The generated aggregation input is checked by the same rule code, and none of
    its rules gives an option it does not use (its warnings would be nobody's to fix)."""
    cfg = yaml.safe_load((ROOT / "config" / "logfog.yaml").read_text())
    warnings: list[str] = []
    assert validate(cfg, warnings) == [] and warnings == []
