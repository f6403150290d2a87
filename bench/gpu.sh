#!/usr/bin/env bash
# One prepared run for an air-gapped GPU node (about 15 minutes there): on a Qwen3-1.7B-shaped random model,
#   1. the GPTQ stage per configuration, ours (one batched quantize_model call) against llm-compressor oneshot,
#      over 16 configurations (bits 2,3,4,8 x G 32,64,128,-1) at the same Cb   (bench/gptq_speed.py)
#   2. the whole sweep per configuration against the naive path (GPTQModel quantize, save, reload, lm-eval)
#                                                                              (bench/sweep_vs_naive.py)
#   3. evaluation throughput against a plain forward pass                      (bench/eval_throughput.py)
# all as ratios, written to OUT/ratios.json (bench/gpu_ratios.py) beside each bench's full log.
#
#   bench/gpu.sh OUT [--wheelhouse DIR] [--tiny]          (or OUT=... WHEELHOUSE=... TINY=1 bench/gpu.sh)
#
# The node's Python 3.12 has torch, transformers and jax but not pydantic, lm-eval or gptqmodel: with --wheelhouse
# (built where PyPI is reachable: python scripts/wheelhouse.py --out wheelhouse --extras calibrate,deploy
# --python 3.12, plus `pip download llmcompressor` into the same folder) they are installed from it, with no
# index, into a virtual environment that sees the node's own torch (--system-site-packages).
# --tiny: a 2-layer hidden-128 Qwen3 (vocabulary 249), 4 configurations, small Cb and the CPU (what the test suite runs, tests/test_bench_gpu.py); a
# bench whose library is absent (llm-compressor, GPTQModel) is recorded as skipped with the reason, not as a number.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"

OUT="${OUT:-}"
WHEELHOUSE="${WHEELHOUSE:-}"
TINY="${TINY:-0}"
while [ $# -gt 0 ]; do
    case "$1" in
        --wheelhouse) WHEELHOUSE="$2"; shift 2 ;;
        --tiny) TINY=1; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) OUT="$1"; shift ;;
    esac
done
[ -n "$OUT" ] || { echo "bench/gpu.sh: name an output folder (bench/gpu.sh OUT or OUT=... bench/gpu.sh)" >&2; exit 2; }
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TQDM_DISABLE=1 GPTQMODEL_DISABLE_PACK_EXT=1

PY="${PYTHON:-python3}"
if [ -n "$WHEELHOUSE" ]; then
    "$PY" -m venv --system-site-packages "$OUT/venv"
    "$OUT/venv/bin/pip" install -q --no-index --find-links "$WHEELHOUSE" "$root[calibrate,deploy]"
    "$OUT/venv/bin/pip" install -q --no-index --find-links "$WHEELHOUSE" llmcompressor ||
        echo "llm-compressor is not in the wheelhouse: its comparison will be skipped" >&2
    PY="$OUT/venv/bin/python"
fi
has() { "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)"; }

if [ "$TINY" = 1 ]; then
    shape=tiny device=cpu cb=4 seqlen=16 limit=8 layers="" glayers="" vocab=249 bits=2,4 groups=32,-1
else
    # Budget (estimated, not yet measured on a GPU): llm-compressor runs 16 oneshot calls, so its comparison cuts the
    # depth to 8 of the 28 blocks (every block keeps the 1.7B shape; the ratio is per configuration); the sweep and
    # the naive path run 3 configurations on the full depth; Cb 32 x 256 tokens.
    shape=qwen3-1.7b cb=32 seqlen=256 limit=100 layers="" glayers=8 vocab=151936 bits=2,3,4,8 groups=32,64,128,-1
    device=$("$PY" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
fi
"$PY" - > "$OUT/machine.txt" <<PYEOF
import platform, torch, transformers
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
print(f"{platform.node()} python {platform.python_version()} torch {torch.__version__} "
      f"transformers {transformers.__version__} device $device ({gpu}) shape $shape Cb $cb seqlen $seqlen")
PYEOF
cat "$OUT/machine.txt"
cd "$root"
rm -f "$OUT"/*.skipped

# the model every bench reads: random weights of the shape, the world's tokenizer and tasks
"$PY" bench/random_checkpoint.py --shape "$shape" --out "$OUT/model" --vocab "$vocab" ${layers:+--layers "$layers"} \
    --dtype "$([ "$device" = cuda ] && echo bfloat16 || echo float32)"

# 1. GPTQ stage: 16 configurations at one Cb, ours against llm-compressor oneshot
lib=""
has llmcompressor || { lib="--no-library"; echo "llmcompressor is not installed" > "$OUT/gptq_speed.skipped"; }
"$PY" bench/gptq_speed.py --shape "$shape" ${glayers:+--layers "$glayers"} --device "$device" --samples "$cb" --seqlen "$seqlen" \
    --bits "$bits" --groups "$groups" --no-alone $lib 2>&1 | tee "$OUT/gptq_speed.log" || true  # a failure is recorded by gpu_ratios.py

# 2. the whole sweep against the naive path (it needs GPTQModel)
if has gptqmodel; then
    "$PY" bench/sweep_vs_naive.py --model "$OUT/model" --device "$device" --bits 2,4,8 --groups 32 \
        --calib-samples "$cb" --seqlen "$seqlen" --limit "$limit" 2>&1 | tee "$OUT/sweep_vs_naive.log" || true
else
    echo "gptqmodel is not installed (the deploy extra)" > "$OUT/sweep_vs_naive.skipped"
fi

# 3. evaluation throughput against a plain forward pass
"$PY" bench/eval_throughput.py --model "$OUT/model" --device "$device" --repeats "$([ "$TINY" = 1 ] && echo 1 || echo 3)" \
    2>&1 | tee "$OUT/eval_throughput.log" || true

"$PY" bench/gpu_ratios.py "$OUT"
