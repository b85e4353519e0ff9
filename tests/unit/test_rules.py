"""The rules compiler: per-client memo, shared values, leak counting through memos."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson

from streams.config import normalize
from streams.enrich.agent import AgentParser
from streams.enrich.language import primary_language
from streams.keys import DerivedKeyRing
from streams.pipeline import Pipeline
from streams.records import Request
from streams.rules import compile_rules

UA_A = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0.0.0 Safari/537.36"
UA_B = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Version/17.4 Mobile/15E148 Safari/604.1"


def _config(fields: dict[str, Any]) -> dict[str, Any]:
    errors: list[str] = []
    out = normalize(
        {"input": {"format": "combined"}, "keys": {"source": "env:LOGFOG_TEST_KEY"},
         "destinations": {"d": {"topic": "t", "fields": fields}}},
        errors, [],
    )  # fmt: skip
    assert errors == []
    return out


def _request(ip: str, ua: str, target: str, t: int = 1_700_000_000) -> Request:
    r = Request()
    r.ip, r.user_agent, r.target, r.time, r.method = ip, ua, target, t, "GET"
    return r


class CountingAgents:
    def __init__(self) -> None:
        self.calls = 0
        self._parser = AgentParser(100)

    def parse(self, ua: str | None) -> tuple[Any, ...]:
        self.calls += 1
        return self._parser.parse(ua)


def _compile(fields: dict[str, Any], agents: CountingAgents, leaks: Counter[str]) -> Any:
    return compile_rules(
        _config(fields), geo_lookup=None, agent_parse=agents.parse, language=primary_language,
        keyring=DerivedKeyRing(b"k" * 32, epoch_seconds=86400), leaks=leaks,
    )  # fmt: skip


FIELDS = {
    "net": {"from": "client.ip", "action": "truncate_ip"},
    "browser": {"from": "agent.browser", "action": "keep"},
    "bot": {"from": "agent.is_bot", "action": "keep"},
    "route": {"from": "request.target", "action": "url_policy"},
    "visitor": {"from": ["client.ip", "agent.original"], "action": "pseudonymize"},
}


def test_client_values_are_computed_once_per_client_and_stay_per_client() -> None:
    agents, leaks = CountingAgents(), Counter[str]()
    compiled = _compile(FIELDS, agents, leaks)
    events: list[Any] = []
    requests = [
        _request("203.0.113.9", UA_A, "/a"),
        _request("203.0.113.9", UA_A, "/b/123"),
        _request("198.51.100.7", UA_B, "/a"),
        _request("203.0.113.9", UA_A, "/c"),
    ]
    for r in requests:
        compiled.emit(r, events.append)
    assert agents.calls == 2  # two distinct clients, whatever the number of requests
    decoded = [orjson.loads(e[1]) for e in events]
    got = [(e["net"], e["browser"], e["bot"], e["route"]) for e in decoded]
    assert got == [
        ("203.0.113.0/24", "Chrome", False, "/a"),
        ("203.0.113.0/24", "Chrome", False, "/b/{id}"),
        ("198.51.100.0/24", "Mobile Safari", False, "/a"),
        ("203.0.113.0/24", "Chrome", False, "/c"),
    ]
    visitors = [e["visitor"] for e in decoded]
    assert visitors[0] == visitors[1] == visitors[3] != visitors[2]


def test_a_leak_in_a_client_value_is_counted_every_time_it_occurs() -> None:
    # An (unsafe) kept user agent that carries an email: the client tuple holding the
    # swept None must not be memoized, or the 2nd and 3rd hits would go uncounted.
    fields = {"ua": {"from": "agent.original", "action": "keep", "unsafe": True},
              "net": {"from": "client.ip", "action": "truncate_ip"}}  # fmt: skip
    agents, leaks = CountingAgents(), Counter[str]()
    compiled = _compile(fields, agents, leaks)
    events: list[Any] = []
    leaky = "curl/8.0 (ops: someone@example.org)"
    for _ in range(3):
        compiled.emit(_request("203.0.113.9", leaky, "/"), events.append)
    compiled.emit(_request("203.0.113.9", "curl/8.4.0", "/"), events.append)
    assert leaks["email"] == 3
    decoded = [orjson.loads(e[1]) for e in events]
    assert [e["ua"] for e in decoded] == [None, None, None, "curl/8.4.0"]
    assert all(e["net"] == "203.0.113.0/24" for e in decoded)


def test_the_client_memo_is_bounded_by_cache_size() -> None:
    cfg = _config(FIELDS)
    cfg["enrich"]["cache_size"] = 8
    cfg["keys"] = {"source": "ephemeral", "epoch": 86400, "grace": 3600}
    p = Pipeline.from_normalized(cfg)
    lines = [
        f'10.0.{i // 250}.{i % 250} - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 5 '
        f'"-" "{UA_A}"'
        for i in range(100)
    ]
    out = p.test(lines)
    assert len(out.events("d")) == 100
    memo = p.compiled.emit.__globals__["client_memo"]
    assert 0 < len(memo) <= 8


def test_time_values_are_computed_once_per_second_and_stay_correct() -> None:
    fields = {
        "t5": {"from": "request.time", "action": "coarsen_time", "bucket": "5m"},
        "t1h": {"from": "request.time", "action": "coarsen_time", "bucket": "1h",
                "format": "epoch"},
    }  # fmt: skip
    agents, leaks = CountingAgents(), Counter[str]()
    compiled = _compile(fields, agents, leaks)
    events: list[Any] = []
    times = [1_700_000_000, 1_700_000_000, 1_700_000_099, 1_700_003_600, 1_700_000_000]
    for t in times:
        compiled.emit(_request("203.0.113.9", UA_A, "/", t=t), events.append)
    got = [orjson.loads(e[1]) for e in events]
    assert got == [
        {"t5": "2023-11-14T22:10:00Z", "t1h": 1699999200},
        {"t5": "2023-11-14T22:10:00Z", "t1h": 1699999200},
        {"t5": "2023-11-14T22:10:00Z", "t1h": 1699999200},
        {"t5": "2023-11-14T23:10:00Z", "t1h": 1700002800},
        {"t5": "2023-11-14T22:10:00Z", "t1h": 1699999200},
    ]
    assert len(compiled.emit.__globals__["second_memo"]) == 3  # distinct seconds


def test_transforms_of_few_valued_fields_are_memoized_and_stay_correct() -> None:
    fields = {
        "status": {"from": "response.status", "action": "generalize", "to": "status_class"},
        "bytes": {"from": "response.bytes", "action": "generalize", "bins": [100, 1000],
                  "to": "bins"},
    }  # fmt: skip
    compiled = _compile(fields, CountingAgents(), Counter())
    events: list[Any] = []
    for status, size in [(200, 5), (404, 50_000), (200, 500), (503, 5), (None, None)]:
        r = _request("203.0.113.9", UA_A, "/")
        r.status, r.bytes_sent = status, size
        compiled.emit(r, events.append)
    got = [orjson.loads(e[1]) for e in events]
    assert [(e["status"], e["bytes"]) for e in got] == [
        ("2xx", "<100"),
        ("4xx", ">=1000"),
        ("2xx", "100-1000"),
        ("5xx", "<100"),
        (None, None),
    ]
    ns = compiled.emit.__globals__
    memos = {name: ns[f"get_{name[2:]}"].__self__ for name in ns if name.startswith("f_v")
             if f"get_{name[2:]}" in ns}  # fmt: skip
    # The status class has a memo holding its four distinct statuses; byte counts
    # (many distinct values) are binned by a call, not memoized.
    assert sorted(len(m) for m in memos.values()) == [4]


def test_values_are_exactly_the_json_document_in_a_buffer_of_its_own_size() -> None:
    # The generated code serializes with a trailing newline and slices it off (a
    # right-sized copy: see the comment in compile_rules); the value must still be the
    # plain document, byte for byte.
    compiled = _compile(FIELDS, CountingAgents(), Counter())
    events: list[Any] = []
    compiled.emit(_request("203.0.113.9", UA_A, "/b/123?x=1"), events.append)
    ((_, value, _),) = events
    event = orjson.loads(value)
    assert value == orjson.dumps(event)
    assert not value.endswith(b"\n")
