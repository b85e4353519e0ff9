"""Stand-ins for kafka-python's ``KafkaProducer`` below ``streams.shipper.ship``, with a
scripted broker: what happens to each record is decided by ``outcome(n, value)`` for
the n-th ``send`` (resends included), the way a real producer reports it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest

#: The record is acknowledged.
OK = "ok"
#: The broker was away longer than the producer's delivery timeout: the record
#: expires with KafkaTimeoutError (retriable).
DOWN = "down"
#: The broker refuses the record for good (MessageSizeTooLargeError, not retriable).
REFUSED = "refused"
#: No answer: the record's future never completes and ``flush(timeout)`` raises
#: KafkaTimeoutError, as kafka-python 3's RecordAccumulator.await_flush_completion does.
SILENT = "silent"


class ScriptedProducer:
    """``send`` completes each record's future at once as ``outcome`` says (override
    it); ``acked`` holds the values the broker took, in order."""

    instances: ClassVar[list[ScriptedProducer]] = []

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.sends = 0
        self.silent = 0
        self.acked: list[bytes] = []
        ScriptedProducer.instances.append(self)

    def outcome(self, n: int, value: bytes) -> str:
        return OK

    def send(self, topic: str, value: bytes) -> Any:
        from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

        what = self.outcome(self.sends, value)
        self.sends += 1
        self.silent += what == SILENT
        acked = self.acked
        error: Exception | None = None
        if what == DOWN:
            error = KafkaTimeoutError("Batch for TopicPartition expired")
        elif what == REFUSED:
            error = MessageSizeTooLargeError()

        class Future:
            def add_callback(self, fn: Callable[..., Any]) -> None:
                if what == OK:
                    acked.append(value)
                    fn(None)

            def add_errback(self, fn: Callable[..., Any]) -> None:
                if error is not None:
                    fn(error)

        return Future()

    def flush(self, timeout: float | None = None) -> None:
        from kafka.errors import KafkaTimeoutError

        if self.silent:
            raise KafkaTimeoutError("Timeout waiting for future")

    def close(self, timeout: float | None = None) -> None: ...


def use_producer(monkeypatch: pytest.MonkeyPatch, producer: type[ScriptedProducer]) -> None:
    """``ship()`` with ``producer`` for kafka-python's, and a broker that has the raw topic."""
    import kafka

    import streams.shipper as shipper

    monkeypatch.setattr(kafka, "KafkaProducer", producer)
    monkeypatch.setattr(shipper, "describe_topics", lambda *a, **k: {"logs.raw": object()})
