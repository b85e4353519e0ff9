"""Stage 3 of aggregation: merge partials of a window, gate by k, emit rows.

:class:`WindowMerger` collects the :class:`~streams.aggregate.partial.Partial` of every
stage-2 instance for a window, sums them (distinct-visitor counts add exactly because
the input is partitioned by visitor) and returns JSON-ready rows that pass the
minimum-group-size gate (privacy rules 4, 9, 15).

Completeness: each stage-2 instance emits its partials in window order, always ending
a ``close_ready`` batch with a partial for its newest closed window (an empty one if
it had no events there). So a partial from partition p for a window ending at E tells
the merger that p has closed every window ending <= E. A window is complete when each
of the P partitions has covered it, i.e. sent its partial for it or a later one (this
is "all P partials arrived, empty ones count", without forcing idle partitions to send
one partial per empty window). Partials of one source partition must reach the merger
in order, which Kafka gives when the partials topic is keyed by source partition; a
re-sent partial for a pending window *replaces* the earlier copy, one for a window
already emitted is ignored (``stats["stale"]``), so no window is emitted twice (but
see "Publication" below for the one way its rows are published again).
Windows with no events at all produce no rows, and neither do windows with fewer than
k distinct visitors: a row saying "below k" would tell such a window from an empty one,
i.e. that somebody (a group smaller than k) was there then.

The gate, per (window, output, dimension), with T = the window's distinct visitors:

1. Cells with >= k visitors are candidates; smaller ones (and stage 2's cardinality
   overflow) are folded into ``__other__``. Its distinct visitors are computed exactly
   from the partials' tails (a visitor in several small cells counts once). A tail
   holds the cells below *stage 2's* k: a partial made before k was raised (pending
   across the restart, or still on the topic) lacks the cells between the two ks, so
   a fold holding one of them (:func:`untailed`) has no exact count: it is published
   only if a lower bound the merger knows (its biggest cell, T minus the published
   cells) is >= k, else secondary suppression.
2. Subtraction checks, each "difference must be 0 or >= k", in visitors:
   a. ``T - cell`` for every published cell (the total contains every cell);
   b. ``T - other`` (the total contains ``__other__``);
   c. ``other`` itself, i.e. the unpublished mass ``total - published cells``: it
      must have 0 or >= k visitors (< k -> not publishable on its own).
   A cell failing (a) is folded into ``__other__``; if (b) or (c) fails the smallest
   published cell is folded too (secondary suppression), and the checks repeat. Once a
   cell with >= k visitors has been folded (a *forced* fold), ``__other__`` certainly
   has >= k visitors, but its exact distinct count is no longer derivable from
   partials; (b) and (c) on the exact count then do not apply, but (b') does:
   b'. (b) on the most the published numbers leave outside the fold: ``T -
   visitors_min`` must be 0 or >= k, ``visitors_min`` (:func:`fold_min`) being the
   least the fold can hold as anyone can tell: k (it is published), T minus the
   published cells (every visitor has a value in every dimension), its requests /
   cap (``max_events_per_visitor``). Else the smallest published cell is folded too,
   and the checks repeat. Whatever bounds the fold from above (T; its requests, as
   each of its visitors has one there; the merger's own counts), T - fold is then a
   range that reaches 0 or k: never certainly 1..k-1, nor "none or fewer than k".
   (An audit, session 16: 13 visitors on "/", 10 of them on /pricing, folded by (a):
   the fold's 10 requests made it at most 10 visitors, so exactly 10, and T - 10 = 3
   was the difference (a) withheld. Now T - k = 3 folds "/" too.) So in a window of
   k < T < 2k, a dimension with a fold publishes no cell (a cell there has all T).
   Every fold is published alike, forced or not: ``visitors: null`` and
   ``visitors_min``. Until session 16 a fold published its exact count when the
   merger had one and ``null`` otherwise, so ``null`` said "forced": DE 20, FR 10
   (folded to cover IS) and IS 1 published ``__other__`` null beside T = 31, i.e. 11
   by one value per visitor, i.e. a cell of >= 10 and exactly one visitor below k
   (an audit).
   Why a fold's numbers give no group below k: a forced fold holds a cell C of >= k
   visitors, so C's requests are >= k too, and "fold requests - k" (or "fold - k" by
   one value per visitor) would bound the rest, the group C was folded to cover. That
   subtraction needs to know the fold was forced, and no published number tells: the
   same rows come from a fold of cells all below k. Take F = ``visitors_min``
   visitors in disjoint cells below k (F >= k, so two or more): F is at most the
   true count, so at most the requests, and at least requests / cap, so the requests
   fit; (c) holds (F >= k), (b) and (b') hold (T - F = T - visitors_min), so the gate
   publishes the same cells and fold. (With one value per visitor, visitors_min is
   the fold's exact size, T - published cells.) Requests are additive, so the fold's
   are published for the rows to add up; their other use, bounding its visitors, is
   in (b'). A fold's ``visitors`` is ``null`` even when everything is folded (T).
   If no candidate survives, everything is ``__other__`` (= T). If T < k, nothing of
   the window is published (as if it had no events).
3. ``place`` adapts precision top-down: countries go through 1-2 like any dimension.
   A region is published only under a published country and a city only under a
   published region, each needing >= k visitors; a region or city below k is not
   published and its visitors stay in (are reported as) the enclosing region or
   country, whose counts always include all of its sub-places. For every published
   sub-place D and each published ancestor A (region, country and T):
   d. ``A - D`` must be 0 or >= k visitors;
   e. for each published parent, the part not covered by its published children must
      have 0 requests or at least k visitors, checked with the lower bound
      ``visitors(parent) - sum(visitors(children))`` (sound: it never overestimates).
   A child failing (d) is not published; if (e) fails the smallest child is dropped,
   until both hold (dropping a region drops its cities).

What the subtraction checks cover: the containments the merger knows from the
numbers it holds, within one window and dimension: the total contains every cell and
the fold (a, b, c), a place contains its sub-places (d, e). Known limits, not checked:

- Siblings. A visitor can touch several values of one dimension (routes, status
  classes; even browsers or countries over a window), so the visitor sets of two
  published sibling cells may overlap, and one may even contain the other: then
  ``bigger - smaller`` is a set of visitors, possibly fewer than k. Whether it is
  cannot be known from counts (stage 2 keeps no cross-cell identities beyond the
  tails of small cells), so it is not checked.
- Across dimensions, windows and outputs, e.g. a day row minus the published hour
  rows of that day, or an ops row minus a product row.
- Sums: requests are additive, visitor counts are not, so sums of several published
  cells are only bounded, never checked for exact equality.
- ``bytes`` is a sum over requests, like ``requests``: one visitor's large responses
  can make most of a cell's bytes.
- Measures across rows: each published percentile has k visitors' values on each
  side and is drawn at random (below), so two percentiles over the same visitors but
  one (a summary and a cell that holds all but one visitor's first request) are two
  independent draws whose odds that visitor's value changes by e**EPSILON at most;
  but several rows hold each visitor's values, and their draws add up (no budget is
  kept across rows, windows or outputs). ``bot_share`` is checked (see below), within
  one window and dimension.
- What the pattern of withheld bot shares implies: a cell's share is withheld when its
  bots or others number 1..k-1 (or to protect another), so ten withheld cells beside a
  rest of ten bots are one bot each (an audit, session 16). The checks compare sums,
  not the ranges each withheld cell can take. Bots are mostly crawlers, but one
  "bot" can be a person's script.
- Value domains and side knowledge of the fold: whoever knows which values it holds
  (few values of a small domain, such as status classes or a site's routes, or one:
  "/pricing" alone) may know that no k visitors fit in them below k each, i.e. that
  it was forced, and then it holds a group of 1..k-1 (T - a cell it holds, or the
  rest). Whoever knows a folded cell had >= k visitors (another window) bounds the
  rest by the fold's requests - k. Rows do not say which values a fold holds.
- Traffic made to single someone out: k - 1 visitors made up by an attacker (one
  address with k - 1 user agents of one browser family) beside a victim's rare value
  make a cell of k. Counting distinct visitors cannot tell them from people.

Measures are per visitor: a cell's ``p50_ms``/``p95_ms``/``p99_ms`` and ``bot_share``
count one value per visitor, that of the visitor's first counted request in the cell
(the first to arrive: stage 2 keeps which one came first; a visitor's lines from several
raw partitions may arrive out of time order); ``requests`` and ``bytes`` count every
request. With per-event values one visitor at the contribution cap (100 requests) made
most of a 10-visitor cell's values and decided its median and bot share. A percentile is
published only when at least k values (visitors) lie at or below its nearest rank and
at least k at or above it, else it is ``null``: for k = 10 the median needs 19
visitors, p95 180 and p99 900 (below 20 values the nearest-rank p95 *is* the maximum,
one visitor's own value). The value published is a bucket drawn by the exponential
mechanism around that rank (:func:`~streams.aggregate.histogram.quantile`, epsilon 2):
on a busy cell the nearest rank's bucket or a neighbour, and never a value one visitor
decides (each deterministic rule tried published one: the nearest rank, the mean of the
2k - 1 values around it, the two ends of those; a review and two audits). Rows are
published once (a republished window repeats its checkpointed rows), and a window's
summaries, one per dimension, share one draw (they drew one each: an audit). Draws
are keyed (a random key per window, created with its first partial and checkpointed
with its partials; see :class:`WindowMerger`) and made from the row and its
histogram, so a restored merger merging the same partials again publishes the same
values: two independent draws of one histogram would average toward its nearest
rank. What is hashed names the row: keyed by the histogram alone, a cell of an
attacker's visitors plus one at a guessed value repeated a victim's cell's value
exactly when the guess was right (an audit, session 17); keys that outlive a run
(the file command's, derived from its key secret and its input) gave the same
oracle across runs in three ways, so each run draws anew. Two owners can still
draw apart: a merger paused past its turn that completes a window from partials no
checkpoint held when the next owner restored (no fencing; the rows are revision 1
both).
``bot_share`` is the share of the cell's visitors whose first counted request there
came from a bot, published only when the bots and the others
are each none or at least k. With visitors published, share * visitors is a row's bot
count, so the shares are also gated against each other (:func:`gate_bot_share`):
the summary's bots minus a cell's, and minus all cells' whose share is published (what
the withheld shares and ``__other__`` hold together), must each be 0 or >= k, in bots
and in others; else further cells' shares are withheld (complementary suppression).
Before, a summary of 11 bots in 40 visitors beside DE's 10 in 30 gave FR's withheld
single bot (an audit). A summary's measures are over each visitor's first request
in the window. ``__other__`` rows have no measures (``null``): a visitor in several
folded cells has a value in each, and the merger, holding counts only, cannot keep just
one. A window with a partial from before this rule (an upgrade) publishes no measures.

Rows (``version``: the row schema and gating rules, 4 since percentiles and the fold's
totals changed (below; 3: since bot shares are gated against each other; 2: since
measures are per visitor; 1: per request);
``revision``: 1 when a window is first published, higher when it is published
again): one ``kind: "cell"`` row per published (dimension, value),
``place`` rows also carry ``level`` (country/region/city) and values like
``"DE/Bavaria/Munich"``; one ``__other__`` row when cells were folded (``visitors``
always ``null``, with ``visitors_min``); one ``kind: "summary"`` row per dimension
with the totals and the fold (``other: {requests, visitors: null, visitors_min}``;
until version 4 ``other: {requests, visitors}`` with the exact count when derivable,
and also ``cells`` and ``secondary``, the number of cells folded and of those with k
visitors, which gave the size of a group below k: 2 cells, 1 secondary and 11
visitors are 10 and 1). Version 1 summaries also had
``suppressed: {cells, requests, visitors, below_k}``: null in a window below k (now
not published at all) and 0 in every other (with T >= k the fold is always
published), so it is gone.
Late and capped counts stay in :attr:`WindowMerger.stats`: a capped count could
describe a single heavy visitor. Stage 2 drops a late or capped event from every
output at once and counts it in one output's partial only, so these sums count
events (not events times outputs), and nested windows of different outputs hold the
same events: a day minus its hours (or an hour minus its ops windows) is not the late
events, or a heavy visitor's capped requests.

Publication: the worker checkpoints the merger *with* the rows it is about to publish
(:attr:`WindowMerger.outbox`), publishes them, then checkpoints again without them. A
new owner of the partials partition restores the latest checkpoint (on every
assignment) and publishes a left-over outbox again with ``revision`` + 1. So a window
is never published twice with different numbers without a higher revision: readers
keep, per (output, window, window_start, dimension), the rows of the highest revision.
Outbox rows of an output whose spec changed across the restart (a raised k, or any
other field) or that the config dropped are withheld, not republished: they were
gated under the old spec, and the partials that made them are gone, so they cannot
be gated again. Such a window was published by the previous owner, or is lost: the
rare crash between the two checkpoints, combined with a config change of that
output (``stats["withheld"]`` counts the rows).

>>> from streams.aggregate.partial import PartialAggregator
>>> from streams.aggregate.spec import AggregateSpec
>>> spec = AggregateSpec("demo", 3600, ("browser",), k=3, allowed_lateness_seconds=0)
>>> agg = PartialAggregator([spec], partition=0, partitions=1)
>>> browsers = ["Firefox"] * 4 + ["Chrome"] * 3 + ["Safari"] * 2 + ["Lynx"]
>>> events = [{"time": 0, "visitor": f"v{i}", "browser": b} for i, b in enumerate(browsers)]
>>> events.append({"time": 3600, "visitor": "v0", "browser": "Firefox"})  # closes hour 0
>>> _ = agg.add(events, offset=0)
>>> merger = WindowMerger([spec])
>>> rows = [row for p in agg.close_ready() for row in merger.add(p)]
>>> [(r["kind"], r["value"], r["visitors"]) for r in rows]
[('cell', 'Chrome', 3), ('cell', 'Firefox', 4), ('cell', '__other__', None), ('summary', None, 10)]
>>> rows[-1]["other"]  # 10 - 7 published: 3 (not said whether a cell of k was folded)
{'requests': 3, 'visitors': None, 'visitors_min': 3}
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.aggregate import histogram
from streams.aggregate.partial import SEP, Cell, Partial, Tail
from streams.aggregate.spec import OTHER, PERCENTILES, PLACE, AggregateSpec, reconcile

log = logging.getLogger("logfog.aggregate")

#: 4: percentiles drawn by the exponential mechanism (not the mean of the 2k - 1
#: values around the rank), bot shares gated against a withheld summary share too, no
#: fold ``cells`` or ``secondary`` in summaries; every fold's ``visitors`` null, with
#: ``visitors_min`` from published numbers (in the summary's ``other`` too), and check
#: (b') on ``T - visitors_min`` (a fold's requests pinned its visitors).
#: 3: ``bot_share`` gated against the summary's (complementary suppression), folds
#: counted exactly only from complete tails, one fate per event for all outputs.
#: 2: measures per visitor, bracketed by k (1: per request, one visitor could decide
#: them); no rows for windows below k, no ``suppressed`` in summaries. A left-over
#: outbox of an older version was gated by older rules: withheld, not republished
#: (:meth:`WindowMerger.restore`).
ROW_VERSION = 4
_LEVELS = ("country", "region", "city")


def union_visitors(tails: Iterable[Tail], keys: set[str]) -> int:
    """Distinct visitors having at least one event in any cell of ``keys``.

    Exact when every key is a tail cell in every partition (true for cells with < k
    visitors overall, and for ``__other__``).

    >>> union_visitors([((("a",), 2), (("a", "b"), 1)), ((("b",), 4),)], {"b"})
    5
    """
    return sum(n for tail in tails for values, n in tail if not keys.isdisjoint(values))


@dataclass
class Gate:
    """The gate's decision for one dimension's top-level cells."""

    published: list[str]
    folded: list[str]  # into __other__ (or, when below_k, suppressed)
    #: The merger's exact count, None when not derivable (a cell of >= k folded, or an
    #: untailed one); never published: a fold's ``visitors`` is always null.
    other_visitors: int | None
    #: The fold's ``visitors_min``: the lower bound anyone can compute from the published
    #: numbers (:func:`fold_min`), the same way for every fold.
    other_min: int = 0
    secondary: int = 0  # cells with >= k visitors folded to block subtraction
    below_k: bool = False
    sub_published: list[str] = field(default_factory=list)  # place: regions and cities

    @property
    def other_publishable(self) -> bool:
        return bool(self.folded) and not self.below_k


def _smallest(keys: Iterable[str], cells: Mapping[str, Cell]) -> str:
    return min(keys, key=lambda key: (cells[key].visitors, cells[key].requests, key))


def _violates(difference: int, k: int) -> bool:
    """A published difference of 1..k-1 visitors isolates a small group."""
    return 0 < difference < k


def untailed(partials: Sequence[Partial], dimension: str) -> frozenset[str]:
    """Top-level cells some partial counted visitors in but left out of its tail: stage
    2 tails the cells below *its* k (see :mod:`~streams.aggregate.partial`), so after k
    was raised, a partial made under the lower k (pending in a restored merger, or
    still on the partials topic) lacks the cells between the two ks. A fold holding one
    of them has no exact distinct count (:func:`union_visitors` would leave its
    visitors out): :func:`gate_cells` treats it as not derivable. Read from the tails
    themselves, so it holds for partials of any version and any k.

    >>> from streams.aggregate.partial import DimensionPartial
    >>> part = DimensionPartial({"a": Cell(12, 12), "b": Cell(3, 3)}, ((("b",), 3),))
    >>> p = Partial("t", 3600, 0, 0, 1, 15, 15, 0, 0, {"browser": part})
    >>> sorted(untailed([p], "browser"))
    ['a']
    """
    out: set[str] = set()
    for p in partials:
        part = p.dimensions.get(dimension)
        if part is None:
            continue
        tailed = {value for values, _ in part.tail for value in values}
        out.update(
            key
            for key, cell in part.cells.items()
            if cell.visitors and SEP not in key and key not in tailed
        )
    return frozenset(out)


def fold_min(requests: int, published: int, total: int, k: int, cap: int | None) -> int:
    """The least a fold's distinct visitors can be, as anyone can tell from published
    numbers (``requests``: the fold's, ``published``: the published top-level cells'
    visitors summed, ``cap``: ``max_events_per_visitor``, one for all outputs): k (a
    fold is published only then), T minus the published cells (every visitor has a
    value in every dimension), its requests / cap.

    >>> fold_min(requests=11, published=20, total=31, k=10, cap=100)  # audit F1
    11
    >>> fold_min(requests=10, published=13, total=13, k=10, cap=100)  # audit F2
    10
    """
    return max(k, total - published, -(-requests // cap) if cap else 0)


def gate_cells(
    cells: Mapping[str, Cell],
    tails: Sequence[Tail],
    total: int,
    k: int,
    untailed: frozenset[str] = frozenset(),
    cap: int | None = None,
) -> Gate:
    """Decide which cells to publish (checks a-c of the module docstring). ``untailed``:
    cells missing from some partition's tail (:func:`untailed`): a fold holding one has
    no exact count, and must be >= k by a lower bound the merger knows. ``cap``: the
    output's ``max_events_per_visitor``, which bounds the fold's visitors from below by
    its requests (:func:`fold_min`).

    >>> cells = {"DE": Cell(40, 30), "FR": Cell(20, 12), "IS": Cell(1, 1)}
    >>> tails = [((("IS",), 1),)]
    >>> g = gate_cells(cells, tails, total=43, k=10)   # IS alone (1 visitor) < k
    >>> g.published, g.folded, g.other_visitors, g.other_min, g.secondary
    (['DE'], ['FR', 'IS'], None, 13, 1)
    >>> gate_cells(cells, tails, total=9, k=10).below_k
    True
    >>> cells = {"C": Cell(60, 60), "S": Cell(12, 12), "E": Cell(15, 15)}  # S: no tail
    >>> g = gate_cells(cells, [((("E",), 15),)], total=87, k=20, untailed=frozenset("S"))
    >>> g.published, g.other_visitors, g.other_min
    (['C'], None, 27)
    """
    if total < k:
        return Gate([], sorted(cells), None, below_k=True)
    published = {key for key, c in cells.items() if key != OTHER and c.visitors >= k}
    forced: set[str] = set()
    other_visitors: int | None

    def fold_smallest() -> None:
        key = _smallest(published, cells)
        published.discard(key)
        forced.add(key)

    def public_min(fold: Iterable[str]) -> int:
        # From published numbers only, the same way for every fold, forced or not (the
        # merger's own counts of folded cells would tell a forced fold, or undo check
        # a: audit F1).
        requests = sum(cells[key].requests for key in fold)
        return fold_min(requests, sum(cells[key].visitors for key in published), total, k, cap)

    while True:
        bad = {key for key in published if _violates(total - cells[key].visitors, k)}
        if bad:
            published -= bad
            forced |= bad
            continue
        rest = {key for key in cells if key not in published}
        if not rest:
            other_visitors = 0
            break
        if not published:
            other_visitors = total  # every visitor has some event in the fold
            break
        if forced:
            other_visitors = None  # >= k for sure, exact count not derivable
        elif not untailed.isdisjoint(rest):
            # Some partition tailed these cells under a lower k: no exact count. The fold
            # holds at least its biggest cell and what the published cells leave out of
            # T; unless that bound is >= k, fold the smallest published cell as well
            # (then the fold is >= k for sure, as above).
            bound = max(cells[key].visitors for key in rest)
            bound = max(bound, total - sum(cells[key].visitors for key in published))
            if bound < k:
                fold_smallest()
                continue
            other_visitors = None
        else:
            other_visitors = union_visitors(tails, rest)
            if _violates(other_visitors, k) or _violates(total - other_visitors, k):
                fold_smallest()
                continue
        # Check (b') on the most that can be outside the fold, T - its lower bound:
        # else its requests (or the merger's count) can pin T - fold in 1..k-1 (audit
        # F2: a fold of k requests has exactly k visitors).
        if _violates(total - public_min(rest), k):
            fold_smallest()
            continue
        break
    folded = sorted(key for key in cells if key not in published)
    return Gate(
        sorted(published),
        folded,
        other_visitors,
        other_min=public_min(folded) if folded else 0,  # the published visitors_min
        secondary=len(forced),
    )


def gate_place(
    cells: Mapping[str, Cell],
    tails: Sequence[Tail],
    total: int,
    k: int,
    untailed: frozenset[str] = frozenset(),
    cap: int | None = None,
) -> Gate:
    """:func:`gate_cells` on countries, then regions and cities (checks d-e).

    >>> S = SEP
    >>> cells = {"DE": Cell(60, 50), f"DE{S}BY": Cell(30, 25), f"DE{S}BY{S}Munich": Cell(22, 20),
    ...          f"DE{S}BY{S}Passau": Cell(2, 1), f"DE{S}BE": Cell(30, 25)}
    >>> g = gate_place(cells, [], total=50, k=10)
    >>> g.published, [key.replace(S, "/") for key in g.sub_published]
    (['DE'], ['DE/BE', 'DE/BY'])
    """
    countries = {key: c for key, c in cells.items() if SEP not in key}
    gate = gate_cells(countries, tails, total, k, untailed, cap)
    children: dict[str, list[str]] = {}
    for key in cells:
        if SEP in key:
            children.setdefault(key.rsplit(SEP, 1)[0], []).append(key)

    def descend(parent: str, ancestors: list[int]) -> None:
        candidates = [c for c in children.get(parent, ()) if cells[c].visitors >= k]
        chosen = _select_children(cells, parent, candidates, ancestors, k)
        for child in chosen:
            gate.sub_published.append(child)
            descend(child, [*ancestors, cells[child].visitors])

    for country in gate.published:
        descend(country, [total, cells[country].visitors])
    gate.sub_published.sort()
    return gate


def _select_children(
    cells: Mapping[str, Cell], parent: str, candidates: list[str], ancestors: list[int], k: int
) -> list[str]:
    chosen = set(candidates)
    while chosen:
        bad = {c for c in chosen if any(_violates(a - cells[c].visitors, k) for a in ancestors)}
        if bad:
            chosen -= bad
            continue
        rest_requests = cells[parent].requests - sum(cells[c].requests for c in chosen)
        rest_min = cells[parent].visitors - sum(cells[c].visitors for c in chosen)
        if rest_requests > 0 and rest_min < k:
            chosen.discard(_smallest(chosen, cells))
            continue
        break
    return sorted(chosen)


def iso_utc(epoch: int) -> str:
    """``2024-03-04T10:00:00Z`` for a window start.

    >>> iso_utc(1709546400)
    '2024-03-04T10:00:00Z'
    """
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _share_publishable(bots: int, visitors: int, k: int) -> bool:
    """A row's own bot_share rule: bots and others each none or at least k."""
    return visitors > 0 and not _violates(bots, k) and not _violates(visitors - bots, k)


