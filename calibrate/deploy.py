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

from calibrate.machine import library_versions, resolve_device
from calibrate.spec import CalibrationSpec, GptqSpec, calibration_source
from strata.errors import UserError, first_line
from strata.law import PER_CHANNEL, group_size_problem

GPTQMODEL_VERSION = "7.6.0"
RECORDED_LIBRARIES = ("strata", "gptqmodel", "torch", "transformers", "optimum")
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
    calibration: CalibrationSpec,
    gptq: GptqSpec,
    device: str = "auto",
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Quantize ``model`` with GPTQ into the checkpoint directory ``out``; return a summary (see the docstring).

    ``calibration`` names the text, ``seqlen`` and one seed (``allow_short`` does not apply: fewer windows than
    ``calib_samples`` are refused); of ``gptq``, GPTQModel takes ``damp``, ``act_order`` and ``sym``.
    """
    start = time.perf_counter()
    target = {"bits": bits, "group_size": group_size, "calib_samples": calib_samples}
    check_arguments(bits, group_size, calib_samples, calibration.seqlen, gptq.damp, device)
    seed = _one_seed(calibration)
    out_dir = _check_out(out)
    model_ref, is_local = _resolve(model)
    files = _calibration_files(calibration)
    config, tokenizer = _load_config(model_ref, trust_remote_code)
    _check_positions(config, calibration.seqlen, model_ref)
    _check_group_size(config, group_size, model_ref, trust_remote_code)
    dev = resolve_device(device)

    t0 = time.perf_counter()
    calib = _calibration_set(tokenizer, calibration, files, calib_samples, seed)
    seconds = {"calibration": round(time.perf_counter() - t0, 3)}
    rows = [{"input_ids": r.tolist(), "attention_mask": [1] * len(r)} for r in calib.ids]
    qcfg = {
        "bits": bits,
        "group_size": group_size,
        "sym": gptq.sym,
        "desc_act": gptq.act_order,
        "damp_percent": gptq.damp,
    }
    with _staged(out_dir) as staging:
        with _contained() as workdir:
            gptqmodel = _import_gptqmodel()
            t1 = time.perf_counter()
            _run_gptqmodel(gptqmodel, model_ref, staging, rows, qcfg, dev, trust_remote_code, workdir)
            seconds["quantize"] = round(time.perf_counter() - t1, 3)
        if is_local:
            _copy_tier_map(Path(model_ref), staging)
        size = sum(p.stat().st_size for p in staging.glob("*.safetensors"))
        seconds["total"] = round(time.perf_counter() - start, 3)
        parameters = {
            "model": model,
            "out": out,
            **target,
            "calibration": calibration.model_dump(),
            "gptq": gptq.model_dump(),
            "device": device,
            "trust_remote_code": trust_remote_code,
        }
        record = _record(staging, model_ref, target, calib, calibration, gptq, dev, size, seconds, parameters)
        (staging / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return {
        "out": str(out_dir),
        **target,
        "calib_samples_effective": calib.effective,
        "seconds": seconds["total"],
        "size_bytes": size,
    }


# --- steps -------------------------------------------------------------------------------------------------------


def _calibration_set(tokenizer: Any, cal: CalibrationSpec, files: list[Path] | None, samples: int, seed: int) -> Any:
    """The sweep's calibration windows (``calibrate.calibdata``): exactly ``samples`` of them, or a ``DeployError``."""
    from calibrate import calibdata

    source = calibration_source(files, cal.dataset, cal.name, cal.split, cal.text_field)
    documents = calibdata.read_documents(files, cal.dataset, cal.name, cal.split, cal.text_field)
    calib = calibdata.build(tokenizer, documents, samples, cal.seqlen, seed, source)
    if calib.effective < samples:
        raise DeployError(
            f"calibration source {source} yields {calib.effective} windows of {cal.seqlen} tokens, fewer than "
            f"Cb={samples}; add text, lower --seqlen, or lower --calib-samples"
        )
    return calib


