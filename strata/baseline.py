"""A model's own unquantized accuracy, and what it says about the model's quantized accuracy.

The file is what ``calibrate evaluate --json`` prints for an unquantized model, or a minimal copy of a model card:

    {"tasks": {"arc_easy": {"mean": 0.801, "n": 2376, "metric": "acc"}}}

``n`` defaults to the task's items in the tier map, ``metric`` to ``acc``; anything else in the file (tiers, config,
evaluation) is ignored. Validated once, here: a bad file is one line naming the field and the fix.

Conditioning (analytic, not reweighting: the baseline is one more observation of the model's own deviation ``u``
from the law, on the law's linear scale, so its update has a closed form and needs no draws to be thrown away).
Per tier t, on z = ln(-ln Acc_adj):

    u_t   = z(baseline_t) - z_unquantized_law(N)            the model's deviation, read off its 16-bit scores
    z(x)  = z_quantized_law(x) + u_t + e,  e ~ N(0, s_t)     i.e. baseline + the law's drop z_q(x) - z_u(N)

so a prediction is the baseline moved by the law's predicted drop. Its interval carries the baseline's item noise
(each task's accuracy drawn from its Beta posterior, as an estimate of the whole task's score: none for a
baseline over the whole test split, ``tier_baseline_z``), the law's uncertainty about the drop and ``s_t``, how
far one model's drop strays from the law's on the same items (``drop_sd`` in the profile, measured on the fitted
models; where a profile has none, the law's own model deviation omega stands in, which is wider). The law's
uncertainty about the drop is taken within the quantized law's own draws, against the same draws at an anchor
configuration (8-bit, G = 128) (``advisor.condition.Conditioning._laws``): the quantized and 16-bit laws are
fitted apart, and differencing their independent draws would count their uncertainty about the models' level,
which a drop does not have.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, ValidationError, field_validator

from strata.errors import UserError, field_error, read_input
from strata.profile import Strict

METRICS = ("acc", "acc_norm", "exact_match")


class BaselineError(UserError):
    """A baseline file that cannot be used; one line naming the field and the fix."""


class BaselineTask(Strict):
    model_config = Strict.model_config | {"extra": "ignore"}  # lo, hi, stderr of a `calibrate evaluate` answer
    mean: float = Field(ge=0.0, le=1.0, description="raw accuracy of the unquantized model, a fraction")
    n: int | None = Field(default=None, gt=0, description="items behind it (default: the tier map's)")
    metric: Literal["acc", "acc_norm", "exact_match"] = "acc"
    n_shot: int | None = Field(default=None, ge=0)
    source: str = ""

    @field_validator("n", mode="before")
    @classmethod
    def _whole(cls, v: object) -> object:
        if isinstance(v, float) and not v.is_integer():
            raise ValueError("must be a whole number of items")
        return v


class Baseline(Strict):
    """The model's unquantized scores per task (extra keys of a `calibrate evaluate` answer are ignored)."""

    model_config = Strict.model_config | {"extra": "ignore"}
    model: str = ""
    tasks: dict[str, BaselineTask] = Field(min_length=1)
    source: str = Field(default="", description="where the numbers come from (a paper, a model card, a run)")


