"""Instructions per line of the pure pipeline, counted by callgrind: repeatable where
wall time is not (this 2-core VM's CPU time of the same run varies 2x within minutes).

    python bench/instructions.py [TREE ...] [--lines N] [--no-aggregates]

For each source tree (default: this one), runs the default config over N generated
combined lines twice under ``valgrind --tool=callgrind``, once without processing,
and prints (processing - setup) / (2 N): compare two commits by checking one out in a
worktree (``git worktree add /tmp/base HEAD~1``) and passing both trees. About two
minutes per tree for 20,000 lines.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import sys
tree, n, passes, aggregates = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
sys.path[:0] = [tree + "/bench", tree]
from pathlib import Path
from run import make_lines
from streams.config import load_file
from streams.pipeline import Pipeline
lines = make_lines(n)
config, _ = load_file(Path(tree) / "config" / "logfog.yaml")
if aggregates == "off":
    config["aggregates"]["enabled"] = False
    config["destinations"].pop("_aggregate", None)
pipeline = Pipeline.from_normalized(config)
out = pipeline.new_output()
for _ in range(passes):
    for i in range(0, n, 2000):
        pipeline.process_lines(lines[i:i + 2000], out)
        out.clear()
"""


def collected(tree: Path, lines: int, passes: int, aggregates: str) -> int:
    run = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, "-c", _CHILD, str(tree), str(lines), str(passes), aggregates],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    match = re.search(r"Collected : (\d+)", run.stderr)
    if match is None:
        raise SystemExit(f"no callgrind total for {tree}:\n{run.stderr[-2000:]}")
    return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="*", type=Path, default=[ROOT])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--no-aggregates", action="store_true")
    args = parser.parse_args(argv)
    aggregates = "off" if args.no_aggregates else "on"
    for tree in args.trees:
        setup = collected(tree.resolve(), args.lines, 0, aggregates)
        total = collected(tree.resolve(), args.lines, 2, aggregates)
        per_line = (total - setup) / (2 * args.lines)
        print(f"{tree}: {per_line:,.0f} instructions a line", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
