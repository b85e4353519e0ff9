"""The pure pipeline: accounting, default deny, leak sweep, bad input, keys, timestamps."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.keys import DerivedKeyRing
from streams.pipeline import Pipeline, dead_letter
from streams.rules import SOURCE_FIELDS
from tests.support.memory import BIG, CHROME, retained

T = "[10/Oct/2000:13:55:36 -0700]"
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0.0.0 Safari/537.36"
GOOD = f'203.0.113.9 alice - {T} "GET /u/12345?utm_source=n&sid=s3cr3t HTTP/1.1" 200 5 "-" "{UA}"'


def config(**extra_fields: Any) -> dict[str, Any]:
    fields = {
        "net": {"from": "client.ip", "action": "truncate_ip"},
        "time": {"from": "request.time", "action": "coarsen_time", "bucket": "5m"},
        "route": {"from": "request.target", "action": "url_policy", "allow_query": ["utm_*"]},
        "status": {"from": "response.status", "action": "keep"},
        "method": {"from": "request.method", "action": "keep"},
    }
    fields.update(extra_fields)
    return {
        "input": {"format": "combined"},
        "destinations": {"ops": {"topic": "o", "fields": fields}},
    }


def test_event_is_built_from_rules_only() -> None:
    out = Pipeline.from_config(config()).test([GOOD])
    assert out.events("ops") == [
        {"net": "203.0.113.0/24", "time": "2000-10-10T20:55:00Z", "route": "/u/{id}?utm_source=n",
         "status": 200, "method": "GET"}
    ]  # fmt: skip
    raw = out.values("ops")[0]
    for secret in (b"alice", b"s3cr3t", b"203.0.113.9", b"Chrome", b"12345"):
        assert secret not in raw


def test_every_line_is_published_or_rejected_exactly_once() -> None:
    lines = [GOOD, "junk", "", f'bad-ip - - {T} "GET / HTTP/1.1" 200 5 "-" "-"', GOOD]
    p = Pipeline.from_config(config())
    out = p.test(lines)
    assert len(out.events("ops")) == 2
    assert [(r.reason, r.line) for r in out.rejections] == [
        ("parse.no_match", 2), ("parse.empty", 3), ("parse.bad_ip", 4)
    ]  # fmt: skip
    assert p.stats.lines == 5 and sum(p.stats.rejected.values()) == 3


def test_too_long_and_invalid_utf8() -> None:
    cfg = config()
    cfg["input"]["max_line_bytes"] = 300
    p = Pipeline.from_config(cfg)
    out = p.test([GOOD.encode() + b" " * 300, GOOD.replace("/u/", "/\xff/").encode("latin-1")])
    assert [r.reason for r in out.rejections] == ["parse.too_long"]
    assert out.rejections[0].length is not None and out.rejections[0].length > 300
    assert out.events("ops")[0]["route"] == "/\ufffd/{id}?utm_source=n"
    assert p.stats.replaced_utf8 == 1
    cfg["input"]["invalid_utf8"] = "reject"
    out = Pipeline.from_config(cfg).test([b"\xff\xfe" + GOOD.encode()])
    assert [r.reason for r in out.rejections] == ["parse.not_utf8"]


def test_leaks_are_removed_and_counted_every_time() -> None:
    # keep on request.method is allowed; a "method" that is an email must not pass.
    cfg = config()
    cfg["input"]["format"] = 'apache:%h %t "%m %U %H" %>s'
    p = Pipeline.from_config(cfg)
    line = f'203.0.113.9 {T} "GET /a HTTP/1.1" 200'
    out = p.test([line, line])
    assert out.events("ops")[0]["method"] == "GET"
    # The sweep runs on outputs: feed it through a rule whose output is attacker text.
    cfg = config(host={"from": "request.host", "action": "keep"})
    cfg["input"]["format"] = "vhost_combined"
    p = Pipeline.from_config(cfg)
    leaky = f'me@example.org:80 203.0.113.9 - - {T} "GET / HTTP/1.1" 200 5 "-" "-"'
    out = p.test([leaky, leaky])
    assert [e["host"] for e in out.events("ops")] == [None, None]
    assert p.stats.leaks["email"] == 2


def test_a_failing_rule_dead_letters_the_line_and_the_stream_goes_on() -> None:
    p = Pipeline.from_config(config())
    calls = {"n": 0}
    original = p.compiled.emit

    def flaky(r: Any, *appends: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError(f"boom {r.ip}")  # a message quoting data must not be logged
        original(r, *appends)

    object.__setattr__(p.compiled, "emit", flaky)
    out = p.test([GOOD, GOOD])
    assert len(out.events("ops")) == 1
    assert [(r.stage, r.reason) for r in out.rejections] == [("rules", "rules.error")]


def test_rules_error_is_logged_without_the_message(caplog: pytest.LogCaptureFixture) -> None:
    p = Pipeline.from_config(config())

    def broken(r: Any, *appends: Any) -> None:
        raise ValueError(f"boom {r.ip}")

    object.__setattr__(p.compiled, "emit", broken)
    p.test([GOOD])
    assert "ValueError" in caplog.text and "203.0.113.9" not in caplog.text


def test_rules_and_parse_errors_are_logged_with_the_lines_coordinates(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The log line named the exception and its place only: which record failed could
    not be told (an audit). Now it names topic/partition@offset and the line."""
    p = Pipeline.from_config(config())

    def broken(r: Any, *appends: Any) -> None:
        raise ValueError(f"boom {r.ip}")

    object.__setattr__(p.compiled, "emit", broken)
    good = GOOD.encode()
    p.process_records([(good + b"\n" + good, "logs.raw", 3, 4711)], p.new_output())
    object.__setattr__(p, "_parse", broken)
    p.process_lines([good], p.new_output(), first_line=9)
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split(":")[0] for m in messages] == ["rules.error", "rules.error", "parse.error"]
    assert messages[0].endswith("(logs.raw/3@4711 line 1)")
    assert messages[1].endswith("(logs.raw/3@4711 line 2)")
    assert messages[2].endswith("(line 9)")
    assert "203.0.113.9" not in caplog.text