def load_baseline(path: str | Path) -> Baseline:
    """Read and validate a baseline JSON file; BaselineError names the field and the fix."""
    path = Path(path)
    text = read_input(path, BaselineError, "baseline", "pass --baseline with the JSON `calibrate evaluate` wrote")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(f"baseline {path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise BaselineError(f"baseline {path} is not a JSON text file") from None
    return parse_baseline(raw, str(path))


def parse_baseline(raw: object, where: str = "baseline") -> Baseline:
    if not isinstance(raw, dict):
        raise BaselineError(f'{where} must be a JSON object like {{"tasks": {{"arc_easy": {{"mean": 0.8}}}}}}')
    try:
        return Baseline.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field, msg = field_error(exc)
        hint = {
            "tasks": 'give "tasks": {"<task>": {"mean": <accuracy in [0, 1]>}}',
            "mean": "give the accuracy as a fraction in [0, 1] (0.801, not 80.1)",
            "n": "give the number of items as a positive whole number, or leave it out",
            "metric": f"use one of {', '.join(METRICS)}, or leave it out (acc)",
        }.get(str(err["loc"][-1]) if err["loc"] else "", "see the README's baseline format")
        raise BaselineError(f"{where}: field {field}: {msg}; {hint}") from None


def _z(acc_adj: np.ndarray, n: float) -> np.ndarray:
    """ln(-ln y) with y kept half an item inside (0, 1), as the fit's linearization does."""
    eps = 1.0 / (2.0 * max(n, 1.0))
    y = np.clip(acc_adj, eps, 1.0 - eps)
    return np.log(-np.log(y))


def tier_baseline_z(
    tasks: dict[str, tuple[float, int, float, int | None]], size: int, seed_key: str
) -> tuple[np.ndarray, float]:
    """Draws of z(baseline tier value) from its tasks' (accuracy, items, chance, items in the whole task): each
    task's accuracy from its Beta(correct + 1/2, wrong + 1/2) posterior (the item noise), the tier value their
    unweighted chance-adjusted mean (as everywhere, ``strata.answer``). Returns (draws, the point value of the tier).

    The noise is that of the baseline as an estimate of the *whole task's* score, the score the quantized model
    will be measured on: the Beta spread times the finite-population factor sqrt(1 - n / items in the task). A
    baseline over the whole test split (a model card's, a full `calibrate evaluate`) has none, because the
    quantized model is then scored on the very same items, and how a quantized score strays from its baseline on
    shared items is in the measured drop spread (``fit.drop_spread``); a baseline from a ``--limit`` subset keeps
    most of it. A task of unknown size keeps all of it."""
    rng = np.random.default_rng(zlib.crc32(seed_key.encode()))
    adj = []
    point = []
    for acc, n, chance, whole in tasks.values():
        correct = acc * n
        a = rng.beta(correct + 0.5, n - correct + 0.5, size)
        fpc = 1.0 if whole is None else max(0.0, 1.0 - n / whole)
        a = acc + np.sqrt(fpc) * (a - acc)
        adj.append((a - chance) / (1 - chance))
        point.append((acc - chance) / (1 - chance))
    items = sum(t[1] for t in tasks.values())
    return _z(np.mean(adj, axis=0), items), float(np.mean(point))


def conditioned_z(
    z_quantized: np.ndarray,
    z_unquantized: np.ndarray,
    z_baseline: np.ndarray,
    drop_sd: np.ndarray,
    seed_key: str,
    drop_scale: float = 0.0,
) -> np.ndarray:
    """z of the quantized model given its baseline: baseline + the law's drop + the model's own drop deviation.

    ``z_quantized`` (S, M) and ``z_unquantized`` (S, 1) are draws of the two laws (no model deviation added),
    ``z_baseline`` (S,) draws of the baseline, ``drop_sd`` (S,) the sd of a model's deviation from the law's drop
    where that drop is 0, ``drop_scale`` how much of the law's drop the deviation adds per sd (the model's own
    sensitivity, ``strata.profile.DropSpread``). Both deviations are drawn once per draw and shared by the
    configurations, as a model's deviation is in the fit."""
    size = z_baseline.shape[0]
    e = np.random.default_rng(zlib.crc32(seed_key.encode())).standard_normal(size)
    drop = z_quantized - z_unquantized
    if drop_scale:  # its own stream: a profile without a scale draws what it always drew
        e2 = np.asarray(np.random.default_rng(zlib.crc32(f"{seed_key}:scale".encode())).standard_normal(size))
        drop = drop * (1.0 + drop_scale * e2[:, None])
    return drop + (z_baseline + drop_sd * e)[:, None]


def adj_from_z(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.exp(z))
