"""Prometheus metrics for the worker: counts only, never payloads or identifiers.

Pipeline totals are read from :class:`~streams.pipeline.Stats` at scrape time by a
custom collector, so the hot path pays nothing for metrics. Labels are closed sets
(destination names, reason codes, detector names): no label value comes from input.

>>> from streams.pipeline import Pipeline
>>> p = Pipeline.from_config({"destinations": {"ops": {"topic": "o", "fields": {
...     "s": {"from": "response.status", "action": "keep"}}}}})
>>> _ = p.test(["junk"])
>>> b'logfog_rejected_total{reason="parse.no_match"} 1.0' in Metrics(p).render()
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector


class _PipelineCollector(Collector):
    def __init__(self, pipeline: Any) -> None:
        self._pipeline = pipeline

    def collect(self) -> Iterator[Metric]:
        stats = self._pipeline.stats
        lines = CounterMetricFamily("logfog_lines", "raw lines read")
        lines.add_metric([], stats.lines)
        yield lines
        events = CounterMetricFamily("logfog_events", "events published", labels=["destination"])
        for name in self._pipeline.names:
            events.add_metric([name], stats.events.get(name, 0))
        yield events
        rejected = CounterMetricFamily("logfog_rejected", "lines dead-lettered", labels=["reason"])
        for reason, count in sorted(stats.rejected.items()):
            rejected.add_metric([reason], count)
        yield rejected
        leaks = CounterMetricFamily(
            "logfog_leaks_removed",
            "output values removed by the leak detectors",
            labels=["detector"],
        )
        for detector, count in sorted(stats.leaks.items()):
            leaks.add_metric([detector], count)
        yield leaks
        utf8 = CounterMetricFamily("logfog_invalid_utf8_replaced", "lines with bad UTF-8 repaired")
        utf8.add_metric([], stats.replaced_utf8)
        yield utf8
        extra = getattr(self._pipeline, "extra_metrics", None)
        if extra is not None:
            yield from extra()


class AggregationCollector(Collector):
    """Window aggregation totals and state size, read from the runtime at scrape time.

    >>> from streams.aggregate.runtime import AggregationRuntime
    >>> from streams.aggregate.spec import DEFAULT_SPECS
    >>> runtime = AggregationRuntime(DEFAULT_SPECS, partitions=1, snapshot_interval=10)
    >>> m = Metrics(None)
    >>> m.registry.register(AggregationCollector(runtime))
    >>> m.value("logfog_aggregate_events_total"), m.value("logfog_aggregate_open_partitions")
    (0, 0.0)
    >>> m.value("logfog_aggregate_late_events_total")
    0
    >>> runtime.merger.stats["withheld"] = 3  # as a restore after a config change sets it
    >>> m.value("logfog_aggregate_withheld_rows_total")
    3
    """

    def __init__(self, runtime: Any) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        runtime = self._runtime
        events = CounterMetricFamily("logfog_aggregate_events", "rows added to window state")
        events.add_metric([], runtime.events)
        yield events
        rows = CounterMetricFamily("logfog_aggregate_rows_published", "aggregate rows published")
        rows.add_metric([], runtime.rows_published)
        yield rows
        suppressed = CounterMetricFamily(
            "logfog_aggregate_suppressed",
            "requests folded into __other__ by the minimum group size k, and the folds' "
            "published lower bounds of visitors (visitors_min)",
            labels=["what"],
        )
        for what, count in sorted(runtime.suppressed.items()):
            suppressed.add_metric([what], count)
        yield suppressed
        # Where the merger runs: from the partials of every input partition.
        late = CounterMetricFamily(
            "logfog_aggregate_late_events",
            "events left out of every output as late (after the allowed lateness, or for a "
            "window already closed), each counted once",
        )
        late.add_metric([], runtime.merger.stats["late"])
        yield late
        withheld = CounterMetricFamily(
            "logfog_aggregate_withheld_rows",
            "checkpointed rows not republished after a restart: gated under another "
            "config or row version (their windows are lost if they never reached the output)",
        )
        withheld.add_metric([], runtime.merger.stats["withheld"])
        yield withheld
        yield gauge_family(
            "logfog_aggregate_open_partitions", "input partitions held", [],
            [([], float(len(runtime.aggregators)))],
        )  # fmt: skip
        held = {"windows": 0, "combinations": 0, "entries": 0}
        skipped = {"invalid": 0, "no_visitor": 0, "future": 0, "duplicate": 0}
        for aggregator in list(runtime.aggregators.values()):
            for name, n in aggregator.state_size().items():
                held[name] += n
            skipped["invalid"] += aggregator.invalid
            skipped["no_visitor"] += aggregator.no_visitor
            skipped["future"] += aggregator.future
            skipped["duplicate"] += aggregator.duplicates
        # Per held partition, restored with its checkpoint: a gauge, not a counter.
        yield gauge_family(
            "logfog_aggregate_skipped_rows", "rows skipped by the partitions held", ["reason"],
            [([name], float(n)) for name, n in skipped.items()],
        )  # fmt: skip
        yield gauge_family(
            "logfog_aggregate_state", "window state held (memory)", ["what"],
            [([name], float(n)) for name, n in held.items()],
        )  # fmt: skip


class ChildCollector(Collector):
    """The aggregator child a worker supervises (``aggregates.run_in: process``): up and
    restarts, on the worker's own ``/metrics``, so that one scrape can alert on a child
    that keeps dying. Its counts are on its own port.

    >>> class Child:
    ...     def status(self): return {"pid": 7, "running": True, "restarts": 2, "last_exit": -9}
    >>> m = Metrics(None)
    >>> m.registry.register(ChildCollector(Child()))
    >>> m.value("logfog_aggregator_child_up"), m.value("logfog_aggregator_child_restarts_total")
    (1.0, 2)
    """

    def __init__(self, supervisor: Any) -> None:
        self._supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        status = self._supervisor.status()
        yield gauge_family("logfog_aggregator_child_up", "1 while the aggregator child runs",
                           [], [([], 1.0 if status["running"] else 0.0)])  # fmt: skip
        restarts = CounterMetricFamily(
            "logfog_aggregator_child_restarts", "aggregator child processes started again"
        )
        restarts.add_metric([], status["restarts"])
        yield restarts


class Metrics:
    """The worker's registry: pipeline totals plus batch timing, lag and failures."""

    # aiohttp sets the charset itself and refuses one inside content_type.
    content_type = CONTENT_TYPE_LATEST.split("; charset")[0]

    def __init__(self, pipeline: Any) -> None:
        self.registry = CollectorRegistry()
        if pipeline is not None:
            self.registry.register(_PipelineCollector(pipeline))
        self.records_in = Counter(
            "logfog_records_in", "Kafka records consumed", registry=self.registry
        )
        self.batch_seconds = Histogram(
            "logfog_batch_seconds",
            "processing + publishing time per batch (latency added by logfog)",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.publish_failures = Counter(
            "logfog_publish_failures", "batches the broker did not take (retried)",
            registry=self.registry,
        )  # fmt: skip
        self.records_skipped = Counter(
            "logfog_records_skipped",
            "internal records that could not be read (logged by coordinates), skipped",
            ["topic"], registry=self.registry,
        )  # fmt: skip
        self.lag = Gauge(
            "logfog_consumer_lag",
            "records behind the partition end (wrong on the local Tansu broker: see README)",
            ["topic", "partition"],
            registry=self.registry,
        )
        self.lag_by_partition: dict[tuple[str, int], int] = {}
        self.last_offsets: dict[tuple[str, int], int] = {}

    def observe_batch(self, records: int, lines: int, seconds: float) -> None:
        self.records_in.inc(records)
        self.batch_seconds.observe(seconds)

    def update_lag(self, app: Any) -> None:
        """Lag per assigned partition (see :func:`partition_lag`). Partitions this worker
        no longer holds lose their gauge: after a rebalance their new owner reports them,
        and two series for one partition would double the summed lag."""
        consumer = getattr(app, "consumer", None)
        if consumer is None:
            return
        try:
            assigned = list(consumer.assignment())
        except Exception:  # not started yet
            return
        highwaters: dict[tuple[str, int], int | None] = {}
        for tp in assigned:
            try:
                highwaters[(tp.topic, tp.partition)] = consumer.highwater(tp)
            except Exception:
                highwaters[(tp.topic, tp.partition)] = None
        # Faust's record of the group's committed offsets (next offset to read), loaded
        # when a partition is assigned: before this worker's first batch on a partition
        # the lag is measured from there, not from offset 0.
        committed_by_tp = getattr(consumer, "_committed_offset", None) or {}
        committed = {(tp.topic, tp.partition): off for tp, off in list(committed_by_tp.items())
                     if isinstance(off, int)}  # fmt: skip
        held = set(highwaters)
        for key in [k for k in self.last_offsets if k not in held]:
            del self.last_offsets[key]  # processed by another worker since: stale
        lags = partition_lag(highwaters, self.last_offsets, committed)
        for topic, partition in [k for k in self.lag_by_partition if k not in lags]:
            del self.lag_by_partition[(topic, partition)]
            with contextlib.suppress(KeyError):
                self.lag.remove(topic, str(partition))
        for (topic, partition), lag in lags.items():
            self.lag_by_partition[(topic, partition)] = lag
            self.lag.labels(topic, str(partition)).set(lag)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.registry.get_sample_value(name, labels or {})


def partition_lag(
    highwaters: Mapping[tuple[str, int], int | None],
    processed: Mapping[tuple[str, int], int],
    committed: Mapping[tuple[str, int], int],
) -> dict[tuple[str, int], int]:
    """Records behind the end, per held partition: high watermark minus the next offset
    to process, which is the last processed offset + 1 or the group's committed offset,
    whichever is further. Partitions without a known high watermark are left out.

    >>> tp = ("logs.raw", 0)
    >>> partition_lag({tp: 1000}, {}, {tp: 990})  # assigned, nothing processed yet
    {('logs.raw', 0): 10}
    >>> partition_lag({tp: 1000}, {tp: 994}, {tp: 990}), partition_lag({tp: None}, {}, {})
    ({('logs.raw', 0): 5}, {})
    """
    out: dict[tuple[str, int], int] = {}
    for key, high in highwaters.items():
        if high is None:
            continue
        done = max(processed.get(key, -1) + 1, committed.get(key, 0))
        out[key] = max(0, int(high) - done)
    return out


def gauge_family(
    name: str, doc: str, labels: list[str], rows: list[tuple[list[str], float]]
) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for label_values, value in rows:
        family.add_metric(label_values, value)
    return family
