"""The Kafka codecs logfog's two clients can handle (dependencies, checked without a
broker; ``test_worker.py`` reads records in each codec through a real worker).

Why: log shippers other than ours compress with whatever their operator chose, and a
record in a codec aiokafka cannot decode stopped the worker (its fetcher raised
UnsupportedCodecError). aiokafka decodes snappy, lz4 and zstd only through cramjam;
kafka-python writes lz4 only through the lz4 package, else ``logfog ship`` fell back to
gzip (5.1 µs a line to compress here, against 0.3 for lz4). kafka-python checksums
every record batch it writes or reads (CRC32C) in pure Python unless the ``crc32c``
module is installed: 3.7 MB/s, and the shipper sent 15k lines/s instead of 168k.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aiokafka import codec as aiokafka_codec
from kafka import codec as kafka_python_codec

from streams.shipper import available_compression, checksums_in_c


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_the_worker_reads_every_kafka_codec(codec: str) -> None:
    assert getattr(aiokafka_codec, f"has_{codec}")(), f"aiokafka cannot decode {codec}"


def test_the_shipper_writes_lz4() -> None:
    assert kafka_python_codec.has_lz4()
    assert available_compression() == "lz4"


@pytest.mark.parametrize(
    ("encode", "decode"),
    [
        (kafka_python_codec.lz4_encode, aiokafka_codec.lz4_decode),
        (kafka_python_codec.gzip_encode, aiokafka_codec.gzip_decode),
    ],
)
def test_what_the_shipper_writes_the_worker_reads(
    encode: Callable[[bytes], bytes], decode: Callable[[bytes], bytes]
) -> None:
    payload = b'198.51.100.7 - - [01/Jan/2026:00:00:00 +0000] "GET / HTTP/1.1" 200 1\n' * 100
    assert decode(encode(payload)) == payload


def test_kafka_python_checksums_record_batches_in_c() -> None:
    from crc32c import crc32c
    from kafka.record import util
    from kafka.record._crc32c import crc as pure_python_crc

    assert checksums_in_c()
    batch = bytes(range(256)) * 64
    assert util.calc_crc32c(batch) == crc32c(batch) == pure_python_crc(batch)
