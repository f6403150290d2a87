"""The profiles strata ships, each a named fit of published data. `fit run --preset NAME` regenerates one."""

from __future__ import annotations

from fit.profiles import FitSpec

PRESETS: dict[str, FitSpec] = {
    "qwen3": FitSpec(
        name="qwen3",
        description="Qwen3 post-trained models 0.6B-14B quantized with GPTQ (arXiv 2505.02214v1 Tables 1-4)",
        families=("Qwen3",),
        stages=("post-trained",),
    ),
    "qwen3-base": FitSpec(
        name="qwen3-base",
        description="Qwen3 base models 0.6B-14B quantized with GPTQ (arXiv 2505.02214v1 Tables 1-4)",
        families=("Qwen3",),
        applies_to=("Qwen3-Base",),  # chosen with --profile qwen3-base; qwen3 is the default for Qwen3
        stages=("base",),
    ),
    "llama": FitSpec(
        name="llama",
        description=(
            "LLaMA-1 7B-65B and Llama-2 7B-70B base models quantized with GPTQ, from one source and harness "
            "(AutoRound paper tables, arXiv 2309.05516); the Llama-2-chat rows of arXiv 2409.11055v6 are another "
            "stage on another protocol (acc_norm, 5-25 shots) at one configuration (W4 g128) and are left out"
        ),
        families=("Llama-2", "LLaMA-1"),
        stages=("base",),
    ),
    "llama3": FitSpec(
        name="llama3",
        description=(
            "Llama-3 generation quantized with GPTQ: Meta-Llama-3-8B (arXiv 2404.14047v3, W8-W2 at G128 and "
            "per-channel) and the instruction-tuned Llama-3.2-1B/3B and Llama-3.1-8B/70B (arXiv 2409.11055v6, "
            "W4 g128, AutoGPTQ)"
        ),
        families=("Llama-3",),
    ),
    "qwen1-chat": FitSpec(
        name="qwen1-chat",
        description=(
            "Qwen-1.8B/7B/14B/72B-Chat quantized with GPTQ Int8/Int4 (the QwenLM/Qwen README's table; AutoGPTQ, "
            "4,000 SFT samples; group size 128 from the makers' run_gptq.py): MMLU and GSM8K only, so a family "
            "of the joint fit (it informs the population a new family is drawn from) more than a profile to use"
        ),
        families=("Qwen",),
    ),
    "qwen2-instruct": FitSpec(
        name="qwen2-instruct",
        description=(
            "Qwen2-0.5B/1.5B/7B-Instruct quantized with GPTQ Int8/Int4 (the QwenLM/Qwen2.5 docs' benchmark page; "
            "group size 128 from the makers' gptq.rst recipe, the calibration-set size not stated, fitted at the "
            "nominal 128): MMLU only, so a family of the joint fit more than a profile to use"
        ),
        families=("Qwen2",),
    ),
}
