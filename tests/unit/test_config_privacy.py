"""Config checks that protect privacy or the visitor counts: keys, time, geo, Kafka keys.

Each unsafe setting is refused with its own message and place, or accepted with a
logged warning when the rule (or ``keys``) says ``unsafe: true``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from streams.cli import main
from streams.config import normalize, validate, worker_key_problems
from streams.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[2]
VISITOR = {"from": ["client.ip", "agent.original"], "action": "pseudonymize"}


def config(**keys: Any) -> dict[str, Any]:
    return {
        "keys": keys,
        # Declared, not opened: validation checks that a geo.* rule has a database.
        "enrich": {"geo": {"city": "/nonexistent/City.mmdb", "asn": "/nonexistent/ASN.mmdb"}},
        "destinations": {
            "product": {
                "kind": "analytics",
                "topic": "logs.product",
                "fields": {
                    "visitor": dict(VISITOR),
                    "time": {"from": "request.time", "action": "coarsen_time", "bucket": "1h"},
                },
            }
        },
    }


def with_aggregates(cfg: dict[str, Any]) -> dict[str, Any]:
    cfg = copy.deepcopy(cfg)
    cfg["aggregates"] = {"enabled": True}
    return cfg


# -- keys.epoch against the aggregate windows ---------------------------------------------


@pytest.mark.parametrize(("epoch", "times"), [("1h", 24), ("12h", 2), ("36h", 2), ("7h", 5)])
def test_epoch_shorter_than_or_across_the_day_windows_is_refused(epoch: str, times: int) -> None:
    errors = validate(with_aggregates(config(epoch=epoch)))
    assert errors[0] == (
        f"keys.epoch: {epoch} with aggregates enabled: the 1d windows count distinct "
        f"visitors by pseudonym, and a new key every {epoch} counts one visitor up to "
        f"{times} times in a window; use a multiple of 1d (or keys.unsafe: true)"
    )
    # 36h is also longer than rule 5's daily keys: its own message.
    assert all(e.startswith(f"keys.epoch: {epoch} ") for e in errors), errors


def test_epoch_multiple_of_the_day_is_accepted() -> None:
    assert validate(with_aggregates(config(epoch="1d"))) == []


def test_an_epoch_one_second_over_a_day_is_refused() -> None:
    assert validate(config(epoch="86400s")) == []
    assert validate(config(epoch="86401s")) == [
        "keys.epoch: 86401s is longer than 1d, the daily keys of privacy rule 5 (one key "
        "links a visitor's requests for its whole epoch) (or keys.unsafe: true)"
    ]


@pytest.mark.parametrize("epoch", ["2d", "7d"])
def test_epoch_multiple_of_the_day_but_longer_needs_unsafe(epoch: str) -> None:
    warnings: list[str] = []
    assert validate(with_aggregates(config(epoch=epoch, unsafe=True)), warnings) == []
    assert warnings == [
        f"UNSAFE (keys.unsafe: true): keys.epoch: {epoch} is longer than 1d, the daily keys "
        "of privacy rule 5 (one key links a visitor's requests for its whole epoch)"
    ]


def test_short_epoch_without_aggregates_or_with_unsafe() -> None:
    assert validate(config(epoch="1h")) == []  # no visitor counts to inflate
    warnings: list[str] = []
    assert validate(with_aggregates(config(epoch="1h", unsafe=True)), warnings) == []
    assert any(w.startswith("UNSAFE (keys.unsafe: true): keys.epoch: 1h") for w in warnings)


# -- loosening a privacy default needs unsafe: true, and is logged ------------------------


@pytest.mark.parametrize(
    ("section", "patch", "message"),
    [
        ("aggregates", {"k": 9}, "aggregates.k: 9 is below 10, the minimum group size of "
                                 "privacy rule 9"),
        ("aggregates", {"k_by_output": {"product": 2}}, "aggregates.k_by_output.product: 2 is "
                                                        "below 10"),
        ("keys", {"epoch": "520w"}, "keys.epoch: 520w is longer than 1d, the daily keys of "
                                    "privacy rule 5"),
        ("keys", {"grace": "365d"}, "keys.grace: 365d is longer than 1h, the short grace of "
                                    "privacy rule 5"),
        ("keys", {"grace": "61m"}, "keys.grace: 61m is longer than 1h"),
        # Rule 9's contribution cap: 10**9 passed without a word, switching it off (an
        # audit, M3).
        ("aggregates", {"max_events_per_visitor": 101}, "aggregates.max_events_per_visitor: "
                       "101 is above 100, the contribution cap of privacy rule 9"),
        ("aggregates", {"max_events_per_visitor": 10_000}, "aggregates.max_events_per_visitor: "
                       "10000 is above 100"),
    ],
)  # fmt: skip
def test_loosening_a_privacy_default_needs_unsafe_and_is_logged(
    section: str, patch: dict[str, Any], message: str
) -> None:
    """privacy-requirements.md: "config may tighten, loosening needs an explicit, logged
    opt-in". k below 10 or a raised contribution cap (rule 9), a ten-year key epoch or a
    year of grace (rule 5: daily keys, destroyed after a *short* grace) used to pass
    without an error or a warning."""
    shipped = yaml.safe_load((ROOT / "config" / "logfog.yaml").read_text())
    shipped[section].update(patch)
    errors = validate(shipped)
    assert len(errors) == 1 and errors[0].startswith(message), errors
    assert errors[0].endswith(f" (or {section}.unsafe: true)")
    shipped[section]["unsafe"] = True
    warnings: list[str] = []
    assert validate(shipped, warnings) == []
    assert [w for w in warnings if message in w] == [
        f"UNSAFE ({section}.unsafe: true): {errors[0].removesuffix(f' (or {section}.unsafe: true)')}"
    ]


@pytest.mark.parametrize("unsafe", ["yes", None, 1])
def test_only_a_real_true_opts_in(unsafe: Any) -> None:
    """``aggregates.unsafe: "yes"`` (or null, or 1) is a schema error, and k below 10
    stays an error: a malformed opt-in downgrades nothing to a warning."""
    cfg = with_aggregates(config())
    cfg["aggregates"].update({"k": 5, "unsafe": unsafe})
    errors = validate(cfg)
    assert errors[0].startswith("aggregates.unsafe: must be true/false")
    assert errors[1].startswith("aggregates.k: 5 is below 10") and len(errors) == 2


def test_a_rule_with_a_malformed_unsafe_is_checked_as_a_safe_one() -> None:
    """A rule's ``unsafe: "yes"`` is refused, and the rest of the rule is checked as if
    it said false: one mistake must not hide another."""
    errors = validate(with_rule({"from": "client.ip", "action": "keep", "unsafe": "yes"}))
    assert errors == [
        WHERE.removesuffix(": ") + ".unsafe: must be true/false",
        WHERE + "keep would publish client.ip as it is (raw personal data); use a "
        "transforming action, or set unsafe: true to override",
    ]


@pytest.mark.parametrize("unsafe", [False, True])
def test_k_below_two_is_refused_even_with_unsafe(unsafe: bool) -> None:
    """k = 1 makes every visitor a cell: the schema refuses it, ``unsafe`` or not
    (``_check_privacy_defaults`` only looks at 2 <= k < 10)."""
    cfg = with_aggregates(config())
    cfg["aggregates"].update({"k": 1, "unsafe": unsafe})
    assert validate(cfg) == ["aggregates.k: must be at least 2"]


def test_tightening_a_privacy_default_needs_nothing() -> None:
    shipped = yaml.safe_load((ROOT / "config" / "logfog.yaml").read_text())
    shipped["aggregates"].update({"k": 25, "k_by_output": {"product": 50},
                                  "max_events_per_visitor": 20})  # fmt: skip
    shipped["keys"].update({"epoch": "1d", "grace": "10m"})
    warnings: list[str] = []
    assert validate(shipped, warnings) == [] and warnings == []


@pytest.mark.parametrize("unsafe", [False, True])
def test_the_contribution_cap_stops_at_10000_even_with_unsafe(unsafe: bool) -> None:
    """Past 10,000 events per visitor and window (100 times the default) the cap is no
    cap: refused by the schema's bound, ``unsafe`` or not."""
    shipped = yaml.safe_load((ROOT / "config" / "logfog.yaml").read_text())
    shipped["aggregates"].update({"max_events_per_visitor": 10**9, "unsafe": unsafe})
    assert validate(shipped) == ["aggregates.max_events_per_visitor: must be at most 10000"]


