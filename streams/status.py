"""The worker's live status page: one self-contained HTML file, no external assets.

``/status`` serves :data:`STATUS_PAGE`; its script polls ``/status.json`` (built by
:func:`status_snapshot` from the same counters ``/metrics`` exports) every two
seconds and draws bar charts as inline SVG. Everything shown is a count or a
coarse, already-published value (route templates, country codes): nothing raw.

The page has no authentication, so it shows only what is safe for anyone who can reach
it: totals and k-gated values. The merger's ``capped`` and ``late`` counts are left
out: per window they can describe a single heavy or late visitor. (``/metrics`` has the
all-time late total, which says only that some lines came late, like its line counters:
an operator must see what the aggregates left out.) The web server binds
to ``LOGFOG_WEB_BIND`` (default 127.0.0.1; the container image sets 0.0.0.0 for probes
and scraping: restrict it with a NetworkPolicy or the published port).

>>> "<script>" in STATUS_PAGE and "http" not in STATUS_PAGE.split("<script>")[0].lower()
True
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

#: What the page may show of the aggregation (``AggregationRuntime.status()``): totals
#: over all windows and published (k-gated) values.
AGGREGATE_FIELDS = ("suppressed", "window", "top_routes", "top_countries", "rows_published",
                    "events", "open_partitions", "pending_windows", "watermarks")  # fmt: skip
#: Merger counts the page may show: partials, windows, and rows of a left-over outbox
#: withheld after a spec change. Not ``capped`` (events over the per-visitor cap) or
#: ``late``: in a quiet window those are one visitor's doings.
MERGER_FIELDS = ("partials", "replaced", "stale", "windows", "withheld")
#: The page's "lines/s (last ~20 s)".
RATE_WINDOW_S = 20.0


def aggregate_status(aggregation: Any) -> dict[str, Any] | None:
    """The aggregation's status with only aggregate-safe figures (an allowlist).

    >>> class Runtime:
    ...     def status(self):
    ...         return {"events": 9, "merger": {"windows": 2, "capped": 7, "late": 1}}
    >>> aggregate_status(Runtime())
    {'events': 9, 'merger': {'windows': 2}}
    """
    if aggregation is None:
        return None
    full = aggregation.status()
    shown = {name: full[name] for name in AGGREGATE_FIELDS if name in full}
    merger = full.get("merger") or {}
    shown["merger"] = {name: merger[name] for name in MERGER_FIELDS if name in merger}
    return shown


def lines_per_second(
    rates: Sequence[tuple[float, int]], now: float, window_s: float = RATE_WINDOW_S
) -> float:
    """Lines per second over the ``window_s`` up to ``now``, from ``(time, lines so far)``
    samples noted per batch. Up to now, not up to the last batch: once lines stop, no
    batch is noted, and the rate between the last batches would stay on the page.

    >>> lines_per_second([(0.0, 0), (10.0, 500), (20.0, 1000)], now=20.0)
    50.0
    >>> lines_per_second([(0.0, 0), (10.0, 500), (20.0, 1000)], now=30.0)  # idle for 10 s
    25.0
    >>> lines_per_second([(0.0, 0), (10.0, 500), (20.0, 1000)], now=600.0)
    0.0
    """
    if not rates:
        return 0.0
    # The base: the newest sample at or before the window's start (the lines counted up
    # to then), or the oldest one when the whole history is younger than the window.
    first_inside = bisect_right(rates, now - window_s, key=itemgetter(0))
    t0, l0 = rates[max(first_inside - 1, 0)]
    lines = rates[-1][1] - l0
    return lines / (now - t0) if lines > 0 and now > t0 else 0.0


def status_snapshot(state: Any, pipeline: Any, metrics: Any) -> dict[str, Any]:
    stats = pipeline.stats
    rate = lines_per_second(list(state.rates), time.time())
    return {
        "uptime_s": round(time.time() - state.started, 1),
        "ready": state.ready,
        "lines": stats.lines,
        "lines_per_second": round(rate, 1),
        "records_in": state.records_in,
        "records_out": state.records_out,
        "batches": state.batches,
        "published": dict(stats.events),
        "rejected": dict(stats.rejected),
        "leaks_removed": dict(stats.leaks),
        "publish_failures": state.publish_failures,
        "lag": [
            {"topic": t, "partition": p, "lag": lag}
            for (t, p), lag in sorted(metrics.lag_by_partition.items())
        ],
        "aggregates": aggregate_status(getattr(state, "aggregation", None)),
        "aggregator_process": _child_status(getattr(state, "aggregator", None)),
    }


def _child_status(supervisor: Any) -> dict[str, Any] | None:
    """The aggregator child (``aggregates.run_in: process``): process id, running,
    restarts, last exit status. Its counts are on its own status page."""
    return None if supervisor is None else supervisor.status()


STATUS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>logfog worker</title>
<style>
 body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
 header{background:#1d2330;color:#fff;padding:10px 18px;display:flex;gap:18px;align-items:baseline}
 header h1{font-size:18px;margin:0} header span{opacity:.75}
 main{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:14px;padding:14px;
  align-items:start}
 section{background:#fff;border-radius:8px;padding:12px 14px;box-shadow:0 1px 2px #0002}
 h2{font-size:13px;text-transform:uppercase;letter-spacing:.05em;color:#5a6275;margin:0 0 8px}
 .big{font-size:28px;font-weight:600} .muted{color:#7a8194;font-size:12px}
 table{border-collapse:collapse;width:100%} td{padding:2px 4px;border-bottom:1px solid #eef0f3}
 td.n{text-align:right;font-variant-numeric:tabular-nums}
 svg text{font-size:11px;fill:#1d2330}
</style></head>
<body>
<header><h1>logfog</h1><span id="state">connecting…</span><span id="uptime"></span></header>
<main>
 <section><h2>Throughput</h2><div class="big" id="rate">–</div>
  <div class="muted">lines/s (last ~20 s)</div><svg id="spark" width="300" height="50"></svg>
  <table id="totals"></table></section>
 <section><h2>Consumer lag per partition</h2><div id="lag"></div></section>
 <section><h2>Rejections by reason</h2><div id="rejected"></div></section>
 <section><h2>Leaks removed</h2><div id="leaks"></div></section>
 <section><h2>Folded into __other__ by minimum group size</h2><div id="suppressed"></div></section>
 <section><h2>Last closed window: top routes</h2><div class="muted" id="window"></div>
  <div id="routes"></div></section>
 <section><h2>Last closed window: countries</h2><div id="countries"></div></section>
</main>
<script>
"use strict";
const hist = [];
const ESC={"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"};
function esc(s){return String(s).replace(/[&<>"']/g,c=>ESC[c]);}
function fmt(n){return Number(n).toLocaleString("en-US");}
function short(s){s=String(s);return s.length>20?s.slice(0,8)+"…"+s.slice(-11):s;}
function bars(id, rows){
  const el=document.getElementById(id);
  if(!rows.length){el.innerHTML='<div class="muted">none</div>';return;}
  // label column | bar | value column wide enough for "10,000,000"
  const max=Math.max(...rows.map(r=>r[1]),1), h=18, w=300, lw=130, vw=76;
  let s=`<svg width="${w}" height="${rows.length*h}" role="img">`;
  rows.forEach((r,i)=>{const bw=Math.max(1,(w-lw-vw)*r[1]/max);
    s+=`<text x="0" y="${i*h+13}"><title>${esc(r[0])}</title>${esc(short(r[0]))}</text>`+
       `<rect x="${lw}" y="${i*h+3}" width="${bw}" height="12" fill="#4c78a8"></rect>`+
       `<text x="${lw+4+bw}" y="${i*h+13}" data-label="${esc(r[0])}" data-value="${r[1]}">`+
       `${fmt(r[1])}</text>`;});
  el.innerHTML=s+"</svg>";
}
function entries(obj){return Object.entries(obj||{}).sort((a,b)=>b[1]-a[1]);}
function spark(){
  const el=document.getElementById("spark"); if(hist.length<2){return;}
  const max=Math.max(...hist,1);
  const pts=hist.map((v,i)=>`${i*300/(hist.length-1)},${48-46*v/max}`).join(" ");
  el.innerHTML=`<polyline fill="none" stroke="#4c78a8" stroke-width="2" points="${pts}"/>`;
}
async function tick(){
  try{
    const s=await (await fetch("status.json",{cache:"no-store"})).json();
    document.getElementById("state").textContent=s.ready?"ready":"starting";
    document.getElementById("uptime").textContent=`up ${Math.round(s.uptime_s)} s`;
    document.getElementById("rate").textContent=fmt(s.lines_per_second);
    hist.push(s.lines_per_second); if(hist.length>60){hist.shift();} spark();
    const tot=[["lines read",s.lines],["records in",s.records_in],["records out",s.records_out],
      ...Object.entries(s.published).map(([k,v])=>["published: "+k,v]),
      ["publish retries",s.publish_failures]];
    document.getElementById("totals").innerHTML=tot.map(([k,v])=>
      `<tr><td>${esc(k)}</td><td class="n" data-metric="${esc(k)}">${fmt(v)}</td></tr>`).join("");
    bars("lag", s.lag.map(r=>[r.topic+"/"+r.partition, r.lag]));
    bars("rejected", entries(s.rejected));
    bars("leaks", entries(s.leaks_removed));
    const a=s.aggregates;
    if(a){
      bars("suppressed", entries(a.suppressed));
      const w=a.window;
      document.getElementById("window").textContent=
        w?`${w.name} ${w.start} (v${w.version})`:"no window closed yet";
      bars("routes", a.top_routes||[]); bars("countries", a.top_countries||[]);
    } else {
      ["suppressed","routes","countries"].forEach(id=>bars(id,[]));
      const c=s.aggregator_process;
      document.getElementById("window").textContent=c?
        `in the aggregator child (pid ${c.pid}, ${c.running?"running":"not running"}, `+
        `${c.restarts} restarts): see its own status page`:"aggregation not in this process";
    }
  }catch(e){document.getElementById("state").textContent="unreachable";}
}
tick(); setInterval(tick, 2000);
</script>
</body></html>
"""
