"""A stand-in for aiokafka's producer below the worker's publisher: it hands out
aiokafka's real ``BatchBuilder`` and records what ``send_batch`` is given (the bytes a
broker would get), optionally failing the way a broker or a bug would."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch

Sent = tuple[str, int, list[tuple[bytes | None, bytes]]]


class RecordingProducer:
    """Real batch builders; ``send_batch`` records instead of sending. ``fail(topic,
    partition, records)`` may return an exception to raise instead (nothing recorded)."""

    def __init__(
        self,
        batch_size: int = 1 << 20,
        fail: Callable[[str, int, list[tuple[bytes | None, bytes]]], BaseException | None]
        | None = None,
    ) -> None:
        self.batch_size = batch_size
        self.fail = fail
        self.sent: list[Sent] = []
        #: (topic, record timestamp in ms) of every record sent, as the broker stores it.
        self.timestamps: list[tuple[str, int]] = []
        self.failures = 0

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0)

    async def send_batch(self, builder: BatchBuilder, topic: str, *, partition: int) -> Any:
        batch = list(DefaultRecordBatch(bytes(builder._build())))
        records = [(r.key, r.value) for r in batch]
        error = self.fail(topic, partition, records) if self.fail else None
        if error is not None:
            self.failures += 1
            raise error
        self.sent.append((topic, partition, records))
        self.timestamps.extend((topic, r.timestamp) for r in batch)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def records(self, topic: str) -> list[tuple[int, bytes | None, bytes]]:
        """(partition, key, value) of every record sent to ``topic``."""
        return [(p, k, v) for t, p, rs in self.sent if t == topic for k, v in rs]

    def lines(self, topic: str) -> list[bytes]:
        """Every event sent to ``topic``, NDJSON records split."""
        return [e for _, _, v in self.records(topic) for e in v.split(b"\n")]