def test_the_worker_logs_an_unsafe_aggregates_k_at_startup(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from streams.app import _load

    shipped = yaml.safe_load((ROOT / "config" / "logfog.yaml").read_text())
    shipped["aggregates"].update({"k": 5, "unsafe": True})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(shipped))
    with caplog.at_level("WARNING"):
        _load(str(path), None)
    assert any("UNSAFE (aggregates.unsafe: true): aggregates.k: 5" in r.getMessage()
               for r in caplog.records)  # fmt: skip


# -- keys.source never quoted -------------------------------------------------------------


@pytest.mark.parametrize("source", ["{key}", "{key}:x", "env:{key}", "plain:{key}"])
def test_a_key_pasted_into_keys_source_is_refused_and_not_echoed(source: str) -> None:
    """The README says "never a key in config", so a key pasted into keys.source is the
    mistake to expect: its error used to quote it (check-config prints it, the worker
    logs it)."""
    from streams.keys import generate_key

    key = generate_key()
    errors = validate(config(source=source.format(key=key)))
    assert [e.split(":")[0] for e in errors] == ["keys.source"], errors
    assert not any(key[:16] in e or key[-16:] in e for e in errors), errors


# -- logfog worker needs shared keys -------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("ephemeral", "every worker makes its own keys"),
        ("env:LOGFOG_SECRET", "never destroyed"),
        ("file:/etc/logfog.key", "never destroyed"),
    ],
)
def test_worker_refuses_unshared_keys(source: str, why: str) -> None:
    normalized = normalize(config(source=source), [], [])
    problems = worker_key_problems(normalized, [])
    assert len(problems) == 1
    assert problems[0].startswith(f"keys.source: {source!r} in logfog worker: ")
    assert why in problems[0] and "use auto or shared" in problems[0]
    warnings: list[str] = []
    unsafe = normalize(config(source=source, unsafe=True), [], [])
    assert worker_key_problems(unsafe, warnings) == [] and "UNSAFE" in warnings[0]


