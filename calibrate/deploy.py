"""A real, deployable GPTQ checkpoint for one configuration (``calibrate quantize``), written by GPTQModel.

A sweep measures configurations with fake-quantized weights; this module writes the one the advisor picked as a
checkpoint that inference stacks load (vLLM, SGLang, transformers + optimum, GPTQModel): packed INT32 ``qweight``,
``qzeros``, ``scales`` and ``quantize_config.json`` in the GPTQ format.

Why GPTQModel: it is the maintained successor of AutoGPTQ (AutoGPTQ is archived and end-of-life, and knows no Qwen3
or other architectures released since 2024), transformers' own GPTQ integration loads through it, and its GPTQ
follows the reference algorithm that ``calibrate/gptq.py`` reproduces (damping as a fraction of mean diag H, lazy
blocks, optional act-order). Version 7.6.0 is the pin: 7.7.0 needs torch >= 2.14.1.

Choices made here, and why:
- Calibration comes from ``calibrate.calibdata`` (same reader, tokenizer, seed and windows as a sweep), so a
  checkpoint is calibrated on exactly the Cb windows of ``seqlen`` tokens its configuration was measured with.
  The windows go to GPTQModel as ``{"input_ids", "attention_mask"}`` rows, with its minimum-length filter off (it
  drops rows of <= 10 tokens by default) and ``seqlen`` checked against the model's positions (GPTQModel would
  trim longer rows silently). Fewer windows than stated is refused: the checkpoint would not be the configuration.
- GPTQModel's own refinements that the sweep's GPTQ does not have are off: ``act_group_aware`` (its default when
  act-order is off) changes the algorithm, so it is disabled and recorded. Non-quantized weights keep GPTQModel's
  CPU/GPU load dtype (bfloat16/float16), the usual GPTQ deployment format.
- Every input is checked before GPTQModel is imported (it is slow to import and optional): bits, group size
  (it must divide every quantized layer's input width, read from a weightless meta-device model), output
  directory, model path, calibration size; each failure is one ``DeployError`` line.
- GPTQModel's side effects are contained: it runs with the working directory in a temporary folder (it writes
  ``./logs``), its stdout (banner, progress bars) goes to stderr so ``--json`` stays clean, and the environment
  variables it or its ``tokenicer`` dependency set (``HF_HOME``, caches, allocator settings) are restored after.
  ``GPTQMODEL_CPU_WORKERS`` defaults to at least 2 (GPTQModel refuses 2-core machines otherwise).
- The checkpoint is written to a staging folder beside ``out`` and renamed into place, so a failed run leaves no
  half-written checkpoint. A local model's ``tier_map.yaml`` and task folder are copied along, so
  ``calibrate evaluate --model OUT`` evaluates it on the same tasks; ``strata_quantize.json`` records the
  configuration, calibration (source, text hash, stated and effective Cb), timings, versions and parameters.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from strata.errors import UserError

GPTQMODEL_VERSION = "7.6.0"
SUPPORTED_BITS = (2, 3, 4, 8)
RECORD = "strata_quantize.json"
INSTALL_HINT = f'pip install "strata[deploy]" (or pip install gptqmodel=={GPTQMODEL_VERSION} optimum)'


class DeployError(UserError):
    """Input or environment that cannot produce a checkpoint; one line naming the input and the fix."""


def quantize_checkpoint(
    model: str,
    out: str,
    *,
    bits: int,
    group_size: int,
    calib_samples: int,
    calib_files: list[str] | None,
    dataset: str | None,
    dataset_name: str | None,
    split: str,
    text_field: str,
    seqlen: int,
    seed: int,
    sym: bool,
    act_order: bool,
    damp: float,
    device: str,
    trust_remote_code: bool,
) -> dict[str, Any]:
    """Quantize ``model`` with GPTQ into the checkpoint directory ``out``; return a summary (see the docstring)."""
    params = {
        "model": model,
        "out": out,
        "bits": bits,
        "group_size": group_size,
        "calib_samples": calib_samples,
        "calib_files": calib_files,
        "dataset": dataset,
        "dataset_name": dataset_name,
        "split": split,
        "text_field": text_field,
        "seqlen": seqlen,
        "seed": seed,
        "sym": sym,
        "act_order": act_order,
        "damp": damp,
        "device": device,
        "trust_remote_code": trust_remote_code,
    }
    start = time.perf_counter()
    _check_arguments(bits, group_size, calib_samples, seqlen, damp, device)
    out_dir = _check_out(out)
    model_ref, is_local = _resolve(model)
    files = [Path(f).expanduser().resolve() for f in calib_files] if calib_files else None
    if files:
        from calibrate.calibdata import CalibrationError

        for f in files:
            if not f.is_file():
                raise CalibrationError(f"calibration file {f} does not exist; fix --calib-file")
    elif not dataset:
        raise DeployError("no calibration text: pass --calib-file FILE (repeatable) or --dataset ID")

    config, tokenizer = _load_config(model_ref, trust_remote_code)
    _check_positions(config, seqlen, model_ref)
    _check_group_size(config, group_size, model_ref, trust_remote_code)
    dev = _resolve_device(device)

    from calibrate import calibdata

    t0 = time.perf_counter()
    source = calibdata.describe(files, dataset, dataset_name, split, text_field)
    documents = calibdata.read_documents(files, dataset, dataset_name, split, text_field)
    calib = calibdata.build(tokenizer, documents, calib_samples, seqlen, seed, source)
    if calib.effective < calib_samples:
        raise DeployError(
            f"calibration source {source} yields {calib.effective} windows of {seqlen} tokens, fewer than "
            f"Cb={calib_samples}; add text, lower --seqlen, or lower --calib-samples"
        )
    calibration_s = time.perf_counter() - t0
    rows = [{"input_ids": r.tolist(), "attention_mask": [1] * len(r)} for r in calib.ids]

    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would make the checkpoint private to this user
    try:
        with _contained() as workdir:
            gptqmodel = _import_gptqmodel()
            t1 = time.perf_counter()
            qcfg = {"bits": bits, "group_size": group_size, "sym": sym, "desc_act": act_order, "damp_percent": damp}
            _run_gptqmodel(gptqmodel, model_ref, staging, rows, qcfg, dev, trust_remote_code, workdir)
            quantize_s = time.perf_counter() - t1
        if is_local:
            _copy_tier_map(Path(model_ref), staging)
        size = sum(p.stat().st_size for p in staging.glob("*.safetensors"))
        saved = json.loads((staging / "config.json").read_text())
        record: dict[str, Any] = {
            "schema_version": 1,
            "model": model_ref,
            "config": {
                "method": "gptq",
                "bits": bits,
                "group_size": group_size,
                "calib_samples": calib_samples,
                "calib_samples_effective": calib.effective,
                "sym": sym,
                "act_order": act_order,
                "damp": damp,
            },
            "calibration": {
                "source": calib.source,
                "text_sha": calib.text_sha,
                "seqlen": seqlen,
                "seed": seed,
                "stated": calib_samples,
                "effective": calib.effective,
            },
            "quantizer": {
                "name": "gptqmodel",
                "format": "gptq",
                "act_group_aware": False,
                "dtype": saved.get("dtype", saved.get("torch_dtype")),  # of the weights left unquantized
                "calibration_rows": "input_ids + attention_mask, one window per row, no minimum-length filter",
            },
            "device": dev,
            "size_bytes": size,
            "seconds": {
                "calibration": round(calibration_s, 3),
                "quantize": round(quantize_s, 3),
                "total": round(time.perf_counter() - start, 3),
            },
            "versions": _versions(),
            "parameters": params,
        }
        (staging / RECORD).write_text(json.dumps(record, indent=2) + "\n")
        if out_dir.exists():
            out_dir.rmdir()  # checked empty up front
        staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return {
        "out": str(out_dir),
        "bits": bits,
        "group_size": group_size,
        "calib_samples": calib_samples,
        "calib_samples_effective": calib.effective,
        "seconds": record["seconds"]["total"],
        "size_bytes": size,
    }


# --- checks (all before GPTQModel is imported) -----------------------------------------------------------------


def _check_arguments(bits: int, group_size: int, calib_samples: int, seqlen: int, damp: float, device: str) -> None:
    if bits not in SUPPORTED_BITS:
        raise DeployError(f"--bits {bits} is not supported by GPTQ checkpoints; use one of 2, 3, 4, 8")
    if group_size != -1 and group_size <= 0:
        raise DeployError(f"--group-size must be positive or -1 (per channel), got {group_size}")
    if calib_samples <= 0:
        raise DeployError(f"--calib-samples must be positive, got {calib_samples}")
    if seqlen <= 0:
        raise DeployError(f"--seqlen must be positive, got {seqlen}")
    if not 0 < damp < 1:
        raise DeployError(f"--damp must be between 0 and 1 (a fraction of mean diag H), got {damp}")
    if device not in ("cpu", "cuda", "auto"):
        raise DeployError(f"--device must be cpu, cuda or auto, got {device}")


def _check_out(out: str) -> Path:
    path = Path(out).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise DeployError(f"--out {out} is a file; name a new or empty directory")
    if path.is_dir() and any(path.iterdir()):
        raise DeployError(f"--out {out} exists and is not empty; name a new or empty directory")
    if not path.parent.is_dir():
        raise DeployError(f"--out {out}: parent directory {path.parent} does not exist")
    return path


def _resolve(model: str) -> tuple[str, bool]:
    from calibrate.evaluate import EvaluateError, resolve_model

    try:
        ref, is_local = resolve_model(model)
    except EvaluateError as exc:
        raise DeployError(str(exc)) from None
    return (str(Path(ref).resolve()) if is_local else ref), is_local


def _load_config(model_ref: str, trust_remote_code: bool) -> tuple[Any, Any]:
    from transformers import AutoConfig, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(model_ref, trust_remote_code=trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(model_ref, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DeployError(f"cannot load model {model_ref}: {first}") from None
    if getattr(config, "quantization_config", None) is not None:
        raise DeployError(f"model {model_ref} is already quantized; pass the unquantized (16/32-bit) model")
    return config, tokenizer


def _check_positions(config: Any, seqlen: int, model_ref: str) -> None:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    limit = getattr(text, "max_position_embeddings", None)
    if isinstance(limit, int) and limit > 0 and seqlen > limit:
        raise DeployError(
            f"--seqlen {seqlen} is longer than model {model_ref}'s {limit} positions; use --seqlen {limit} or less"
        )


def _check_group_size(config: Any, group_size: int, model_ref: str, trust_remote_code: bool) -> None:
    """Every quantized layer's input width must be a multiple of the group size (read without loading weights)."""
    if group_size == -1:
        return
    import torch
    from transformers import AutoModelForCausalLM

    from calibrate.rtn import linear_layers

    try:
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DeployError(f"cannot build model {model_ref} from its config: {first}") from None
    for name, layer in linear_layers(skeleton).items():
        if layer.in_features % group_size:
            raise DeployError(
                f"--group-size {group_size} does not divide the input width {layer.in_features} of {model_ref}'s "
                f"layer {name}; use a divisor of every layer's width, or -1 (per channel)"
            )


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise DeployError("--device cuda but no CUDA device is available; use --device cpu")
    return device