def test_kafka_key_and_timestamp() -> None:
    cfg = config(visitor={"from": ["client.ip", "agent.original"], "action": "pseudonymize"})
    cfg["destinations"]["ops"]["key"] = "visitor"
    p = Pipeline.from_config(cfg, keyring=DerivedKeyRing(b"k" * 32, 86400))
    out = p.test([GOOD])
    key, value, timestamp = out.per_destination[0][0]
    assert key == orjson.loads(value)["visitor"].encode() and len(key) == 16
    assert timestamp == 971211300 * 1000  # the 5-minute bucket, not the exact time


def test_dead_letters_carry_coordinates_not_payload() -> None:
    p = Pipeline.from_config(config())
    out = p.new_output()
    p.process_lines([b"secret 203.0.113.9 junk"], out, topic="logs.raw", partition=2, offset=77)
    record = dead_letter(out.rejections[0])
    assert orjson.loads(record) == {"stage": "parse", "reason": "parse.no_match", "topic": "logs.raw",
                                    "partition": 2, "offset": 77, "line": 1}  # fmt: skip
    assert b"secret" not in record and b"203.0.113" not in record


def test_drop_is_absent_and_unknown_fields_never_appear() -> None:
    out = Pipeline.from_config(config(cookie={"from": "request.cookie", "action": "drop"})).test(
        [GOOD]
    )
    assert set(out.events("ops")[0]) == {"net", "time", "route", "status", "method"}


def test_a_parser_bug_dead_letters_the_line_and_the_stream_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    p = Pipeline.from_config(config())

    def broken(text: str) -> Any:
        if "boom" in text:
            raise OverflowError(f"cannot handle {text}")  # quotes the line: must not be logged
        return original(text)

    original = p._parse
    p._parse = broken  # type: ignore[method-assign]
    out = p.test(["boom 203.0.113.9", GOOD])
    assert [(r.stage, r.reason) for r in out.rejections] == [("parse", "parse.error")]
    assert len(out.events("ops")) == 1
    assert "OverflowError" in caplog.text and "203.0.113.9" not in caplog.text


@pytest.mark.parametrize("seconds", ["9" * 400, "-5", "1e30"])
def test_impossible_epoch_times_are_bad_time_not_a_crash(seconds: str) -> None:
    cfg = config()
    cfg["input"]["format"] = "apache:%h %{sec}t %>s"
    out = Pipeline.from_config(cfg).test([f"203.0.113.9 {seconds} 200"])
    assert [r.reason for r in out.rejections] == ["parse.bad_time"]


