"""The sweep specification: one YAML file naming the models, the (B, G, Cb) grid, calibration, evaluation, store.

Validated by pydantic on load; a bad file stops with one line naming the field and the fix (``SpecError``).
Relative paths in the file (models, calibration files, tier map, store) are read against the spec's own folder,
so a spec and its data move together.

Three ideas are defined here once:
- a *unit* of work: one model, one calibration seed and one Cb with a batch of (B, G) configurations quantized
  together (they share calibration data), or the model's unquantized reference evaluation;
- the *protocol* of a stored row: the quantizer's settings and the evaluation protocol, a short string that is part
  of every stored row's key, so results of two specs that differ in either never mask one another;
- the *spec hash*: what the results depend on (not the store path, device or batching), recorded in every row.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from strata.errors import UserError
from strata.law import PER_CHANNEL, group_size_problem

SPEC_VERSION = 1


class SpecError(UserError):
    """A sweep spec that cannot be used; the message is one line naming the field and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Strict):
    model: str = Field(description="Hugging Face id or local checkpoint directory")
    name: str | None = Field(default=None, description="name in the store; default: the id, or the folder name")
    family: str | None = Field(default=None, description="model family in the store; default: config.model_type")
    trust_remote_code: bool = False

    @property
    def label(self) -> str:
        return self.name or (Path(self.model).name if Path(self.model).exists() else self.model)


def calibration_source(files: list[str] | list[Path] | None, dataset: str | None, name: str | None, split: str,
                       field: str) -> str:  # fmt: skip
    """The calibration source as one short string (the store's ``calib_dataset``): file names, not paths, since
    paths differ between machines (the text itself is hashed per row: ``calib_text_sha``)."""
    if files:
        return "files:" + ",".join(Path(p).name for p in files)
    return f"hf:{dataset}" + (f"/{name}" if name else "") + f":{split}:{field}"


class CalibrationSpec(_Strict):
    files: list[str] | None = Field(default=None, description="local .txt (a document per line) or .jsonl files")
    dataset: str | None = Field(default=None, description="Hugging Face dataset id (needs the Hub or its cache)")
    name: str | None = Field(default=None, description="dataset config name, e.g. wikitext-2-raw-v1")
    split: str = "train"
    text_field: str = "text"
    seqlen: int = Field(default=2048, gt=0, description="tokens per calibration sample")
    seeds: list[int] = Field(default=[0], min_length=1, description="one calibration draw per seed")
    allow_short: bool = Field(
        default=False, description="run even if the source has fewer than Cb windows (the effective Cb is stored)"
    )

    def source(self) -> str:
        """What the store records as this calibration's ``calib_dataset``."""
        return calibration_source(self.files, self.dataset, self.name, self.split, self.text_field)

    @model_validator(mode="after")
    def _one_source(self) -> CalibrationSpec:
        if bool(self.files) == bool(self.dataset):
            raise ValueError("name exactly one calibration source: files: [...] or dataset: <hf id>")
        return self


class GptqSpec(_Strict):
    damp: float = Field(default=0.01, gt=0, lt=1, description="damping, a fraction of mean diag H")
    block_size: int = Field(default=128, gt=0)
    act_order: bool = False
    sym: bool = Field(default=False, description="symmetric grid (applies to rtn too)")
    true_sequential: bool = True
    propagate: Literal["quantized", "original"] = Field(
        default="quantized", description="inputs of layer l+1 come from the quantized (default) or original layer l"
    )
    batch_size: int = Field(default=8, gt=0, description="calibration samples per forward pass")


class EvaluationSpec(_Strict):
    tier_map: str | None = Field(default=None, description="default: the checkpoint's own, else the project's")
    tasks: list[str] | None = None
    limit: int | None = Field(default=None, gt=0, description="items per task, a seeded random subset")
    seed: int = 0
    batch_size: int = Field(default=64, gt=0)
    datasets: str | None = Field(
        default=None, description="a local dataset mirror (`calibrate datasets pack`); default: $STRATA_DATASETS"
    )