@contextlib.contextmanager
def _staged(out_dir: Path) -> Iterator[Path]:
    """A staging folder beside ``out_dir``, renamed into place when the block succeeds and removed otherwise."""
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would make the checkpoint private to this user
    try:
        yield staging
        if out_dir.exists():
            out_dir.rmdir()  # checked empty up front
        staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _record(
    staging: Path,
    model_ref: str,
    target: dict[str, int],
    calib: Any,
    cal: CalibrationSpec,
    gptq: GptqSpec,
    device: str,
    size: int,
    seconds: dict[str, float],
    parameters: dict[str, Any],
) -> dict[str, Any]:
    """What ``strata_quantize.json`` records (see the module docstring)."""
    saved = json.loads((staging / "config.json").read_text())
    return {
        "schema_version": 1,
        "model": model_ref,
        "config": {
            "method": "gptq",
            **target,
            "calib_samples_effective": calib.effective,
            "sym": gptq.sym,
            "act_order": gptq.act_order,
            "damp": gptq.damp,
        },
        "calibration": {
            "source": calib.source,
            "text_sha": calib.text_sha,
            "seqlen": cal.seqlen,
            "seed": cal.seeds[0],
            "stated": target["calib_samples"],
            "effective": calib.effective,
        },
        "quantizer": {
            "name": "gptqmodel",
            "format": "gptq",
            "act_group_aware": False,
            "dtype": saved.get("dtype", saved.get("torch_dtype")),  # of the weights left unquantized
            "calibration_rows": "input_ids + attention_mask, one window per row, no minimum-length filter",
        },
        "device": device,
        "size_bytes": size,
        "seconds": seconds,
        "versions": {"python": platform.python_version(), **library_versions(RECORDED_LIBRARIES)},
        "parameters": parameters,
    }


# --- checks (all before GPTQModel is imported) -----------------------------------------------------------------


def check_arguments(bits: int, group_size: int, calib_samples: int, seqlen: int, damp: float, device: str) -> None:
    """The settings' own checks, named by their ``calibrate quantize`` flags (the CLI runs them before it builds
    the spec objects, whose own validation would name fields instead)."""
    if bits not in SUPPORTED_BITS:
        raise DeployError(f"--bits {bits} is not supported by GPTQ checkpoints; use one of 2, 3, 4, 8")
    if why := group_size_problem(group_size):
        raise DeployError(f"--group-size {group_size} {why}")
    if calib_samples <= 0:
        raise DeployError(f"--calib-samples must be positive, got {calib_samples}")
    if seqlen <= 0:
        raise DeployError(f"--seqlen must be positive, got {seqlen}")
    if not 0 < damp < 1:
        raise DeployError(f"--damp must be between 0 and 1 (a fraction of mean diag H), got {damp}")
    if device not in ("cpu", "cuda", "auto"):
        raise DeployError(f"--device must be cpu, cuda or auto, got {device}")


def _one_seed(calibration: CalibrationSpec) -> int:
    if len(calibration.seeds) != 1:
        raise DeployError(f"a checkpoint is calibrated with one seed, got {calibration.seeds}; pass one --seed")
    return calibration.seeds[0]


def _calibration_files(calibration: CalibrationSpec) -> list[Path] | None:
    """The calibration files, resolved and checked to exist (None: the calibration names a dataset)."""
    if not calibration.files:
        return None
    from calibrate.calibdata import CalibrationError

    files = [Path(f).expanduser().resolve() for f in calibration.files]
    for f in files:
        if not f.is_file():
            raise CalibrationError(f"calibration file {f} does not exist; fix --calib-file")
    return files


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
        raise DeployError(f"cannot load model {model_ref}: {first_line(exc)}") from None
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
    """The group size must fit every quantized layer's input width (read without loading weights)."""
    if group_size == PER_CHANNEL:
        return
    import torch
    from transformers import AutoModelForCausalLM

    from calibrate.sweep import group_size_misfit

    try:
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise DeployError(f"cannot build model {model_ref} from its config: {first_line(exc)}") from None
    if misfit := group_size_misfit(skeleton, [group_size]):
        _, name, why = misfit
        raise DeployError(
            f"--group-size {group_size} {why} of {model_ref}'s layer {name}; use a divisor of every layer's width, "
            f"or {PER_CHANNEL} (per channel)"
        )


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
        raise DeployError(
            f"GPTQModel is not installed or cannot be imported ({first_line(exc)}); {INSTALL_HINT}"
        ) from None
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
        raise DeployError(f"GPTQModel could not quantize {model_ref}: {first_line(exc)}") from None


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