@pytest.mark.parametrize("geo", [True, False])
def test_the_aggregator_reads_rows_in_the_order_the_workers_write_them(
    geo: bool, tmp_path: Any
) -> None:
    # `logfog aggregator` compiles no rules: it derives the row layout from the config.
    from pathlib import Path

    import yaml

    from streams.config import normalize
    from streams.pipeline import aggregate_layout
    from tests.support.mmdb import default_test_dbs

    raw = yaml.safe_load((Path(__file__).parents[2] / "config" / "logfog.yaml").read_text())
    if geo:
        raw["enrich"]["geo"] = default_test_dbs(tmp_path)
    else:
        # No geo database: the default rules that read geo.country go too.
        raw["enrich"]["geo"] = {"city": None}
        for dest in raw["destinations"].values():
            dest["fields"] = {n: r for n, r in dest["fields"].items()
                              if not str(r["from"]).startswith("geo.")}  # fmt: skip
    config = normalize(raw, errors := [], [])
    assert not errors, errors
    layout = aggregate_layout(config)
    assert layout is not None and ("country" in layout) is geo
    assert layout == Pipeline.from_normalized(config).aggregate_layout


def test_a_future_dated_line_gets_no_pseudonym_and_is_counted() -> None:
    """File command (ephemeral keys): a line dated 2099 must not end the other lines'
    pseudonyms; its own pseudonym is null and counted for the summary."""
    from streams.keys import EphemeralKeyRing

    cfg = config(visitor={"from": ["client.ip", "agent.original"], "action": "pseudonymize"})
    p = Pipeline.from_config(cfg, keyring=EphemeralKeyRing(86400, 3600))
    future = GOOD.replace(T, "[10/Oct/2099:13:55:36 -0700]")
    events = p.test([GOOD, future, GOOD]).events("ops")
    assert [e["visitor"] is None for e in events] == [False, True, False]
    assert events[0]["visitor"] == events[2]["visitor"]
    assert p.stats.as_dict()["pseudonyms_empty"] == 1


class KeysDown:
    """A key ring during a key-topic or broker outage: no epoch key can be agreed
    (what ``SharedKeyRing.key_for`` raises then), until ``up`` is set."""

    epoch_seconds = 86400

    def on_destroy(self, listener: object) -> None:
        """Never destroys a key (derived, as in tests): nothing to tell."""

    def __init__(self) -> None:
        self.up = False
        self._ring = DerivedKeyRing(b"k" * 32, 86400)

    #: Epochs before this one are destroyed: their lines get no pseudonym.
    oldest = 11240  # 10 Oct 2000, the day of ``T``

    def key_for(self, epoch: int, now: float | None = None) -> bytes | None:
        from streams.keyshare import KeyShareUnavailable

        if epoch < self.oldest:
            return None
        if not self.up:
            raise KeyShareUnavailable(f"no agreed key for epoch {epoch} (backing off)")
        return self._ring.key_for(epoch)


def test_unavailable_keys_raise_instead_of_dead_lettering_and_a_rerun_counts_once() -> None:
    """An outage of the key topic is no fault of the lines: dead-lettering them as
    rules.error (published, committed) lost every event while it lasted."""
    from streams.keyshare import KeyShareUnavailable

    cfg = config(
        visitor={"from": ["client.ip", "agent.original"], "action": "pseudonymize"},
        host={"from": "request.host", "action": "keep"},
    )
    cfg["input"] = {"format": "vhost_combined", "max_line_bytes": 300}
    ring = KeysDown()
    p = Pipeline.from_config(cfg, keyring=ring)
    good = f'www.example.com:80 203.0.113.9 - - {T} "GET / HTTP/1.1" 200 5 "-" "-"'
    leaky = good.replace("www.example.com", "me@example.org")  # counted by the sweep
    stale = good.replace("/2000:", "/1999:")  # its epoch's key is gone: no pseudonym
    lines = ["junk", stale, leaky, "x" * 400, good]
    records = [("\n".join(lines).encode(), "logs.raw", 0, 5)]
    out = p.new_output()
    with pytest.raises(KeyShareUnavailable):
        p.process_records(records, out)
    assert p.stats.lines == 0 and not p.stats.rejected and not p.stats.leaks
    assert not p.stats.counters
    ring.up = True
    out = p.new_output()
    assert p.process_records(records, out) == 5
    assert [(r.reason, r.line) for r in out.rejections] == [("parse.no_match", 1),
                                                            ("parse.too_long", 4)]  # fmt: skip
    assert len(out.events("ops")) == 3
    assert p.stats.lines == 5 and dict(p.stats.rejected) == {"parse.no_match": 1,
                                                             "parse.too_long": 1}  # fmt: skip
    assert dict(p.stats.leaks) == {"email": 1}
    assert p.stats.as_dict()["pseudonyms_empty"] == 1


