"""Read bench/gpu.sh's logs and write the ratios it measures as one JSON file (the figures stay in the logs).

    python bench/gpu_ratios.py OUT_DIR      # reads OUT_DIR/{gptq_speed,sweep_vs_naive,eval_throughput}.log

Each ratio is parsed from the line its bench script prints (the line is kept beside it); a bench that was skipped
or failed is recorded with its reason, never as a number.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# name -> (log, the printed line's pattern, what the ratio is)
RATIOS = {
    "gptq_stage_llmcompressor_over_ours": (
        "gptq_speed.log",
        r"ratio llm-compressor s/config / ours s/config: .* = ([0-9.]+)x",
        "llm-compressor oneshot s/config over one batched quantize_model call's s/config (same Cb, same configs)",
    ),
    "sweep_naive_over_ours": (
        "sweep_vs_naive.log",
        r"s/config\s+naive [0-9.]+\s+ours [0-9.]+\s+ratio ([0-9.]+)x",
        "naive (GPTQModel quantize, save, reload, lm-eval) s/config over run_sweep's s/config",
    ),
    "eval_time_over_forward": (
        "eval_throughput.log",
        r"evaluation throughput = [0-9.]+% of the plain forward pass \(([0-9.]+)x its time\)",
        "tiered evaluation time over a plain forward pass of the same token sequences",
    ),
}


def summarize(out: Path) -> dict:
    result: dict = {"ratios": {}, "machine": None}
    machine = out / "machine.txt"
    if machine.is_file():
        result["machine"] = machine.read_text().strip()
    for name, (log, pattern, what) in RATIOS.items():
        entry: dict = {"what": what, "log": log}
        skipped = out / (log.removesuffix(".log") + ".skipped")
        path = out / log
        if skipped.is_file():
            entry["skipped"] = skipped.read_text().strip()
        elif not path.is_file():
            entry["skipped"] = "not run"
        else:
            text = path.read_text()
            m = re.search(pattern, text)
            if m:
                entry["value"] = float(m.group(1))
                entry["line"] = m.group(0)
            else:
                tail = [ln for ln in text.splitlines() if ln.strip()][-1:] or ["(empty log)"]
                entry["failed"] = tail[0][:300]
        result["ratios"][name] = entry
    return result


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0])
    summary = summarize(out)
    (out / "ratios.json").write_text(json.dumps(summary, indent=2) + "\n")
    for name, e in summary["ratios"].items():
        print(f"{name:<36} " + (f"{e['value']:.2f}x" if "value" in e else f"-- {e.get('skipped') or e.get('failed')}"))


if __name__ == "__main__":
    main()