class SweepSpec(_Strict):
    version: int = SPEC_VERSION
    name: str = Field(min_length=1)
    models: list[ModelSpec] = Field(min_length=1)
    method: Literal["gptq", "rtn"] = "gptq"
    bits: list[int] = Field(min_length=1)
    group_sizes: list[int] = Field(min_length=1, description="-1 = per channel")
    calib_samples: list[int] = Field(default=[128], min_length=1, description="Cb grid (ignored by rtn)")
    calibration: CalibrationSpec | None = None
    gptq: GptqSpec = GptqSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    store: str = Field(default="sweep.sqlite", description="results store, relative to the spec")
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    configs_per_batch: int | Literal["auto"] = Field(
        default="auto", description="(B, G) configurations quantized together; auto = sized to free memory"
    )

    @field_validator("version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v != SPEC_VERSION:
            raise ValueError(f"spec version {v} is not supported; this strata reads version {SPEC_VERSION}")
        return v

    @field_validator("models", mode="before")
    @classmethod
    def _model_strings(cls, v: Any) -> Any:
        return [{"model": m} if isinstance(m, str) else m for m in v] if isinstance(v, list) else v

    @field_validator("bits")
    @classmethod
    def _bits(cls, v: list[int]) -> list[int]:
        bad = [b for b in v if not 2 <= b <= 8]
        if bad:
            raise ValueError(f"bit-widths must be integers in 2..8, got {bad}")
        return sorted(set(v))

    @field_validator("group_sizes")
    @classmethod
    def _groups(cls, v: list[int]) -> list[int]:
        bad = [g for g in v if group_size_problem(g)]
        if bad:
            raise ValueError(f"group sizes must be positive or {PER_CHANNEL} (per channel), got {bad}")
        return sorted(set(v), key=lambda g: (g == PER_CHANNEL, g))

    @field_validator("calib_samples")
    @classmethod
    def _cb(cls, v: list[int]) -> list[int]:
        if any(c <= 0 for c in v):
            raise ValueError(f"calibration sizes must be positive, got {v}")
        return sorted(set(v))

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("cpu", "cuda", "auto") and not v.startswith("cuda:"):
            raise ValueError(f"device must be cpu, cuda, cuda:N or auto, got {v!r}")
        return v

    @model_validator(mode="after")
    def _needs_calibration(self) -> SweepSpec:
        if self.method == "gptq" and self.calibration is None:
            raise ValueError("method gptq needs a calibration: section (files or dataset, seqlen, seeds)")
        return self

    # --- derived ----------------------------------------------------------------------------------------------

    def protocol(self, reference: bool = False) -> str:
        """Quantizer settings + evaluation protocol: part of every stored row's key (see the module docstring).

        The unquantized reference carries the evaluation part only: specs that differ in quantizer settings share it.
        """
        ev = self.evaluation
        tasks = ",".join(sorted(ev.tasks)) if ev.tasks else "all"
        evaluation = f"eval:{tasks},limit={ev.limit or 'all'},seed={ev.seed},{self.dtype}"
        if reference:
            return evaluation
        g = self.gptq
        if self.method == "gptq":
            quant = (
                f"gptq:{'sym' if g.sym else 'asym'},damp={g.damp:g},block={g.block_size},"
                f"{'act' if g.act_order else 'noact'},{'tseq' if g.true_sequential else 'blk'},prop={g.propagate}"
            )
        else:
            quant = f"rtn:{'sym' if g.sym else 'asym'}"
        return f"{quant}|{evaluation}"

    def content_hash(self) -> str:
        """Hash of what the results depend on (not store, device, batching or names of the spec)."""
        data = self.model_dump(exclude={"store", "device", "configs_per_batch", "name"})
        data["gptq"].pop("batch_size", None)
        data["evaluation"].pop("batch_size", None)
        data["evaluation"].pop("datasets", None)  # where the same data is read from, not what is measured
        # Paths differ between machines; names stand for them (file contents are hashed per row: calib text_sha).
        data["models"] = [{"name": m.label, "family": m.family} for m in self.models]
        if self.calibration is not None and self.calibration.files:
            data["calibration"]["files"] = [Path(f).name for f in self.calibration.files]
        if self.evaluation.tier_map:
            data["evaluation"]["tier_map"] = Path(self.evaluation.tier_map).name
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def parse_spec(data: Any, origin: str = "spec") -> SweepSpec:
    """Validate a spec mapping; raise ``SpecError`` with one line naming the first bad field."""
    if not isinstance(data, dict):
        raise SpecError(f"{origin}: a sweep spec is a YAML mapping (name:, models:, bits:, ...)")
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        # A misspelt field also shows up as the real one missing: name the misspelling first.
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        err = errors[0]
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field; check its spelling against examples/sweep-tiny.yaml"
        elif err["type"] == "missing":
            msg = "required field is missing"
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        where = f"field '{_where(err['loc'])}': " if err["loc"] else ""
        raise SpecError(f"{origin}: {where}{msg}{more}") from None


def load_spec(path: str | Path) -> SweepSpec:
    """Read, validate and resolve a spec file: relative paths become absolute against the spec's folder."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"sweep spec {path} does not exist; pass the path of a YAML spec (see examples/)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise SpecError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    spec = parse_spec(data, str(path))
    return resolve_paths(spec, path.parent)


def resolve_paths(spec: SweepSpec, base: Path) -> SweepSpec:
    def local(p: str) -> str:
        q = Path(p).expanduser()
        return str(q if q.is_absolute() else (base / q).resolve())

    models = []
    for m in spec.models:
        q = Path(m.model).expanduser()
        is_path = q.is_absolute() or m.model.startswith(".") or (base / q).exists()
        models.append(m.model_copy(update={"model": local(m.model)}) if is_path else m)
    update: dict[str, Any] = {"models": models, "store": local(spec.store)}
    if spec.calibration is not None and spec.calibration.files:
        update["calibration"] = spec.calibration.model_copy(
            update={"files": [local(f) for f in spec.calibration.files]}
        )
    paths = {k: local(getattr(spec.evaluation, k)) for k in ("tier_map", "datasets") if getattr(spec.evaluation, k)}
    if paths:
        update["evaluation"] = spec.evaluation.model_copy(update=paths)
    return spec.model_copy(update=update)