def gate_bot_share(
    cells: Mapping[str, Cell], keys: Iterable[str], parent: tuple[int, int], k: int
) -> set[str]:
    """The cells of ``keys`` (published rows) whose ``bot_share`` may be published
    beside their parent's (the summary for top-level cells, the enclosing place for a
    region or city): complementary suppression on the table cells x {bots, others}.

    With visitors published, ``share * visitors`` is a row's bot count, so a parent's
    bots minus its cells' bots is the bots of the rest (for a dimension with one value
    per visitor, exactly; for routes, "the bots who never requested X"). Each cell must
    pass the row's own rule; then, in bots and in others (visitors - bots) alike:

    a. ``parent - cell`` must be 0 or >= k for every cell whose share is published;
    c. ``parent - sum(published cells)``, the rows whose share is withheld and the
       ``__other__`` fold together, must be 0 or >= k: otherwise the share of the
       smallest published cell with bots (others) is withheld too, and the checks
       repeat (a withheld share is never left alone to be recovered).

    ``parent``: its (bots, others), whether its own share is published or not. A
    withheld parent share used to leave the cells to their own rule, but its withheld
    side (fewer than k bots, or others) then lay in the cells whose share was withheld:
    30 bots and 2 people in a window, every cell but one at 1.0, located the two (an
    audit, session 16). Checked against the true parent, such cells fail (a).

    >>> cells = {"DE": Cell(30, 30, bots=10), "FR": Cell(10, 10, bots=1)}
    >>> sorted(gate_bot_share(cells, ["DE", "FR"], (10, 30), k=10))  # FR: 1 bot < k
    ['DE']
    >>> sorted(gate_bot_share(cells, ["DE", "FR"], (11, 29), k=10))  # 11 - 10 = FR's bot
    []
    >>> bots = {"US": Cell(20, 20, bots=20), "DE": Cell(12, 12, bots=10)}
    >>> sorted(gate_bot_share(bots, ["US", "DE"], (30, 2), k=10))  # 2 people: in DE
    []
    >>> cells["IT"] = Cell(20, 20, bots=10)
    >>> sorted(gate_bot_share(cells, ["DE", "FR", "IT"], (21, 39), k=10))  # rest: 1 bot
    ['DE']
    """
    shared = {key for key in keys if _share_publishable(cells[key].bots, cells[key].visitors, k)}
    bots, others = parent

    def size(key: str) -> tuple[int, str]:
        return (cells[key].visitors, key)

    while shared:
        bad = {
            key
            for key in shared
            if _violates(bots - cells[key].bots, k)
            or _violates(others - (cells[key].visitors - cells[key].bots), k)
        }
        if bad:
            shared -= bad
            continue
        rest_bots = bots - sum(cells[key].bots for key in shared)
        rest_others = others - sum(cells[key].visitors - cells[key].bots for key in shared)
        if _violates(rest_bots, k):
            shared.discard(min((key for key in shared if cells[key].bots), key=size))
        elif _violates(rest_others, k):
            shared.discard(
                min((key for key in shared if cells[key].visitors > cells[key].bots), key=size)
            )
        else:
            break
    return shared