def test_other_key_ring_failures_are_still_rules_errors() -> None:
    class Broken:
        epoch_seconds = 86400

        def on_destroy(self, listener: object) -> None:
            """Never destroys a key (derived, as in tests): nothing to tell."""

        def key_for(self, epoch: int, now: float | None = None) -> bytes | None:
            raise RuntimeError("a bug, not an outage")

    cfg = config(visitor={"from": ["client.ip", "agent.original"], "action": "pseudonymize"})
    out = Pipeline.from_config(cfg, keyring=Broken()).test([GOOD])
    assert [(r.stage, r.reason) for r in out.rejections] == [("rules", "rules.error")]


def test_aggregation_rows_end_with_their_raw_lines_coordinates() -> None:
    # Stage 2 deduplicates the anonymizer's at-least-once replays by these.
    cfg = config()
    cfg["aggregates"] = {"enabled": True}
    pipeline = Pipeline.from_config(cfg)
    index = [d.internal for d in pipeline.destinations].index(True)
    assert pipeline.aggregate_layout is not None
    assert pipeline.aggregate_layout[-3:] == SOURCE_FIELDS
    line = b'203.0.113.9 - - [04/Mar/2024:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8"'
    out = pipeline.new_output()
    pipeline.process_records([(line + b"\n" + line, "logs.raw", 3, 41)], out)
    rows = [orjson.loads(value) for _, value, _ in out.per_destination[index]]
    assert [row[-3:] for row in rows] == [[3, 41, 1], [3, 41, 2]]
    assert len(rows[0]) == len(pipeline.aggregate_layout)
    file_rows = pipeline.test([line]).per_destination[index]
    assert orjson.loads(file_rows[0][1])[-3:] == [None, None, 1]


def test_per_client_memo_does_not_keep_whole_huge_user_agents() -> None:
    """The rules' per-client memo (rules.py) is keyed by (r.user_agent,) too, bounded
    in entries (enrich.cache_size, 65,536) but not in bytes."""
    from streams.pipeline import Pipeline

    config = {
        "input": {"format": "combined"},
        "destinations": {"d": {"topic": "t", "fields": {
            "browser": {"from": "agent.browser", "action": "keep"},
            "device": {"from": "agent.device", "action": "keep"}}}},
    }  # fmt: skip
    pipeline = Pipeline.from_config(config)
    template = '192.0.2.7 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 5 "-" "{ua}"'
    pipeline.test([template.format(ua=CHROME)])  # warm up the other memos
    n = 30
    lines = [template.format(ua=f"{CHROME}{i:06d}" + "x" * BIG) for i in range(n)]

    def run() -> None:
        out = pipeline.test(lines)
        assert len(out.events("d")) == n
        del out

    assert retained(run) < n * 4096  # whole strings: about n * 60 KB


def test_memos_keep_no_long_referrer_target_or_client_field(make_pipeline: Any) -> None:
    # Every memo is bounded in entries; long client text must not be a key in any of
    # them (the rule memos, the path, segment and domain memos, the address cache: a
    # review found 92 MB kept for 3,000 lines with 30 KB referrers).
    pipeline = make_pipeline()
    line = '{client} - - [10/Oct/2000:13:55:36 -0700] "GET {target} HTTP/1.1" 200 5 "{ref}" "-"'
    pipeline.test([line.format(client="192.0.2.7", target="/", ref="-")])  # warm up
    n = 40
    lines = [
        line.format(
            client="192.0.2.7",
            target=f"/a/{i}{'b' * 8000}?utm_source={'c' * 8000}",
            ref=f"https://www.example.com/{i}{'d' * 20_000}",
        )
        for i in range(n)
    ] + [line.format(client=f"{i}{'e' * 30_000}", target="/", ref="-") for i in range(n)]

    def run() -> None:
        out = pipeline.test(lines)
        assert len(out.events("ops")) == n and len(out.rejections) == n
        del out

    assert retained(run) < n * 8192  # keys of whole strings: about n * 66 KB
