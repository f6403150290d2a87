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
            "Llama-family base models quantized with GPTQ: LLaMA-1 7B-65B and Llama-2 7B-70B, from one source "
            "and harness (AutoRound paper tables, arXiv 2309.05516). Meta-Llama-3-8B (arXiv 2404.14047v3) is left "
            "out: one model size from another harness and task set; pooled, it drops KA/KR adjusted R² to 0.69/0.59"
        ),
        families=("Llama-2", "LLaMA-1"),
        applies_to=("Llama-2", "LLaMA-1", "Llama-3"),  # Llama-3 queries are flagged as a cross-generation use
    ),
}
