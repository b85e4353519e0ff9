"""Golden files: each sample format -> expected events per destination and rejections.

The expected files are reviewed by hand; regenerate after an intended change with
``LOGFOG_UPDATE_GOLDEN=1 pytest tests/golden`` and read the diff before committing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from streams.pipeline import Pipeline, dead_letter
from tests.conftest import SAMPLE_INPUTS, SAMPLES

HERE = Path(__file__).parent
UPDATE = os.environ.get("LOGFOG_UPDATE_GOLDEN") == "1"


def render(pipeline: Pipeline, sample: Path) -> dict[str, bytes]:
    lines = sample.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = pipeline.test(lines)
    files = {
        f"{name}.ndjson": b"".join(v + b"\n" for v in out.values(name))
        for name in pipeline.public_names
    }
    files["rejected.ndjson"] = b"".join(dead_letter(r) + b"\n" for r in out.rejections)
    return files


@pytest.mark.parametrize("sample", sorted(SAMPLE_INPUTS))
def test_golden(sample: str, make_pipeline: Callable[..., Pipeline]) -> None:
    pipeline = make_pipeline(input=SAMPLE_INPUTS[sample])
    produced = render(pipeline, SAMPLES / sample)
    folder = HERE / sample.replace(".", "_")
    if UPDATE:
        folder.mkdir(exist_ok=True)
        for name, content in produced.items():
            (folder / name).write_bytes(content)
    for name, content in produced.items():
        expected = (folder / name).read_bytes()
        assert [orjson.loads(x) for x in content.splitlines()] == [
            orjson.loads(x) for x in expected.splitlines()
        ], f"{sample} -> {name} differs from the golden file"