def _bot_shares(cells: Mapping[str, Cell], gate: Gate, bots: int, total: int, k: int) -> set[str]:
    """:func:`gate_bot_share` from the summary down: top-level cells against the
    summary, then a place's regions against their country and its cities against the
    region. A sub-place's share is published only under a parent whose share is (its
    difference to every further ancestor is then the sum of checked differences)."""
    shared = gate_bot_share(cells, gate.published, (bots, total - bots), k)
    children: dict[str, list[str]] = {}
    for key in gate.sub_published:
        children.setdefault(key.rsplit(SEP, 1)[0], []).append(key)
    parents = list(shared)
    while parents:
        parent = parents.pop()
        if parent not in children:
            continue
        cell = cells[parent]
        below = gate_bot_share(cells, children[parent], (cell.bots, cell.visitors - cell.bots), k)
        shared |= below
        parents.extend(below)
    return shared


def _measures(
    spec: AggregateSpec,
    cell: Cell,
    visitors: int | None,
    measured: bool,
    drawn: Mapping[str, float | None],
    share: bool = True,
) -> dict[str, Any]:
    """A row's numbers. ``cell.hist`` and ``cell.bots`` hold one value per visitor (see
    the module docstring), ``measured``: whether they can be published at all,
    ``drawn``: its percentiles (:func:`_percentiles`), ``share``: whether ``bot_share``
    may (:func:`gate_bot_share`)."""
    row: dict[str, Any] = {"requests": cell.requests, "visitors": visitors}
    if "bytes" in spec.measures:
        row["bytes"] = cell.bytes
    row.update(drawn)
    if "bot_share" in spec.measures:
        # Only when the bots and the others are each none or at least k: else the
        # share names a group of fewer than k (one "bot" can be a person's curl).
        publish = (
            measured
            and share
            and visitors
            and all(n == 0 or n >= spec.k for n in (cell.bots, visitors - cell.bots))
        )
        row["bot_share"] = round(cell.bots / visitors, 4) if publish and visitors else None
    return row


