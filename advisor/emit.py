"""Handover: the chosen configuration as GPTQModel, llm-compressor or ``calibrate quantize`` input.

Pure functions of one configuration; nothing here imports GPTQModel, llm-compressor or torch.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

import yaml

from strata.errors import UserError

FORMATS = ("gptqmodel", "llmcompressor", "command")


class EmitError(UserError):
    """A configuration or format that cannot be emitted; one line naming the flag and the fix."""


@dataclass(frozen=True)
class Choice:
    """One GPTQ configuration to hand over."""

    model: str  # Hugging Face id or local folder
    bits: int
    group_size: int  # -1 = per channel
    calib_samples: int
    sym: bool = True
    act_order: bool = False
    damp: float = 0.01  # GPTQ damping, a fraction of the mean Hessian diagonal (GPTQModel's damp_percent)
    # Calibration text: local files, else a Hub dataset. WikiText-2 by default, the set GPTQ was introduced with
    # and the one arXiv 2404.14047 calibrates Llama-3 on; without a source `calibrate quantize` refuses to run.
    calib_files: tuple[str, ...] = ()
    dataset: str = "wikitext"
    dataset_name: str = "wikitext-2-raw-v1"
    seqlen: int | None = None  # tokens per sample; None: calibrate quantize's default

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or float(self.bits) not in (2.0, 3.0, 4.0, 8.0):
            raise EmitError(f"--bits {self.bits} cannot be emitted as GPTQ; use 2, 3, 4 or 8")
        object.__setattr__(self, "bits", int(self.bits))
        if self.group_size != -1 and self.group_size <= 0:
            raise EmitError(f"--group-size {self.group_size} is invalid; use -1 (per channel) or a positive size")
        if self.calib_samples <= 0:
            raise EmitError(f"calibration samples must be positive, got {self.calib_samples}")
        if not 0 < self.damp < 1:
            raise EmitError(f"damping must be in (0, 1), got {self.damp}")


def gptqmodel_config(c: Choice) -> dict[str, Any]:
    """Keyword arguments of GPTQModel 7.6.0's ``QuantizeConfig`` (gptqmodel/quantization/config.py), as
    ``calibrate quantize`` passes them (calibrate/deploy.py): ``act_group_aware`` off so ``desc_act`` alone decides
    the column order. Calibration samples are not a QuantizeConfig field: pass that many rows to ``quantize()``."""
    return {
        "bits": c.bits,
        "group_size": c.group_size,
        "desc_act": c.act_order,
        "sym": c.sym,
        "damp_percent": c.damp,
        "act_group_aware": False,
    }


def llmcompressor_recipe_dict(c: Choice) -> dict[str, Any]:
    """An llm-compressor recipe: one GPTQModifier with a compressed-tensors weight scheme; lm_head stays 16-bit."""
    weights: dict[str, Any] = {"num_bits": c.bits, "type": "int", "symmetric": c.sym}
    if c.group_size == -1:
        weights["strategy"] = "channel"
    else:
        weights.update(strategy="group", group_size=c.group_size)
    if c.act_order:
        # compressed-tensors 0.19 removed "group" (g_idx in the checkpoint); "weight" quantizes columns in activation
        # order and keeps the layout, the form serving kernels run fast
        weights["actorder"] = "weight"
    modifier = {
        "ignore": ["lm_head"],
        "dampening_frac": c.damp,
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights}},
    }
    return {"quant_stage": {"quant_modifiers": {"GPTQModifier": modifier}}}


def llmcompressor_recipe(c: Choice) -> str:
    """The recipe as YAML, headed by the ``oneshot`` call that applies it with the calibration sample count."""
    head = (
        f"# llm-compressor recipe for {c.model}: W{c.bits} GPTQ, "
        f"{'per channel' if c.group_size == -1 else f'group size {c.group_size}'}, "
        f"{'symmetric' if c.sym else 'asymmetric'}, act-order {'on' if c.act_order else 'off'}\n"
        f"# apply: oneshot(model={c.model!r}, dataset=..., recipe='recipe.yaml', "
        f"num_calibration_samples={c.calib_samples}, max_seq_length=2048)\n"
    )
    return head + yaml.safe_dump(llmcompressor_recipe_dict(c), sort_keys=False)


def calibrate_args(c: Choice, out: str = "") -> list[str]:
    """Arguments of ``calibrate quantize`` (calibrate/cli.py) for the configuration."""
    out = out or f"{c.model.rstrip('/').split('/')[-1]}-gptq-w{c.bits}g{c.group_size}"
    args = ["quantize", "--model", c.model, "--bits", str(c.bits), "--group-size", str(c.group_size),
            "--calib-samples", str(c.calib_samples), "--out", out]  # fmt: skip
    if c.calib_files:
        args += [a for f in c.calib_files for a in ("--calib-file", f)]
    else:
        args += ["--dataset", c.dataset, "--dataset-name", c.dataset_name]
    if c.seqlen is not None:
        args += ["--seqlen", str(c.seqlen)]
    if not c.sym:
        args.append("--asym")
    if c.act_order:
        args.append("--act-order")
    if c.damp != 0.01:
        args += ["--damp", f"{c.damp:g}"]
    return args


def calibrate_command(c: Choice, out: str = "") -> str:
    """The exact shell command."""
    return shlex.join(["calibrate", *calibrate_args(c, out)])


def emit(fmt: str, c: Choice, out: str = "") -> str:
    """Text for ``--emit fmt``: GPTQModel QuantizeConfig JSON, llm-compressor recipe YAML or the command."""
    if fmt == "gptqmodel":
        import json

        return json.dumps(gptqmodel_config(c), indent=2)
    if fmt == "llmcompressor":
        return llmcompressor_recipe(c)
    if fmt == "command":
        return calibrate_command(c, out)
    raise EmitError(f"unknown --emit {fmt!r}; use one of {', '.join(FORMATS)}")