# --- GPTQModel ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _contained() -> Iterator[Path]:
    """Run GPTQModel in a temporary working directory, with stdout sent to stderr and the environment restored."""
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    try:  # pin the Hugging Face caches to the ones already in use, so tokenicer's defaults cannot move them
        from huggingface_hub import constants

        os.environ.setdefault("HF_HOME", str(constants.HF_HOME))
        os.environ.setdefault("HF_HUB_CACHE", str(constants.HF_HUB_CACHE))
    except ImportError:
        pass
    if "GPTQMODEL_CPU_WORKERS" not in os.environ:
        os.environ["GPTQMODEL_CPU_WORKERS"] = str(max(2, ((os.cpu_count() or 1) + 1) // 2))
    sys.stdout.flush()
    saved_fd = os.dup(1)
    with tempfile.TemporaryDirectory(prefix="strata-quantize-") as tmp:
        try:
            os.chdir(tmp)
            os.dup2(2, 1)
            with contextlib.redirect_stdout(sys.stderr):
                yield Path(tmp)
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
            os.dup2(saved_fd, 1)
            os.close(saved_fd)
            os.chdir(saved_cwd)
            for key in set(os.environ) - set(saved_env):
                del os.environ[key]
            for key, value in saved_env.items():
                if os.environ.get(key) != value:
                    os.environ[key] = value


def _import_gptqmodel() -> Any:
    try:
        import gptqmodel
    except Exception as exc:  # ImportError, or a broken install raising anything at import time
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DeployError(f"GPTQModel is not installed or cannot be imported ({first}); {INSTALL_HINT}") from None
    return gptqmodel


def _run_gptqmodel(
    gptqmodel: Any,
    model_ref: str,
    staging: Path,
    rows: list[dict[str, list[int]]],
    qcfg: dict[str, Any],
    device: str,
    trust_remote_code: bool,
    workdir: Path,
) -> None:
    try:
        config = gptqmodel.QuantizeConfig(**qcfg, act_group_aware=False, offload_to_disk_path=str(workdir / "offload"))
        qmodel = gptqmodel.GPTQModel.load(model_ref, config, device=device, trust_remote_code=trust_remote_code)
        qmodel.quantize(rows, batch_size=1, calibration_data_min_length=0)
        qmodel.save(str(staging))
    except (KeyboardInterrupt, DeployError):
        raise
    except Exception as exc:  # GPTQModel raises many types; the command reports one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DeployError(f"GPTQModel could not quantize {model_ref}: {first}") from None


def _copy_tier_map(source: Path, dest: Path) -> None:
    from calibrate.evaluate import LOCAL_TIER_MAP

    tier_map = source / LOCAL_TIER_MAP
    if not tier_map.is_file():
        return
    shutil.copy2(tier_map, dest / LOCAL_TIER_MAP)
    import yaml

    include = (yaml.safe_load(tier_map.read_text()) or {}).get("include_path")
    if isinstance(include, str) and (source / include).is_dir() and not Path(include).is_absolute():
        shutil.copytree(source / include, dest / include, dirs_exist_ok=True)


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("strata", "gptqmodel", "torch", "transformers", "optimum"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
