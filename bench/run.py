"""``make bench``: logfog's throughput as ratios to bare baselines, all in one run.

These machines are noisy, so every figure is printed next to a baseline measured in the
same run on the same data, and the ratio is what to compare across runs.

1. Pure pipeline (one core, no Kafka): the default config with geo (DB-IP City Lite)
   and user-agent enrichment over a generated realistic combined log, vs a bare
   regex-parse + orjson-dump loop over the same lines, in interleaved rounds after a
   warm-up run (medians, and the range of the per-round ratios). Peak RSS is reported; a
   second, longer pass shows memory stays bounded.
2. End to end through the local broker (Tansu), one worker process each:
   a. one line per record in, one event per record out: logfog vs a bare Faust
      pass-through agent (take + producer, uvloop: the fastest bare variant measured in
      bench/NOTES-faust.md) and vs Faust iterating events without producing (ceiling;
      also with logfog's fetcher fixes, and taking events as logfog's worker does:
      logfog's own ceiling);
   b. 500 lines per record in, NDJSON batches out: logfog (default: each worker runs
      an aggregator child, ``aggregates.run_in: process``) vs the bare pass-through over
      the same batched records; logfog with and without aggregation in three pairs of
      runs, in turn first (the aggregation's cost, median and range of the pairs, for
      the worker's rate and for the rate at which the aggregates are complete); with
      the aggregation in the worker's own process (``run_in: worker``) and in a
      ``logfog aggregator`` started apart (``run_in: aggregator``);
   c. two logfog workers on two cores vs one (batched, ``run_in: worker``: one process
      per worker).

Usage: ``python bench/run.py [--quick] [--only pure|e2e]``; figures go to stdout and
``bench/results.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import faust_passthrough  # noqa: E402
from generate import generate  # noqa: E402

BARE_RE = re.compile(
    r'(?P<ip>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<request>[^"]*)" '
    r'(?P<status>\d{3}) (?P<size>\S+) "(?P<referrer>[^"]*)" "(?P<agent>[^"]*)"'
)
#: Interleaved rounds of the pure comparison (bare loop, default config, no aggregation).
PURE_ROUNDS = 4
#: Pairs of batched runs with and without the aggregation, for its cost.
E2E_PAIRS = 3


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_lines(n: int, seed: int = 1, start: datetime | None = None) -> list[bytes]:
    kwargs: dict[str, Any] = {"start": start} if start else {}
    return [
        line.encode("utf-8", "surrogateescape")
        for line in generate(n, "combined", seed=seed, **kwargs)
    ]


def bare_loop(lines: list[bytes]) -> float:
    """The baseline: regex parse + orjson dump per line, nothing else."""
    match, dumps = BARE_RE.match, orjson.dumps
    started = time.perf_counter()
    for raw in lines:
        m = match(raw.decode("utf-8", "replace"))
        if m is not None:
            dumps(m.groupdict())
    return len(lines) / (time.perf_counter() - started)


def pipeline_rate(lines: Any, config_path: Path) -> tuple[float, dict[str, Any]]:
    """Lines/s of the default pipeline over ``lines`` (a list, or any iterable: a
    generator streams without holding the input, for the memory check)."""
    from itertools import islice

    from streams.config import load_file
    from streams.gctune import tune_for_throughput
    from streams.pipeline import Pipeline

    config, _ = load_file(config_path)
    pipeline = Pipeline.from_normalized(config)
    out = pipeline.new_output()
    tune_for_throughput()  # as `logfog anonymize` and the worker do after startup
    in_gc = [0.0, 0.0]

    def time_collections(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            in_gc[1] = time.perf_counter()
        else:
            in_gc[0] += time.perf_counter() - in_gc[1]

    gc.callbacks.append(time_collections)
    source = iter(lines)
    started = time.perf_counter()
    try:
        while batch := list(islice(source, 2000)):
            pipeline.process_lines(batch, out)
            pipeline.count_published(out)
            out.clear()
    finally:
        gc.callbacks.remove(time_collections)
        gc.unfreeze()
    elapsed = time.perf_counter() - started
    stats = pipeline.stats.as_dict()
    stats["gc_share"] = in_gc[0] / elapsed
    return pipeline.stats.lines / elapsed, stats


def section_pure(n: int, results: dict[str, Any]) -> None:
    print(f"\n== 1. pure pipeline, {n:,} generated combined lines, one core ==", flush=True)
    lines = make_lines(n)
    default = ROOT / "config" / "logfog.yaml"
    # The two per-request destinations alone, without the internal aggregation stream.
    no_agg = yaml.safe_load(default.read_text())
    no_agg["aggregates"]["enabled"] = False
    no_agg_path = Path(tempfile.mkdtemp(prefix="logfog-bench-")) / "no-aggregates.yaml"
    no_agg_path.write_text(yaml.safe_dump(no_agg))
    # The first pipeline run in a process is the slowest whatever its config (27.7k
    # and 32.9k lines/s against 33.0-46.1k for the later runs of one process, session
    # 14): a warm-up run, not measured. Before, the default config always ran first,
    # and the aggregation input seemed to cost the pure pipeline 28.5%, not 6-15%.
    pipeline_rate(lines[: n // 4], default)
    # Rounds of bare, default, no aggregation, interleaved (the two configs in turn
    # first): these machines are noisy, and a ratio is only meaningful between runs
    # that saw the same machine. Reported: medians, and the range of the per-round ratios.
    rounds = []
    for i in range(PURE_ROUNDS):
        bare_i = bare_loop(lines)
        if i % 2 == 0:
            rate_i, stats_i = pipeline_rate(lines, default)
            rate_no_agg_i = pipeline_rate(lines, no_agg_path)[0]
        else:
            rate_no_agg_i = pipeline_rate(lines, no_agg_path)[0]
            rate_i, stats_i = pipeline_rate(lines, default)
        rounds.append((bare_i, rate_i, rate_no_agg_i, stats_i))
    bare = statistics.median(r[0] for r in rounds)
    rate = statistics.median(r[1] for r in rounds)
    rate_no_agg = statistics.median(r[2] for r in rounds)
    stats = rounds[-1][3]
    ratios = sorted(r[1] / r[0] for r in rounds)
    rss_after_first = rss_mb()
    del lines
    gc.collect()
    # Memory bound: a 5x longer stream, generated on the fly (never held), through a
    # fresh pipeline: RSS must level off (every cache is bounded), not grow with it.
    stream = (line.encode("utf-8", "surrogateescape")
              for line in generate(5 * n, "combined", seed=2))  # fmt: skip
    rate_long, _ = pipeline_rate(stream, ROOT / "config" / "logfog.yaml")
    print(f"medians of {PURE_ROUNDS} interleaved rounds")
    print(f"bare regex + orjson loop   {bare:>10,.0f} lines/s")
    ratio = statistics.median(ratios)
    print(f"logfog default config      {rate:>10,.0f} lines/s   ratio {ratio:.3f}x "
          f"(rounds {ratios[0]:.3f}-{ratios[-1]:.3f})")  # fmt: skip
    ratio_no_agg = statistics.median(r[2] / r[0] for r in rounds)
    print(f"  without aggregation      {rate_no_agg:>10,.0f} lines/s   "
          f"ratio {ratio_no_agg:.3f}x (ops + product only)")  # fmt: skip
    costs = sorted(1 - r[1] / r[2] for r in rounds)
    print(f"  the aggregation input costs {statistics.median(costs):.0%} "
          f"(rounds {costs[0]:.0%}-{costs[-1]:.0%})")  # fmt: skip
    print(
        f"  (5x longer, streamed)    {rate_long:>10,.0f} lines/s   (includes generating the lines)"
    )
    print(f"peak RSS {rss_after_first:.0f} MB after {n:,} lines (input held in memory), "
          f"{rss_mb():.0f} MB after {5 * n:,} streamed lines")  # fmt: skip
    print(f"published {stats['published']}, rejected {stats['rejected']}, "
          f"{stats['gc_share']:.0%} of the time in the garbage collector")  # fmt: skip
    results["pure"] = {
        "lines": n, "rounds": PURE_ROUNDS, "bare_lines_per_s": round(bare),
        "logfog_lines_per_s": round(rate), "ratio": round(ratio, 3),
        "ratio_range": [round(ratios[0], 3), round(ratios[-1], 3)],
        "long_stream_lines_per_s": round(rate_long),
        "no_aggregates_lines_per_s": round(rate_no_agg),
        "no_aggregates_ratio": round(ratio_no_agg, 3),
        "aggregation_input_cost": round(statistics.median(costs), 3),
        "aggregation_input_cost_range": [round(costs[0], 3), round(costs[-1], 3)],
        "gc_share": round(stats["gc_share"], 3),
        "peak_rss_mb": round(rss_mb()), "rss_after_first_mb": round(rss_after_first),
    }  # fmt: skip


# ---------------------------------------------------------------- end to end (broker)


def bare_faust(
    mode: str, records: int, lines_per_record: int, fetcher_fixes: bool = False
) -> dict[str, Any]:
    # Small takes for big records, so the first-to-last span has many batches in it.
    take = 1000 if lines_per_record == 1 else 20
    args = argparse.Namespace(
        mode=mode, loop="uvloop", settings="fast", records=records,
        lines_per_record=lines_per_record, take=take, timeout=300.0,
        fetcher_fixes=fetcher_fixes,
    )  # fmt: skip
    return faust_passthrough.drive(args)


def logfog_e2e(
    lines: list[bytes],
    lines_per_record: int,
    framing: str,
    workers: int,
    partitions: int,
    aggregates: bool = True,
    aggregators: int = 0,
    run_in: str | None = None,
) -> dict[str, Any]:
    """Pre-load the raw topic, start ``workers`` logfog workers, time first -> last line.

    ``run_in``: ``aggregates.run_in`` (default: the config's, "process": each worker runs
    an aggregator child). ``aggregators`` > 0: ``run_in: aggregator`` and that many
    ``logfog aggregator`` processes. With aggregation in other processes (children or
    aggregators), also the time until they have applied every row.
    """
    from streams.admin import ensure_topics
    from streams.broker import LocalBroker
    from streams.config import normalize
    from streams.keys import generate_key
    from streams.shipper import frame_lines
    from streams.topics import topic_specs

    work = Path(tempfile.mkdtemp(prefix="logfog-bench-"))
    config = yaml.safe_load((ROOT / "config" / "logfog.yaml").read_text())
    with LocalBroker(startup_timeout_s=30) as broker:
        config["kafka"]["bootstrap"] = broker.bootstrap
        config["kafka"]["raw"]["partitions"] = partitions
        config["aggregates"]["enabled"] = aggregates
        if run_in:
            config["aggregates"]["run_in"] = run_in
        if aggregators:
            config["aggregates"]["run_in"] = "aggregator"
        children = aggregates and config["aggregates"]["run_in"] == "process"
        for dest in config["destinations"].values():
            dest["framing"] = framing
            dest["partitions"] = partitions
        path = work / "logfog.yaml"
        path.write_text(yaml.safe_dump(config))
        normalized = normalize(config, [], [])
        ensure_topics(broker.bootstrap, topic_specs(normalized))
        raw = normalized["kafka"]["raw"]["topic"]
        _load(broker.bootstrap, raw, frame_lines(lines, lines_per_record, 900_000), partitions)
        env = {**os.environ, "LOGFOG_MASTER_KEY": generate_key()}
        ports = [faust_passthrough_free_port() for _ in range(workers + aggregators)]
        child_ports = [faust_passthrough_free_port() for _ in range(workers if children else 0)]
        procs = []
        for i, port in enumerate(ports):
            command = "worker" if i < workers else "aggregator"
            env_i = {**env, "LOGFOG_DATA_DIR": str(work / f"w{i}")}
            log = open(work / f"w{i}.log", "wb")  # noqa: SIM115
            child = ["--aggregator-web-port", str(child_ports[i])] if i < len(child_ports) else []
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "streams", command, "-c", str(path), "--web-port",
                 str(port), "--loglevel", "warning", *child],
                env=env_i, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            ))  # fmt: skip
        counting = ports[workers:] + child_ports  # processes that aggregate, apart
        try:
            first, last, total = _time_processing(
                ports[:workers], len(lines), 600, procs, work, "lines"
            )
            if counting:  # until the aggregation has applied every row
                last_agg = _time_processing(counting, len(lines), 600, procs, work, "aggregated")[1]
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
    span = last - first
    result = {
        "lines": len(lines), "lines_processed": total, "workers": workers,
        "lines_per_record": lines_per_record, "framing": framing, "aggregates": aggregates,
        "seconds": round(span, 2), "lines_per_s": round(total / span) if span > 0 else None,
        "aggregators": aggregators, "run_in": config["aggregates"]["run_in"],
    }  # fmt: skip
    if counting:
        result["aggregated_seconds"] = round(last_agg - first, 2)
        result["aggregated_lines_per_s"] = round(len(lines) / (last_agg - first))
    return result


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rate (the lower middle one of an even number).

    >>> _median_run([{"lines_per_s": 3}, {"lines_per_s": 1}, {"lines_per_s": 2}])
    {'lines_per_s': 2}
    """
    return sorted(runs, key=lambda r: r["lines_per_s"])[(len(runs) - 1) // 2]


def faust_passthrough_free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _load(bootstrap: str, topic: str, records: Any, partitions: int) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=1 << 20,
                             max_request_size=8 << 20)  # fmt: skip
    for i, record in enumerate(records):
        producer.send(topic, value=record, partition=i % partitions)
    producer.flush(120)
    producer.close()


