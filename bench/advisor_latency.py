"""Cold-start latency of `advisor recommend`, as a ratio to `python -c pass` measured in the same run.

    python bench/advisor_latency.py [--runs 15]

Each sample is a fresh process (cold interpreter, warm OS file cache), so this is what a deployment pipeline
pays per call. Prints the median and the ratio to the bare interpreter's median.

The project's own modules are byte-compiled first, as `pip install` does for an installed package: an editable
checkout under PYTHONDONTWRITEBYTECODE=1 (this machine's and CI's setting) would otherwise recompile every module
on every call, ~40 ms that no installed user pays.
"""

from __future__ import annotations

import argparse
import compileall
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import numpy, pydantic'": [sys.executable, "-c", "import numpy, pydantic"],
    "advisor recommend (table)": [sys.executable, "-m", "advisor.cli", "recommend", "--model", "qwen3-8b",
                                  "--min-kr", "0.6"],
    "advisor recommend --json": [sys.executable, "-m", "advisor.cli", "recommend", "--model", "qwen3-8b",
                                 "--min-kr", "0.6", "--json"],
    "advisor predict --json": [sys.executable, "-m", "advisor.cli", "predict", "--model", "qwen3-8b", "--bits", "4",
                               "--group-size", "128", "--json"],
}  # fmt: skip


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    for package in ("advisor", "strata", "profiles"):
        compileall.compile_dir(root / package, quiet=1)
    for cmd in COMMANDS.values():  # warm the OS file cache once
        timed(cmd)
    medians = {name: statistics.median(timed(cmd) for _ in range(args.runs)) for name, cmd in COMMANDS.items()}
    base = medians["python -c pass"]
    print(f"{'command':<40} {'median s':>9} {'x python':>9}   ({args.runs} runs each)")
    for name, m in medians.items():
        print(f"{name:<40} {m:>9.3f} {m / base:>9.1f}")


if __name__ == "__main__":
    main()
