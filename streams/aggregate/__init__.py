"""Windowed, k-gated aggregates of the internal analytics stream (privacy rules 4, 8, 9, 15).

Pure code, no Kafka/Faust: the worker wires it into agents.

- Stage 2, one :class:`PartialAggregator` per partition of the visitor-keyed input:
  ``add(events, offset)`` per record, ``close_ready()`` -> :class:`Partial` list (counts
  only) to publish on the partials topic keyed by source partition, ``snapshot()`` to
  the internal compacted state topic, ``PartialAggregator.restore(bytes)`` on start.
- Stage 3, one :class:`WindowMerger`: ``add(partial)`` -> JSON-ready rows of every
  window that partial completed, already gated by k and the subtraction checks.

>>> sorted(__all__)[:3]
['AggregateSpec', 'Cell', 'DEFAULT_SPECS']
"""

from streams.aggregate.merge import WindowMerger, gate_cells, gate_place, merge_window
from streams.aggregate.partial import Cell, DimensionPartial, Partial, PartialAggregator
from streams.aggregate.spec import (
    DEFAULT_SPECS,
    OPS_5M,
    OTHER,
    PLACE,
    PRODUCT_1D,
    PRODUCT_1H,
    UNKNOWN,
    AggregateSpec,
)

__all__ = [
    "DEFAULT_SPECS",
    "OPS_5M",
    "OTHER",
    "PLACE",
    "PRODUCT_1D",
    "PRODUCT_1H",
    "UNKNOWN",
    "AggregateSpec",
    "Cell",
    "DimensionPartial",
    "Partial",
    "PartialAggregator",
    "WindowMerger",
    "gate_cells",
    "gate_place",
    "merge_window",
]
