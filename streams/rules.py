"""Compile validated field rules into one straight-line function per config.

For each destination the compiler builds every field's transform once (actions'
``build``), then generates a single Python function that, given a
:class:`~streams.records.Request`, does the enrichment lookups the rules need and
returns one dict per destination. The dicts are built as literals from the rules:
nothing from the input gets in unless a rule names it (default deny, fail closed).

Every transform whose output is text derived from the input (URLs, referrers, kept
strings, enriched names) is wrapped in :func:`swept`: a bounded memo that runs the leak
detectors once per distinct value and replaces a hit by ``None``, counting it each time
it occurs. Transforms whose output is made by logfog from numbers or keys
(pseudonyms, bucketed times, networks) are exempt.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from streams.actions import REGISTRY
from streams.actions.base import BuildContext, Transform
from streams.actions.coarsen_time import FLOORS as TIME_FLOORS
from streams.actions.coarsen_time import bucket_seconds
from streams.config import AGGREGATE_INPUT
from streams.detect import find_leak
from streams.fields import SOURCES
from streams.memo import remember

log = logging.getLogger("logfog.rules")

# Where each source field lives at run time, inside the generated function.
_REQUEST_ATTRS = {
    "client.ip": "r.ip",
    "request.time": "r.time",
    "request.method": "r.method",
    "request.target": "r.target",
    "request.protocol": "r.protocol",
    "request.host": "r.host",
    "request.referrer": "r.referrer",
    "request.cookie": "r.cookie",
    "user.name": "r.user",
    "agent.original": "r.user_agent",
    "response.status": "r.status",
    "response.bytes": "r.bytes_sent",
    "response.duration_ms": "r.duration_ms",
    "request.language": "lang",
}
_GEO_INDEX = {"geo.country": 0, "geo.continent": 1, "geo.region": 2, "geo.city": 3,
              "geo.timezone": 4, "geo.asn": 5}  # fmt: skip
_AGENT_INDEX = {"agent.browser": 0, "agent.browser_major": 1, "agent.os": 2, "agent.os_major": 3,
                "agent.device": 4, "agent.is_bot": 5}  # fmt: skip
# Outputs logfog makes itself from numbers or keys: no input text can be in them.
_GENERATED = frozenset({"pseudonymize", "coarsen_time", "truncate_ip", "drop"})
_TEXT_KINDS = frozenset({"str", "ip"})
# Pure and costly per distinct input (ipaddress parsing): worth a memo.
_MEMOIZED = frozenset({"truncate_ip"})
# Sources with a handful of distinct values: a transform of these alone is memoized
# (status 404 -> "4xx" is then one dict lookup a line instead of a call).
_FEW_VALUED_SOURCES = frozenset({"response.status", "request.method", "request.protocol"})
# Sources that describe the client rather than the request. A visitor sends many
# requests with the same address, user agent and languages, so every value computed
# from these alone (geo, UA families, networks) is computed once per client and
# memoized as one tuple: a hit replaces the geo, UA and language lookups and a memo
# lookup per field with one dict lookup.
_CLIENT_SOURCES = frozenset({"client.ip", "agent.original", "request.language",
                             *_GEO_INDEX, *_AGENT_INDEX})  # fmt: skip
# Keyed actions depend on the request time (epoch) too: never per client.
_PER_REQUEST_ACTIONS = frozenset({"pseudonymize"})


_MISS: Any = object()  # memo sentinel: None is a legitimate memoized value


def _expression(source: str) -> str:
    if source in _REQUEST_ATTRS:
        return _REQUEST_ATTRS[source]
    if source in _GEO_INDEX:
        return f"geo[{_GEO_INDEX[source]}]"
    return f"ua[{_AGENT_INDEX[source]}]"


def swept(transform: Transform, leaks: Counter[str], size: int) -> Transform:
    """Memoize ``transform`` and sweep its text output with the leak detectors.

    A hit is replaced by ``None`` and counted every time the input recurs (hits are
    not memoized, so counts stay exact). The memo is cleared when full: bounded
    memory at the cost of an occasional cold start.

    >>> leaks = Counter()
    >>> f = swept(str.lower, leaks, 100)
    >>> f("/Products"), f("ME@EXAMPLE.COM"), f("me@example.com"), leaks["email"]
    ('/products', None, None, 2)
    >>> g = swept(str.upper, leaks, 2)  # bounded: cleared when it holds ``size`` entries
    >>> [g(v) for v in "abc"], g.memo
    (['A', 'B', 'C'], {'c': 'C'})
    """
    memo: dict[Any, Any] = {}
    get = memo.get
    missing = _MISS
    sweep = _sweeper(leaks, size)

    def apply(value: Any) -> Any:
        out = get(value, missing)
        if out is not missing:
            return out
        out = transform(value)
        if type(out) is str and sweep(out) is None:
            return None  # not memoized: every occurrence is counted
        return remember(memo, value, out, size)

    apply.memo = memo  # type: ignore[attr-defined] # the generated code inlines lookups
    return apply


def swept_group(
    transform: Callable[[Any], tuple[Any, ...]], leaks: Counter[str], size: int
) -> Callable[[Any], tuple[Any, ...]]:
    """:func:`swept` for a transform of several rules (``ActionSpec.build_group``): each
    text value is swept; the tuple is memoized unless one of them was a hit.

    >>> leaks = Counter()
    >>> f = swept_group(lambda v: (v.lower(), v.upper()), leaks, 100)
    >>> f("/Cart"), f("Me@Example.com"), f("Me@Example.com"), leaks["email"], list(f.memo)
    (('/cart', '/CART'), (None, None), (None, None), 4, ['/Cart'])
    """
    memo: dict[Any, tuple[Any, ...]] = {}
    get = memo.get
    missing = _MISS
    sweep = _sweeper(leaks, size)

    def apply(value: Any) -> tuple[Any, ...]:
        out = get(value, missing)
        if out is not missing:
            return out
        values = []
        clean = True
        for made in transform(value):
            if type(made) is str and sweep(made) is None:
                made, clean = None, False
            values.append(made)
        if not clean:  # not memoized: every occurrence of a hit is counted
            return tuple(values)
        return remember(memo, value, tuple(values), size)

    apply.memo = memo  # type: ignore[attr-defined] # the generated code inlines lookups
    return apply


def _sweeper(leaks: Counter[str], size: int) -> Callable[[str], str | None]:
    """The leak sweep of one text value: itself, or None (counted) if a detector hits."""
    # Inputs are often unique (URLs with ids) while outputs repeat ("/products/{id}"):
    # a memo keyed by the output runs the detectors once per distinct output.
    verdicts: dict[str, str | None] = {}
    verdict = verdicts.get
    missing = _MISS

    def sweep(out: str) -> str | None:
        hit = verdict(out, missing)
        if hit is missing:
            hit = remember(verdicts, out, find_leak(out), size)
        if hit is not None:
            leaks[hit] += 1
            return None
        return out

    return sweep


def memoized(transform: Transform, size: int) -> Transform:
    """A bounded memo (cleared when full) for pure transforms of repeating values.

    >>> calls = []
    >>> f = memoized(lambda v: calls.append(v) or v * 2, 10)
    >>> f(2), f(2), len(calls)
    (4, 4, 1)
    """
    memo: dict[Any, Any] = {}
    get = memo.get
    missing = _MISS

    def apply(value: Any) -> Any:
        out = get(value, missing)
        if out is missing:
            out = remember(memo, value, transform(value), size)
        return out

    apply.memo = memo  # type: ignore[attr-defined]
    return apply


def _memo_group(
    name: str,
    key: str,
    lines: list[str],
    slots: list[str],
    namespace: dict[str, Any],
    leaks: Counter[str],
    size: int,
) -> tuple[list[str], list[str]]:
    """Generated code for values that depend only on ``key`` (an expression over the
    request ``r``): a function ``name(r, key)`` that runs ``lines`` and returns the
    ``slots`` as one tuple, memoized per key (``{name}_memo``, bounded by ``size``),
    and the lines of ``emit`` that look it up and unpack it.

    A key whose values hit the leak sweep is not memoized: every occurrence of a hit
    is counted. Nor is one holding long client text (see :func:`remember`).
    """
    memo: dict[Any, tuple[Any, ...]] = {}
    namespace.update({f"get_{name}": memo.get, f"{name}_memo": memo, "remember": remember,
                      "leaks": leaks, "cache_size": size})  # fmt: skip
    values = ", ".join(slots) + ","
    function = [
        f"def {name}(r, key):",
        "    before = leaks.total()",
        *lines,
        f"    values = ({values})",
        "    if leaks.total() != before: return values",
        f"    return remember({name}_memo, key, values, cache_size)",
        "",
    ]
    lookup = [
        f"    key = {key}",
        f"    m = get_{name}(key)",
        f"    if m is None: m = {name}(r, key)",
        f"    {values} = m",
    ]
    return function, lookup


def _memo_lookup(local: str, get: str, function: str, argument: str) -> list[str]:
    """Generated lines setting ``local`` to ``function(argument)`` through its memo,
    whose ``get`` is called inline: a hit costs one dict lookup and no Python call.

    >>> _memo_lookup("v3", "get_v3", "f_v3", "r.target")
    ['    v3 = get_v3(r.target, MISS)', '    if v3 is MISS: v3 = f_v3(r.target)']
    """
    return [f"    {local} = {get}({argument}, MISS)",
            f"    if {local} is MISS: {local} = {function}({argument})"]  # fmt: skip


def emitted_fields(destination: Mapping[str, Any]) -> tuple[str, ...]:
    """A normalized destination's output fields in emitted order: config order, dropped
    ones left out. The internal destination's rows hold their values in this order,
    which is how the aggregator (compiling no rules) reads them.

    >>> emitted_fields({"fields": {"a": {"action": "keep"}, "c": {"action": "drop"},
    ...                            "b": {"action": "keep"}}})
    ('a', 'b')
    """
    return tuple(n for n, rule in destination["fields"].items() if rule["action"] != "drop")


_SOURCE_ARGS = ("src_partition", "src_offset", "src_line")

#: Where the line of an aggregation-input row came from: raw-topic partition, offset
#: and line number within the record (None, None, n for a file). The last fields of
#: every row: stage 2 skips rows at or below the highest coordinates it applied per
#: raw partition, so rows re-published by an at-least-once replay count once. With
#: them the internal topic joins a pseudonym to its raw line: it is as sensitive as the
#: raw topic (deploy/README.md).
SOURCE_FIELDS = ("source_partition", "source_offset", "source_line")


def aggregate_row_fields(destination: Mapping[str, Any]) -> tuple[str, ...]:
    """Field names of the internal destination's rows: its emitted fields, then
    :data:`SOURCE_FIELDS` (appended by ``emit`` from its arguments, not by a rule).

    >>> aggregate_row_fields({"fields": {"time": {"action": "keep"}}})
    ('time', 'source_partition', 'source_offset', 'source_line')
    """
    return emitted_fields(destination) + SOURCE_FIELDS


@dataclass(frozen=True, slots=True)
class CompiledDestination:
    name: str
    index: int
    topic: str
    framing: str
    kind: str
    key_field: str | None
    time_bucket: int
    #: Output field names as emitted (dropped ones excluded); rows of the internal
    #: destination hold their values in this order.
    fields: tuple[str, ...]
    #: Feeds the aggregator inside the cluster; never written by the file command or
    #: shown by the demo.
    internal: bool = False


@dataclass(frozen=True, slots=True)
class Compiled:
    destinations: tuple[CompiledDestination, ...]
    emit: Callable[..., None]
    needs_geo: bool
    needs_agent: bool
    needs_language: bool
    #: Empties the per-client memo (geo and user-agent values by address, agent and
    #: language): called when the geo databases are reloaded, or it would keep
    #: publishing the old database's answers for every client already seen.
    forget_clients: Callable[[], None] = lambda: None


def compile_rules(
    config: Mapping[str, Any],
    *,
    geo_lookup: Callable[[str], tuple[Any, ...]] | None,
    agent_parse: Callable[[str | None], tuple[Any, ...]] | None,
    language: Callable[[str | None], str | None] | None,
    keyring: Any,
    leaks: Counter[str],
    counters: Counter[str] | None = None,
) -> Compiled:
    """Generate ``emit(r, append_0, append_1, ..., src_partition, src_offset,
    src_line)`` for a normalized config.

    ``append_i`` receives ``(key, value_bytes, timestamp_ms)`` for destination ``i``.
    The line's coordinates end the internal destination's rows (:data:`SOURCE_FIELDS`).
    The event dict itself is not kept: it dies right after serialization, while it is
    still in the CPU cache (held for the whole batch, freeing it was a separate pass
    over cold memory). Identical rules in several destinations (same action, options
    and sources) are computed once per line; memo lookups are inlined, so a memo hit
    costs a dict lookup, not a function call.
    """
    cache_size = config["enrich"]["cache_size"]
    # Serialized values live until the batch is published. orjson writes each into a
    # fresh 1 KiB buffer (above pymalloc's 512-byte limit, so from malloc) and shrinks
    # it in place; with thousands of such survivors every dumps slowed down (0.3 ->
    # 2.7 µs with 6,000 kept, measured alone; README, Performance). Serialized with a
    # trailing newline that a slice cuts off, the survivor is an exact-size copy
    # (from pymalloc) and orjson's buffer is freed at once, for the next dumps to reuse.
    namespace: dict[str, Any] = {
        "dumps": orjson.dumps,
        "NL": orjson.OPT_APPEND_NEWLINE,
        "MISS": _MISS,
    }
    compute: list[str] = []
    per_client: list[str] = []  # computed once per client (see _CLIENT_SOURCES)
    client_locals: list[str] = []
    per_second: list[str] = []  # computed once per request time (coarsened times)
    second_locals: list[str] = []
    request_sources: set[str] = set()  # sources read by per-request code
    client_sources: set[str] = set()  # sources read by per-client code
    body: list[str] = []
    tail: list[str] = []  # appends come last: a failing rule leaves no half-emitted line
    destinations = []
    used: set[str] = set()
    values: dict[str, str] = {}  # rule signature -> local variable holding its value
    # value expression -> local holding it encoded as a Kafka key ("text " + expression:
    # as text, for NDJSON destinations)
    keys: dict[str, str] = {}
    # (action, argument expression) -> (the local holding the argument, the index of the
    # call in ``compute``, [(value local, options, context)]): see ActionSpec.build_group
    groups: dict[tuple[str, str], tuple[str, int, list[tuple[str, Any, BuildContext]]]] = {}
    text_groups: set[str] = set()  # the shared locals of groups of text transforms

    def context_for(
        name: str, kind: str, rule: Mapping[str, Any], sources: list[str]
    ) -> BuildContext:
        return BuildContext(
            destination=name, destination_kind=kind, site=config["site"],
            keyring=keyring, cache_size=cache_size, unsafe=rule["unsafe"],
            sources=tuple(sources),
            # The summary counts pseudonyms *published* as null; the internal
            # stream's own (scope: client) would count each such line twice.
            counters=None if name == AGGREGATE_INPUT else counters,
        )  # fmt: skip

    for index, (name, dest) in enumerate(config["destinations"].items()):
        kind = dest["kind"]
        entries = []
        exprs: dict[str, str] = {}  # output field -> expression holding its value
        bucket = TIME_FLOORS[kind]
        for out_name, rule in dest["fields"].items():
            spec = REGISTRY[rule["action"]]
            sources = list(rule["from"])
            if spec.retarget is not None:
                sources = [spec.retarget(rule["options"], s) for s in sources]
            sources = [*spec.implicit_sources, *sources]
            used.update(sources)
            if rule["action"] == "drop":
                continue
            if rule["action"] == "coarsen_time":
                bucket = bucket_seconds(rule["options"])
            text_out = rule["action"] not in _GENERATED and any(
                SOURCES[s].kind in _TEXT_KINDS for s in sources
            )
            args = [_expression(s) for s in sources]
            argument = args[0] if len(args) == 1 else "(" + ", ".join(args) + ")"
            client_level = rule["action"] not in _PER_REQUEST_ACTIONS and all(
                s in _CLIENT_SOURCES for s in sources
            )
            (client_sources if client_level else request_sources).update(sources)
            if rule["action"] == "keep" and not text_out and not client_level:
                entries.append(f"{out_name!r}: {argument}")  # a number or bool: no call at all
                exprs[out_name] = argument
                continue
            signature = repr((rule["action"], sorted(rule["options"].items()), sources))
            local = values.get(signature)
            if local is None and rule["action"] == "keep" and not text_out:
                # A client-level number or bool (the bot flag): one slot of the tuple.
                local = values[signature] = f"v{len(values)}"
                per_client.append(f"    {local} = {argument}")
                client_locals.append(local)
            elif local is None and spec.build_group is not None:
                # Rules of one action over the same sources (the product's and the
                # aggregation input's pseudonyms) share one argument tuple and one call a
                # line, built after the loop, in the place of the first of them.
                local = values[signature] = f"v{len(values)}"
                group = groups.get((rule["action"], argument))
                if group is None:
                    shared = f"a{len(groups)}"
                    compute.append(f"    {shared} = {argument}")
                    group = groups[rule["action"], argument] = (shared, len(compute), [])
                    compute.append("")  # the call: see below
                    if text_out:
                        text_groups.add(shared)
                group[2].append((local, rule["options"], context_for(name, kind, rule, sources)))
            elif local is None:
                local = values[signature] = f"v{len(values)}"
                transform = spec.build(rule["options"], context_for(name, kind, rule, sources))
                if text_out:
                    wrapped = swept(transform, leaks, cache_size)
                elif rule["action"] in _MEMOIZED or _FEW_VALUED_SOURCES.issuperset(sources):
                    wrapped = memoized(transform, cache_size)
                else:  # keyed (pseudonyms), or cheap enough to call
                    wrapped = transform
                namespace[f"f_{local}"] = wrapped
                memo = getattr(wrapped, "memo", None)
                if client_level:
                    per_client.append(f"    {local} = f_{local}({argument})")
                    client_locals.append(local)
                elif sources == ["request.time"] and rule["action"] not in _PER_REQUEST_ACTIONS:
                    # Thousands of requests share a second: one tuple per distinct time.
                    per_second.append(f"    {local} = f_{local}({argument})")
                    second_locals.append(local)
                elif memo is not None:
                    namespace[f"get_{local}"] = memo.get
                    compute.extend(_memo_lookup(local, f"get_{local}", f"f_{local}", argument))
                else:
                    compute.append(f"    {local} = f_{local}({argument})")
            entries.append(f"{out_name!r}: {local}")
            exprs[out_name] = local
        key_field = dest["key"]
        key_expr = "None"
        if key_field is not None and dest["framing"] == "ndjson":
            # NDJSON records carry no key: the event's key only picks its partition, and
            # the publisher reads it as text (key_partition of its UTF-8, which is what
            # the bytes were). A pseudonym is text already, the memo's own str, whose
            # hash is computed once: no str() and encode() a line, nor the bytes' hash
            # in the publisher (520 instructions a line of the pure pipeline; session 18).
            source_expr = exprs[key_field]
            if dest["fields"][key_field]["action"] == "pseudonymize":
                key_expr = source_expr
            else:
                key_expr = keys.get("text " + source_expr, "")
                if not key_expr:
                    key_expr = keys["text " + source_expr] = f"k{len(keys)}"
                    as_text = f"None if {source_expr} is None else str({source_expr})"
                    compute.append(f"    {key_expr} = {as_text}")
        elif key_field is not None:
            # The same value keys several destinations (two published ones keying by
            # one pseudonym): encode it once per line.
            source_expr = exprs[key_field]
            key_expr = keys.get(source_expr, "")
            if not key_expr:
                key_expr = keys[source_expr] = f"k{len(keys)}"
                encoded = f"None if {source_expr} is None else str({source_expr}).encode()"
                compute.append(f"    {key_expr} = {encoded}")
        internal = name == AGGREGATE_INPUT
        assert tuple(exprs) == emitted_fields(dest)  # compile time: rows follow this order
        if internal:
            # A row, not an object: the aggregator reads fields by position (half the
            # bytes through the broker, a third of the encode and decode time).
            body.append(f"    e{index} = [" + ", ".join([*exprs.values(), *_SOURCE_ARGS]) + "]")
        else:
            body.append(f"    e{index} = {{" + ", ".join(entries) + "}")
        # The record timestamp (ms, the bucket's start) is a per-second value too.
        stamp = f"ms{bucket}"
        if stamp not in second_locals:
            per_second.append(f"    {stamp} = (t - t % {bucket}) * 1000")
            second_locals.append(stamp)
        tail.append(f"    append{index}(({key_expr}, dumps(e{index}, option=NL)[:-1], {stamp}))")
        destinations.append(
            CompiledDestination(
                name=name,
                index=index,
                topic=dest["topic"],
                framing=dest["framing"],
                kind=kind,
                key_field=key_field,
                time_bucket=bucket,
                fields=aggregate_row_fields(dest) if internal else emitted_fields(dest),
                internal=internal,
            )
        )
    for (action, _), (shared, call, members) in groups.items():
        # Text values are swept and memoized per argument, like single rules above; the
        # pseudonyms (keyed, not text) memoize themselves.
        text = shared in text_groups
        if len(members) == 1:
            local, options, context = members[0]
            single = REGISTRY[action].build(options, context)
            if text:
                single = swept(single, leaks, cache_size)
                namespace[f"get_{local}"] = single.memo.get  # type: ignore[attr-defined]
                compute[call] = "\n".join(_memo_lookup(local, f"get_{local}", f"f_{local}", shared))
            else:
                compute[call] = f"    {local} = f_{local}({shared})"
            namespace[f"f_{local}"] = single
        else:
            build_group = REGISTRY[action].build_group
            assert build_group is not None
            group_transform = build_group([(o, c) for _, o, c in members])
            names = ", ".join(m[0] for m in members)
            if text:
                group_transform = swept_group(group_transform, leaks, cache_size)
                namespace[f"get_{shared}"] = group_transform.memo.get  # type: ignore[attr-defined]
                lookup = _memo_lookup("m", f"get_{shared}", f"g_{shared}", shared)
                compute[call] = "\n".join([*lookup, f"    {names}, = m"])
            else:
                compute[call] = f"    {names}, = g_{shared}({shared})"
            namespace[f"g_{shared}"] = group_transform
    needs_geo = any(s.startswith("geo.") for s in used)
    needs_agent = any(s in _AGENT_INDEX for s in used)
    needs_language = "request.language" in used
    if needs_geo:
        if geo_lookup is None:
            raise ValueError("rules read geo.* fields but no geo database is configured")
        namespace["geo_lookup"] = geo_lookup
    namespace["agent_parse"] = agent_parse
    namespace["language"] = language

    def lookups(sources: set[str]) -> list[str]:
        out = []
        if any(s.startswith("geo.") for s in sources):
            out.append("    geo = geo_lookup(r.ip)")
        if any(s in _AGENT_INDEX for s in sources):
            out.append("    ua = agent_parse(r.user_agent)")
        if "request.language" in sources:
            out.append("    lang = language(r.language)")
        return out

    head = ["    t = r.time", *lookups(request_sources)]
    functions: list[str] = []
    if client_locals:
        # What the client values are computed from: the memo key.
        key_attrs = [
            attr
            for attr, reads in (
                ("r.ip", {"client.ip", *_GEO_INDEX}),
                ("r.user_agent", {"agent.original", *_AGENT_INDEX}),
                ("r.language", {"request.language"}),
            )
            if client_sources & reads
        ]
        function, lines = _memo_group(
            "client", "(" + ", ".join(key_attrs) + ",)",
            [*lookups(client_sources), *per_client], client_locals, namespace, leaks, cache_size,
        )  # fmt: skip
        functions += function
        head += lines
    if second_locals:
        function, lines = _memo_group(
            "second", "t", ["    t = key", *per_second], second_locals, namespace, leaks, cache_size
        )
        functions += function
        head += lines
    appends = ", ".join(f"append{i}" for i in range(len(destinations)))
    # The line's coordinates come last, with defaults: only the internal rows use them.
    signature = f"r, {appends}, " + ", ".join(f"{a}=None" for a in _SOURCE_ARGS)
    source = "\n".join([*functions, f"def emit({signature}):", *head, *compute, *body, *tail])
    exec(compile(source, "<logfog rules>", "exec"), namespace)
    log.debug("generated rules code:\n%s", source)
    client_memo = namespace.get("client_memo")
    return Compiled(
        destinations=tuple(destinations), emit=namespace["emit"], needs_geo=needs_geo,
        needs_agent=needs_agent, needs_language=needs_language,
        forget_clients=client_memo.clear if client_memo is not None else lambda: None,
    )  # fmt: skip