def _percentiles(
    spec: AggregateSpec,
    hist: Mapping[int, int],
    measured: bool,
    key: bytes | None = None,
    row: Sequence[str | int] = (),
) -> dict[str, Any]:
    """The spec's percentiles of ``hist``, each a random draw keyed by ``key`` and made
    from ``row``, what identifies the published row
    (:func:`~streams.aggregate.histogram.quantile`)."""
    return {
        name: histogram.quantile(hist, q, spec.k, key, row) if measured else None
        for name, q in PERCENTILES.items()
        if name in spec.measures
    }


def _sum(cells: Mapping[str, Cell], keys: Iterable[str]) -> Cell:
    total = Cell()
    for key in keys:
        total.add(cells[key])
    return total


def merge_window(
    spec: AggregateSpec, partials: Sequence[Partial], draw_key: bytes | None = None
) -> list[dict[str, Any]]:
    """Final rows of one complete window from its partials (one per source partition);
    ``draw_key``: the window's percentile draws' key (see :class:`WindowMerger`)."""
    total = sum(p.visitors for p in partials)
    if total < spec.k:  # no events, or too few visitors to publish anything: no rows
        return []
    start = partials[0].window_start
    # Partials from code that kept per-event measures (an upgrade's in-flight windows)
    # would let one visitor weigh more than one: no measures for their window.
    measured = all(p.per_visitor for p in partials)
    # The summaries' measures: each visitor's first event in the window (the sums of
    # the cells' would count a visitor once per cell it touched).
    window_bots = sum(p.bots for p in partials)
    window_hist: dict[int, int] = {}
    for p in partials:
        histogram.merge(window_hist, p.hist)
    # Drawn once for the window: each dimension's summary repeats them (a draw per
    # summary gave four draws of one histogram in an ops window; an audit).
    identity = (spec.name, spec.window_label, start)
    window_percentiles = _percentiles(spec, window_hist, measured, draw_key, (*identity, "summary"))
    base = {
        "version": ROW_VERSION,
        "revision": 1,
        "output": spec.name,
        "window": spec.window_label,
        "window_start": iso_utc(start),
    }
    rows: list[dict[str, Any]] = []
    for dim in spec.dimensions:
        cells: dict[str, Cell] = {}
        tails: list[Tail] = []
        for p in partials:
            part = p.dimensions.get(dim)
            if part is None:
                continue
            tails.append(part.tail)
            for key, cell in part.cells.items():
                cells.setdefault(key, Cell()).add(cell)
        top = [key for key in cells if SEP not in key]
        gate = (gate_place if dim == PLACE else gate_cells)(
            cells, tails, total, spec.k, untailed(partials, dim), spec.max_events_per_visitor
        )
        head = {**base, "dimension": dim}
        totals = _sum(cells, top)
        shares = (
            _bot_shares(cells, gate, window_bots, total, spec.k)
            if measured and "bot_share" in spec.measures
            else set()
        )
        for key in sorted([*gate.published, *gate.sub_published]):
            row = {**head, "kind": "cell", "value": key.replace(SEP, "/")}
            if dim == PLACE:
                row["level"] = _LEVELS[key.count(SEP)]
            cell = cells[key]
            drawn = _percentiles(spec, cell.hist, measured, draw_key, (*identity, dim, key))
            row.update(_measures(spec, cell, cell.visitors, measured, drawn, key in shares))
            rows.append(row)
        other = _sum(cells, gate.folded)
        if gate.folded:
            row = {**head, "kind": "cell", "value": OTHER}
            if dim == PLACE:
                row["level"] = "country"
            # No measures: a visitor in several folded cells has one value in each, and
            # the merger holds no identities to keep only one (see the module docstring).
            # Every fold alike: visitors null, the bound anyone can compute (audit F1).
            row.update(_measures(spec, other, None, False, _percentiles(spec, {}, False)))
            row["visitors_min"] = gate.other_min
            rows.append(row)
        summary = {**head, "kind": "summary", "value": None}
        totals.bots, totals.hist = window_bots, window_hist
        summary.update(_measures(spec, totals, total, measured, window_percentiles))
        summary.update(
            published_cells=len(gate.published) + len(gate.sub_published),
            # The fold's totals only: how many cells it holds, and how many of them had
            # k visitors (secondary suppression), gave the sizes of groups below k by
            # subtraction (an audit, session 16: ten one-visitor countries in an hour).
            # Its visitors: null with the bound, like the __other__ row's (audit F1).
            other={"requests": other.requests, "visitors": None, "visitors_min": gate.other_min}
            if gate.folded
            else None,
        )
        rows.append(summary)
    return rows