@pytest.mark.parametrize("source", ["auto", "shared"])
def test_worker_accepts_shared_keys_and_the_shipped_config(source: str) -> None:
    assert worker_key_problems(normalize(config(source=source), [], []), []) == []
    shipped = normalize(yaml.safe_load((ROOT / "config" / "logfog.yaml").read_text()), [], [])
    assert worker_key_problems(shipped, []) == []


def test_worker_with_ephemeral_keys_exits_2_before_any_broker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config(source="ephemeral")))
    assert main(["worker", "-c", str(path), "--bootstrap", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "keys.source: 'ephemeral' in logfog worker" in err and "Traceback" not in err


# -- rules that would publish below a floor (rules 2, 4, 5, 8) -----------------------------


def with_rule(
    rule: dict[str, Any], kind: str = "analytics", key: str | None = None
) -> dict[str, Any]:
    cfg = config()
    dest = cfg["destinations"]["product"]
    dest["kind"] = kind
    dest["fields"]["x"] = rule
    if key is not None:
        dest["key"] = key
    return cfg


WHERE = "destinations.product.fields.x: "
OVERRIDE = " (or set unsafe: true to override)"
RULE_CASES = [
    (with_rule({"from": "request.time", "action": "keep"}),
     WHERE + "keep would publish request.time to the second, finer than 1h, the limit for "
     "analytics output (rule 8); use coarsen_time" + OVERRIDE),
    (with_rule({"from": "request.time", "action": "keep"}, "operations"),
     WHERE + "keep would publish request.time to the second, finer than 1m, the limit for "
     "operations output (rule 8); use coarsen_time" + OVERRIDE),
    (with_rule({"from": "geo.asn", "action": "keep"}),
     WHERE + "keep would publish geo.asn in an analytics destination: never the ASN in "
     "analytics (rule 4); drop it" + OVERRIDE),
    (with_rule({"from": "geo.asn", "action": "pseudonymize"}),
     WHERE + "pseudonymize would publish geo.asn in an analytics destination"),
    # Binned or not: ASN bins of a small network are the network.
    (with_rule({"from": "geo.asn", "action": "generalize", "to": "bins",
                "bins": [0, 1000, 100000]}),
     WHERE + "generalize would publish geo.asn in an analytics destination: never the ASN "
     "in analytics (rule 4)"),
    # A geo level "to" publishes that level, checked like the source it replaces: it
    # exempts nothing by itself (the region to: region), and the time zone has no geo
    # level to be generalized to.
    (with_rule({"from": "geo.region", "action": "generalize", "to": "region"}),
     WHERE + "generalize would publish geo.region in an analytics destination"),
    (with_rule({"from": "geo.timezone", "action": "generalize", "to": "country"}),
     WHERE + "to: country cannot apply to geo.timezone"),
    (with_rule({"from": "geo.city", "action": "keep"}),
     WHERE + "keep would publish geo.city in an analytics destination: the city only through "
     "the k-gated aggregates, where every cell holds at least k visitors (rule 4); generalize "
     "it to country" + OVERRIDE),
    # A subdivision can be small, and each event carries the pseudonym: regions reach
    # analytics only through the k-gated aggregates (an audit, D9).
    (with_rule({"from": "geo.region", "action": "keep"}),
     WHERE + "keep would publish geo.region in an analytics destination: the region only "
     "through the k-gated aggregates, where every cell holds at least k visitors (rule 4); "
     "generalize it to country" + OVERRIDE),
    (with_rule({"from": "geo.city", "action": "generalize", "to": "region"}),
     WHERE + "generalize would publish geo.region (from geo.city) in an analytics "
     "destination: the region only through" ),
    (with_rule({"from": ["client.ip", "agent.original"], "action": "pseudonymize",
                "scope": "global"}),
     WHERE + "scope: global gives a visitor the same pseudonym on every site, linking them "
     "across sites (rule 5); use scope: site (or set unsafe: true to override)"),
    (with_rule({"from": "client.ip", "action": "keep", "unsafe": True}, "operations", key="x"),
     "destinations.product.key: 'x' comes from a rule with unsafe: true; a Kafka key must "
     "never carry a raw IP or identifier (rule 2): key by a pseudonymized field"),
    (with_rule({"from": "client.ip", "action": "truncate_ip", "ipv4_prefix": 32,
                "unsafe": True}, "operations", key="x"),
     "destinations.product.key: 'x' comes from a rule with unsafe: true"),
    (with_rule({"from": "request.cookie", "action": "drop"}, key="x"),
     "destinations.product.key: 'x' is dropped, so there is no value to key by"),
]  # fmt: skip


@pytest.mark.parametrize(("cfg", "message"), RULE_CASES)
def test_rule_below_a_floor_is_refused_with_its_message(cfg: dict[str, Any], message: str) -> None:
    errors = validate(cfg)
    assert any(e.startswith(message) for e in errors), errors


@pytest.mark.parametrize(
    "rule",
    [
        {"from": "request.time", "action": "keep"},
        {"from": "geo.asn", "action": "keep"},
        {"from": "geo.city", "action": "keep"},
        {"from": "geo.region", "action": "keep"},
        {"from": "geo.city", "action": "generalize", "to": "region"},
        {"from": ["client.ip"], "action": "pseudonymize", "scope": "global"},
    ],
)
def test_unsafe_true_lets_each_through_with_a_warning(rule: dict[str, Any]) -> None:
    warnings: list[str] = []
    assert validate(with_rule({**rule, "unsafe": True}), warnings) == []
    assert any(w.startswith(WHERE + "UNSAFE: ") for w in warnings), warnings


@pytest.mark.parametrize(
    ("rule", "kind", "key"),
    [
        ({"from": "request.time", "action": "coarsen_time", "bucket": "1h"}, "analytics", None),
        ({"from": "request.time", "action": "drop"}, "analytics", None),
        ({"from": "geo.city", "action": "generalize", "to": "country"}, "analytics", None),
        ({"from": "geo.region", "action": "generalize", "to": "country"}, "analytics", None),
        ({"from": "geo.region", "action": "keep"}, "operations", None),
        ({"from": "geo.city", "action": "drop"}, "analytics", None),
        ({"from": "geo.asn", "action": "keep"}, "operations", None),
        ({"from": "geo.city", "action": "keep"}, "operations", None),
        ({"from": "request.method", "action": "keep"}, "operations", "x"),
        ({"from": ["client.ip", "agent.original"], "action": "pseudonymize"}, "analytics", "x"),
    ],
)
def test_safe_neighbours_pass(rule: dict[str, Any], kind: str, key: str | None) -> None:
    assert validate(with_rule(rule, kind, key)) == []


def test_analytics_destinations_refuse_per_event_region() -> None:
    """Rule 4: region/city in analytics only where the cell holds at least k visitors. The
    shipped config's product destination (analytics, keyed by the visitor pseudonym) may
    not add the region per event, as kept or as the city generalized to it (an audit,
    D9); the aggregates publish regions behind their k gate."""
    base = yaml.safe_load((ROOT / "config" / "logfog.yaml").read_text())
    assert validate(copy.deepcopy(base)) == []
    for rule in ({"from": "geo.region", "action": "keep"},
                 {"from": "geo.city", "action": "generalize", "to": "region"}):  # fmt: skip
        data = copy.deepcopy(base)
        data["destinations"]["product"]["fields"]["region"] = rule
        errors = validate(data)
        assert any(e.startswith("destinations.product.fields.region: ") and "geo.region" in e
                   for e in errors), (rule, errors)  # fmt: skip


def test_aggregation_input_may_hold_the_city() -> None:
    """The internal stream keeps the city for the k-gated aggregates (an operations-kind
    destination): aggregation with a city database stays valid."""
    cfg = with_aggregates(config())
    cfg["enrich"] = {"geo": {"city": "builtin:dbip-city-lite"}}
    assert validate(cfg) == []


# --- session 10 audit ------------------------------------------------------------------


def _one_destination(
    fields: dict[str, Any], kind: str = "operations", **input_: Any
) -> dict[str, Any]:
    return {
        "input": input_ or {"format": "combined"},
        "enrich": {"geo": {"city": "/nonexistent/City.mmdb"}},  # validate opens no file
        "destinations": {"d": {"topic": "t", "kind": kind, "fields": fields}},
    }


def test_the_time_zone_is_kept_out_of_analytics_like_the_city() -> None:
    # IANA zones such as Europe/Busingen or America/North_Dakota/Beulah name one town.
    for source in ("geo.city", "geo.timezone"):
        rule = {"tz": {"from": source, "action": "keep"}}
        errors = validate(_one_destination(rule, kind="analytics"))
        assert any(source in e and "analytics" in e for e in errors), errors
        assert validate(_one_destination(rule, kind="operations")) == []


@pytest.mark.parametrize("role", ["host", "protocol"])
@pytest.mark.parametrize("key", ["http_cookie", "remote_addr", "http_user_agent", "request"])
def test_a_published_text_field_may_not_read_another_fields_json_key(role: str, key: str) -> None:
    # {host: http_cookie} + keep request.host would publish the cookie.
    config = _one_destination(
        {"h": {"from": "request.host", "action": "keep"}}, format="json", json_fields={role: key}
    )
    errors = validate(config)
    assert any(f"json_fields: {role}: reads {key!r}" in e for e in errors), errors


@pytest.mark.parametrize(
    "fields",
    [
        {"host": ["http_cookie"]},
        {"host": ["req", "headers", "Cookie"], "cookie": "req.headers.Cookie"},
        {"host": "req.headers.Cookie", "cookie": ["req", "headers", "Cookie"]},
    ],
)
def test_a_published_text_field_may_not_read_another_fields_key_as_a_list(
    fields: dict[str, object],
) -> None:
    """A list of keys names the same key as its dotted text: the check compares keys,
    not their spelling (audit formats, FMT-9)."""
    config = _one_destination(
        {"h": {"from": "request.host", "action": "keep"}}, format="json", json_fields=fields
    )
    errors = validate(config)
    assert any("json_fields: host: reads" in e and "the key of cookie" in e for e in errors), errors


def test_json_host_and_protocol_may_read_keys_of_their_own() -> None:
    config = _one_destination(
        {"h": {"from": "request.host", "action": "keep"}},
        format="json",
        json_fields={"host": "server_name", "protocol": "server_protocol"},
    )
    assert validate(config) == []


# --- aggregates audit (agg2): one client on several sites ------------------------------


def test_one_client_on_k_sites_alone_makes_no_published_cell(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    """The internal stream's visitor was a *per-site* pseudonym (scope: site), but no
    aggregate is broken down by site: one address + user agent requesting a page on k
    virtual hosts of one log counted as k distinct visitors, passed the k-gate alone,
    and got k times the per-visitor contribution cap."""
    from streams.cli import _FileAggregates

    pipeline = make_pipeline(input={"format": "vhost_combined"})
    ua = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
    lines = [  # one person: one address, one browser, ten sites of one operator
        f"site{i}.example:443 198.51.100.7 - - [04/Mar/2024:10:00:{i:02d} +0000] "
        f'"GET /rare-page HTTP/1.1" 200 5 "-" "{ua}"'
        for i in range(10)
    ]
    lines += [  # thirty ordinary visitors on one site
        f"site0.example:443 203.0.113.{j} - - [04/Mar/2024:10:01:00 +0000] "
        f'"GET / HTTP/1.1" 200 5 "-" "{ua}"'
        for j in range(30)
    ]
    out = pipeline.test(lines)
    index = [d.internal for d in pipeline.destinations].index(True)
    at = pipeline.destinations[index].fields.index("visitor")
    visitors = {orjson.loads(e[1])[at] for e in out.per_destination[index][:10]}
    assert len(visitors) == 1  # one client, one pseudonym on all ten sites
    aggregates = _FileAggregates(pipeline)
    written = aggregates.add(list(out.per_destination[index])) + aggregates.finish()
    rows = [orjson.loads(line) for line in written.splitlines()]
    # 31 visitors in every window's totals: the crowd and the one client, once.
    assert {r["visitors"] for r in rows if r["kind"] == "summary"} == {31}
    leaked = [(r["output"], r["window"], r["visitors"]) for r in rows
              if r["kind"] == "cell" and r["value"] == "/rare-page"]  # fmt: skip
    assert leaked == [], f"one client published as a group: {leaked}"


def test_the_internal_stream_pseudonymizes_per_client_and_published_ones_per_site() -> None:
    normalized = normalize(with_aggregates(config()), [], [])
    internal = normalized["destinations"]["_aggregate"]["fields"]["visitor"]
    assert internal["options"]["scope"] == "client"
    published = normalized["destinations"]["product"]["fields"]["visitor"]
    assert published["options"]["scope"] == "site"


@pytest.mark.parametrize("unsafe", [False, True])
def test_client_scope_is_refused_in_every_published_destination(unsafe: bool) -> None:
    rule = {"from": ["client.ip", "agent.original"], "action": "pseudonymize",
            "scope": "client", "unsafe": unsafe}  # fmt: skip
    for kind in ("analytics", "operations"):
        errors = validate(with_rule(rule, kind))
        assert any(e.startswith("destinations.product.fields.x.scope: 'client' is for "
                                "logfog's internal aggregation stream only") for e in errors), errors  # fmt: skip