def _status(port: int) -> dict[str, Any] | None:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=2) as r:
            return dict(orjson.loads(r.read()))
    except OSError:
        return None


def _progress(status: dict[str, Any], what: str) -> int:
    if what == "lines":
        return int(status["lines"])
    return int((status.get("aggregates") or {}).get("events", 0))  # rows applied


def _time_processing(
    ports: list[int], n: int, timeout_s: float, procs: list[Any], work: Path, what: str
) -> tuple[float, float, int]:
    """Poll the processes' counters (``what``: lines read, or rows aggregated): time of
    first progress and of completion."""
    deadline = time.monotonic() + timeout_s
    first: float | None = None
    total = 0
    while time.monotonic() < deadline:
        for i, p in enumerate(procs):
            if p.poll() is not None:
                tail = (work / f"w{i}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"worker {i} exited ({p.returncode}):\n{tail}")
        counts = [_progress(s, what) for s in map(_status, ports) if s is not None]
        total = sum(counts)
        now = time.monotonic()
        if first is None and total > 0:
            first = now
        if total >= n:
            return (first or now), now, total
        time.sleep(0.2)  # each poll is a web request the worker serves: keep it rare
    raise RuntimeError(f"workers processed {total:,} of {n:,} lines in {timeout_s}s")


def section_e2e(quick: bool, results: dict[str, Any]) -> None:
    single_n = 30_000 if quick else 100_000
    batched_n = 200_000 if quick else 1_000_000
    now = datetime.now(UTC).replace(microsecond=0)
    print(f"\n== 2a. end to end, one line per record in/out ({single_n:,} lines) ==", flush=True)
    lines = make_lines(single_n, start=now)
    ceiling = bare_faust("iter", single_n, 1)
    bare = bare_faust("take_producer", single_n, 1)
    # The ceiling of a worker with logfog's fetcher fixes (streams/faust_fetcher) and
    # its way of taking events (streams/faust_take): events taken and acknowledged.
    fixed_ceiling = bare_faust("iter", single_n, 1, fetcher_fixes=True)
    intake_ceiling = bare_faust("take_events", single_n, 1, fetcher_fixes=True)
    ours = logfog_e2e(lines, 1, "record", workers=1, partitions=1)
    print(f"bare Faust, iterate only     {ceiling['records_per_s']:>10,} records/s (ceiling)")
    print(f"bare Faust pass-through      {bare['records_per_s']:>10,} records/s")
    print(f"iterate only, fetcher fixes  {fixed_ceiling['records_per_s']:>10,} records/s")
    print(f"logfog's intake, no work     {intake_ceiling['records_per_s']:>10,} records/s "
          "(fetcher fixes + take_events: logfog's ceiling)")  # fmt: skip
    print(f"logfog worker                {ours['lines_per_s']:>10,} lines/s   "
          f"ratio {ours['lines_per_s'] / bare['records_per_s']:.2f}x pass-through, "
          f"{ours['lines_per_s'] / ceiling['records_per_s']:.2f}x ceiling, "
          f"{ours['lines_per_s'] / fixed_ceiling['records_per_s']:.2f}x fetcher-fixes "
          f"ceiling, {ours['lines_per_s'] / intake_ceiling['records_per_s']:.2f}x "
          "logfog's ceiling")  # fmt: skip
    results["e2e_single"] = {
        "ceiling": ceiling, "bare": bare, "fetcher_fixes_ceiling": fixed_ceiling,
        "intake_ceiling": intake_ceiling, "logfog": ours,
    }  # fmt: skip

    print(f"\n== 2b. end to end, 500 lines per record in, NDJSON out ({batched_n:,} lines) ==",
          flush=True)  # fmt: skip
    lines = make_lines(batched_n, start=now)
    bare_b = bare_faust("take_producer", batched_n // 500, 500)
    # The aggregation's cost from pairs of runs, with and without, in turn first: one
    # pair read anywhere from 14% to 36% on this machine (README, Performance).
    pairs = []
    for i in range(E2E_PAIRS):
        runs = {}
        for aggregates in (True, False) if i % 2 == 0 else (False, True):
            runs[aggregates] = logfog_e2e(
                lines, 500, "ndjson", workers=1, partitions=2, aggregates=aggregates
            )
        pairs.append((runs[True], runs[False]))
        print(f"pair {i + 1}: {runs[True]['lines_per_s']:,} lines/s with the aggregation, "
              f"{runs[False]['lines_per_s']:,} without", flush=True)  # fmt: skip
    ours_b = _median_run([p[0] for p in pairs])
    no_agg = _median_run([p[1] for p in pairs])
    costs = sorted(1 - p[0]["lines_per_s"] / p[1]["lines_per_s"] for p in pairs)
    complete_costs = sorted(1 - p[0]["aggregated_lines_per_s"] / p[1]["lines_per_s"] for p in pairs)
    in_worker = logfog_e2e(lines, 500, "ndjson", workers=1, partitions=2, run_in="worker")
    # The aggregation in a `logfog aggregator` process started apart (run_in: aggregator,
    # as in deploy/k8s/aggregator.yaml): the same work as the default's child process.
    sep = logfog_e2e(lines, 500, "ndjson", workers=1, partitions=2, aggregators=1)
    base = no_agg["lines_per_s"]
    print(f"bare Faust pass-through      {bare_b['lines_per_s']:>10,} lines/s")
    print(f"logfog worker (default: aggregator child, run_in: process)\n"
          f"                             {ours_b['lines_per_s']:>10,} lines/s   "
          f"ratio {ours_b['lines_per_s'] / bare_b['lines_per_s']:.2f}x; aggregates complete "
          f"at {ours_b['aggregated_lines_per_s']:,} lines/s")  # fmt: skip
    print(f"logfog without aggregation   {base:>10,} lines/s")
    print(f"aggregation cost, default (child process), median of {E2E_PAIRS} pairs: worker "
          f"{statistics.median(costs):.0%} (pairs {costs[0]:.0%}-{costs[-1]:.0%}), aggregates "
          f"complete {statistics.median(complete_costs):.0%} (pairs {complete_costs[0]:.0%}-"
          f"{complete_costs[-1]:.0%}) below no aggregation")  # fmt: skip
    print(
        f"aggregation cost, separate aggregator (one run)  worker "
        f"{1 - sep['lines_per_s'] / base:.0%}, aggregates complete "
        f"{1 - sep['aggregated_lines_per_s'] / base:.0%} below no aggregation"
    )
    in_worker_cost = 1 - in_worker["lines_per_s"] / base
    print(f"aggregation in the worker's own process (run_in: worker) "
          f"{in_worker['lines_per_s']:,} lines/s: costs {in_worker_cost:.0%}")  # fmt: skip
    results["e2e_batched"] = {
        "bare": bare_b, "logfog": ours_b, "logfog_no_aggregates": no_agg,
        "logfog_aggregation_in_worker": in_worker, "logfog_separate_aggregator": sep,
        "pairs": [{"with": p[0], "without": p[1]} for p in pairs],
        "aggregation_cost": round(statistics.median(costs), 3),
        "aggregation_cost_range": [round(costs[0], 3), round(costs[-1], 3)],
        "aggregation_complete_cost": round(statistics.median(complete_costs), 3),
    }  # fmt: skip

    # One core per worker: on this 2-core machine a worker with its aggregator child
    # already uses both cores, so scale-out is measured with the aggregation in the
    # workers' own processes (run_in: worker), one process per worker.
    print("\n== 2c. two workers vs one (batched, 2 partitions, run_in: worker) ==", flush=True)
    two = logfog_e2e(lines, 500, "ndjson", workers=2, partitions=2, run_in="worker")
    print(f"one worker                   {in_worker['lines_per_s']:>10,} lines/s")
    print(f"two workers                  {two['lines_per_s']:>10,} lines/s   "
          f"ratio {two['lines_per_s'] / in_worker['lines_per_s']:.2f}x")  # fmt: skip
    results["e2e_two_workers"] = two


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller inputs")
    parser.add_argument("--only", choices=["pure", "e2e"])
    parser.add_argument("--lines", type=int, default=200_000, help="pure pipeline lines")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"when": datetime.now(UTC).isoformat(), "cpus": os.cpu_count()}
    if args.only in (None, "pure"):
        section_pure(50_000 if args.quick else args.lines, results)
    if args.only in (None, "e2e"):
        section_e2e(args.quick, results)
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