@dataclass
class _OutputState:
    partitions: int | None = None
    coverage: dict[int, int] = field(default_factory=dict)  # partition -> closed-through
    pending: dict[int, dict[int, Partial]] = field(default_factory=dict)  # start -> p -> partial
    finalized_through: int | None = None
    draw_keys: dict[int, bytes] = field(default_factory=dict)  # start -> its draws' key


class WindowMerger:
    """Stage 3: one instance for all partials of the given specs (or one per spec)."""

    def __init__(self, specs: Sequence[AggregateSpec]) -> None:
        self.specs = {s.key: s for s in specs}
        if len(self.specs) != len(specs):
            raise ValueError("duplicate (name, window) in specs")
        self._state = {key: _OutputState() for key in self.specs}
        #: partials received/replaced/ignored, windows published (one below k is not,
        #: like an empty one: the status page shows this), late/capped events.
        self.stats = dict.fromkeys(
            ("partials", "replaced", "stale", "windows", "late", "capped", "republished",
             "withheld", "unconfigured"),
            0,
        )  # fmt: skip
        #: Rows computed but not yet known to be on the output topic (see app.py's
        #: merge agent: checkpointed with them before they are published).
        self.outbox: list[dict[str, Any]] = []

    def add(self, partial: Partial) -> list[dict[str, Any]]:
        """Take one partial; return the rows of every window it completes (else [])."""
        spec = self.specs.get(partial.key)
        if spec is None:
            # An output the config no longer publishes (aggregates.windows narrowed; its
            # partials stay on the topic a while): not an unreadable record.
            self.stats["unconfigured"] += 1
            return []
        state = self._state[partial.key]
        if state.partitions is None:
            state.partitions = partial.partitions
        elif state.partitions != partial.partitions:
            raise ValueError(
                f"{partial.output}: partial says {partial.partitions} partitions, "
                f"expected {state.partitions}"
            )
        self.stats["partials"] += 1
        end = partial.window_end
        if state.finalized_through is not None and end <= state.finalized_through:
            # A replay's copy (a stage 2 restored from an older checkpoint): its late
            # events were counted with the original.
            self.stats["stale"] += 1
            return []
        slot = state.pending.get(partial.window_start)
        if slot is None:
            slot = state.pending[partial.window_start] = {}
            # The window's draw key (see the module docstring): random, checkpointed
            # with the window's partials and dropped once it is merged, so a key read
            # from a checkpoint opens only the windows then pending, whose partials
            # (exact counts, histograms) lie beside it on the state and partials
            # topics; superseded checkpoints keep it until compaction or retention.
            state.draw_keys[partial.window_start] = secrets.token_bytes(32)
        if partial.partition in slot:
            self.stats["replaced"] += 1
            self.stats["late"] -= slot[partial.partition].late  # the copy counts them
        self.stats["late"] += partial.late
        slot[partial.partition] = partial
        if end > state.coverage.get(partial.partition, end - 1):
            state.coverage[partial.partition] = end
        if len(state.coverage) < state.partitions:
            return []
        horizon = min(state.coverage.values())
        rows: list[dict[str, Any]] = []
        for start in sorted(s for s in state.pending if s + spec.window_seconds <= horizon):
            parts = sorted(state.pending.pop(start).values(), key=lambda p: p.partition)
            self.stats["capped"] += sum(p.capped for p in parts)
            key = state.draw_keys.pop(start, None) or secrets.token_bytes(32)  # always set
            window_rows = merge_window(spec, parts, key)
            if window_rows:
                self.stats["windows"] += 1
            rows.extend(window_rows)
        state.finalized_through = max(horizon, state.finalized_through or horizon)
        return rows

    def republish(self) -> list[dict[str, Any]]:
        """The outbox of a restored merger, one revision higher: its previous owner
        checkpointed these rows, then may or may not have published them. Published
        again, with numbers that cannot differ (the same partials made them)."""
        self.outbox = [{**row, "revision": row["revision"] + 1} for row in self.outbox]
        self.stats["republished"] += len(self.outbox)
        return self.outbox

    def pending_windows(self) -> dict[tuple[str, int], list[int]]:
        """Window starts waiting for partitions, per output (for status/metrics)."""
        return {key: sorted(s.pending) for key, s in self._state.items() if s.pending}

    def snapshot(self) -> bytes:
        """Pending partials and horizons (no pseudonyms: partials hold counts only), and
        the pending windows' draw keys."""
        outputs = [
            {
                "spec": self.specs[key].to_dict(),
                "partitions": s.partitions,
                "coverage": [[p, e] for p, e in sorted(s.coverage.items())],
                "finalized_through": s.finalized_through,
                "pending": [p.to_dict() for slot in s.pending.values() for p in slot.values()],
                "draw_keys": [[start, key.hex()] for start, key in sorted(s.draw_keys.items())],
            }
            for key, s in self._state.items()
        ]
        return orjson.dumps(
            {"version": 1, "outputs": outputs, "stats": self.stats, "outbox": self.outbox}
        )

    @classmethod
    def restore(
        cls,
        data: bytes,
        specs: Sequence[AggregateSpec] | None = None,
    ) -> WindowMerger:
        """A merger in the state :meth:`snapshot` captured. ``specs``: the config's
        outputs, gating with the config's k (see
        :func:`~streams.aggregate.spec.reconcile`); None: the saved specs."""
        saved = orjson.loads(data)
        saved_specs = [AggregateSpec.from_dict(o["spec"]) for o in saved["outputs"]]
        specs, from_saved = reconcile(specs, saved_specs)
        merger = cls(specs)
        merger.stats.update(saved["stats"])
        # Republish only rows the current specs would have gated alike: same spec.
        gated = {(s.name, s.window_label): s for s in saved_specs}
        current = {(s.name, s.window_label): s for s in specs}
        outbox = saved.get("outbox", [])  # absent from older checkpoints
        # Rows of an older schema were gated by older rules (version 1 published
        # windows below k, and measures per request): withheld too (a review).
        merger.outbox = [
            row for row in outbox
            if row.get("version") == ROW_VERSION
            and (spec := current.get((row["output"], row["window"]))) is not None
            and gated.get((row["output"], row["window"])) == spec
        ]  # fmt: skip
        withheld = len(outbox) - len(merger.outbox)
        if withheld:
            merger.stats["withheld"] += withheld
            # Their windows are lost if the rows never reached the output: say so.
            log.warning(
                "aggregates: %d checkpointed rows withheld (gated under another config or "
                "row version); see logfog_aggregate_withheld_rows",
                withheld,
            )
        by_key = {spec.key: o for spec, o in zip(saved_specs, saved["outputs"], strict=True)}
        for spec, old_spec in zip(specs, from_saved, strict=True):
            if old_spec is None:
                continue  # new, or a changed window or breakdowns: starts empty
            o = by_key[old_spec.key]
            state = merger._state[spec.key]
            state.partitions = o["partitions"]
            state.coverage = {p: e for p, e in o["coverage"]}
            state.finalized_through = o["finalized_through"]
            for d in o["pending"]:
                p = Partial.from_dict(d)
                state.pending.setdefault(p.window_start, {})[p.partition] = p
            # Absent from checkpoints before session 17: such windows get one now, which
            # the next checkpoint carries to any later owner.
            keys = {start: bytes.fromhex(key) for start, key in o.get("draw_keys", ())}
            state.draw_keys = {
                start: keys.get(start) or secrets.token_bytes(32) for start in state.pending
            }
        return merger
