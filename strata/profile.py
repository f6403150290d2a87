"""The profile: what ``fit`` writes and ``advisor`` reads, as pydantic models, and its one reader of draws.

A profile carries a schema version; one of another version is refused with the command that regenerates it.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from strata.errors import UserError, field_error, read_input
from strata.law import COEF_NAMES, LawCoef, log_neg_log_acc

PROFILE_SCHEMA_VERSION = 2


class ProfileError(UserError):
    """A profile that is missing, corrupt or of another schema version; one line with the fix."""


class Strict(BaseModel):
    # defer_build: a model's validator is built on first use, so a process pays only for the models it uses
    model_config = ConfigDict(extra="forbid", defer_build=True)


class Coef(Strict):
    ln_a: float
    alpha: float
    beta: float
    gamma: float = 0.0
    delta: float = 0.0


class LawFit(Strict):
    """One fitted law: point coefficients, optional draws (posterior, or OLS sampling distribution), metrics."""

    coef: Coef
    fixed: dict[str, float] = Field(
        default_factory=dict, description="exponents the data cannot identify, pinned to the paper's values"
    )
    se: dict[str, float] = Field(default_factory=dict, description="standard errors of fitted coefficients")
    draws: dict[str, list[float]] | None = Field(
        default=None,
        description="aligned draws of each coefficient; 'omega', when present, is the sd of a new model's "
        "deviation from the law on the ln(-ln Acc_adj) scale, drawn once per draw and shared by its configurations",
    )
    n_rows: int
    r2: float | None = None
    adj_r2: float | None = None
    mae_adj: float | None = Field(default=None, description="mean absolute error on the chance-adjusted scale")
    n_clipped: int = Field(default=0, description="rows moved inside (0, 1) before linearizing")


class TaskLaw(LawFit):
    tier: Literal["KM", "KA", "KR"] | None = None  # None: a task in no tier law
    chance: float
    items: int | None = Field(
        default=None,
        gt=0,
        description="items in the task's test split, the most any fitted row was scored on (where rows say): how "
        "much of the task a baseline of n items saw, for a task the tier map does not size",
    )


class DataSummary(Strict):
    sources: list[str]
    models: dict[str, float] = Field(description="model name -> parameters (billions)")
    families: list[str]
    method: str
    stages: list[str]
    params_b: tuple[float, float]
    bits: list[float]
    group_sizes: list[int]
    calib_samples: list[int]
    n_rows: int
    excluded: dict[str, int] = Field(default_factory=dict, description="rows left out, by reason")


class FitDiagnostics(Strict):
    """How well the Bayesian fit behind a profile converged (absent for OLS profiles)."""

    method: Literal["nuts", "svi"]
    r_hat_max: dict[str, float] = Field(default_factory=dict, description="parameter group -> max split R-hat")
    ess_min: dict[str, float] = Field(default_factory=dict, description="parameter group -> min bulk ESS")
    divergences: int = 0
    num_chains: int = 1
    num_draws: int = 0
    svi_converged: bool | None = None
    problems: list[str] = Field(default_factory=list, description="failed checks; non-empty only when forced")
    forced: bool = False
    seconds: float | None = None
    ppc_coverage: dict[str, float] | None = Field(
        default=None,
        description="posterior predictive check: share of observed counts inside their central 90% predictive "
        "interval, overall ('all') and per tier; near or above 0.9 when the model fits",
    )


class OlsSettings(Strict):
    """The paper's procedure: least squares per tier; nothing to set."""

    engine: Literal["ols"] = "ols"


class NutsSettings(Strict):
    """NUTS on the Bayesian law (fit.infer.run_nuts); the defaults are what `fit run --engine nuts` uses."""

    engine: Literal["nuts"] = "nuts"
    warmup: int = Field(default=1000, gt=0, description="warmup steps per chain")
    samples: int = Field(default=2000, gt=0, description="draws per chain")
    chains: int = Field(default=2, gt=0)
    target_accept: float = Field(default=0.95, gt=0, lt=1, description="target acceptance probability")
    seed: int = 0
    likelihood: Literal["beta_binomial", "binomial"] = "beta_binomial"
    max_tree_depth: int = Field(default=8, gt=0, description="bounds the cost of a bad draw; the cap shows as low ESS")
    dense_mass: bool = False
    max_draws: int = Field(default=1000, gt=0, description="draws kept after thinning, all chains")


class SviSettings(Strict):
    """SVI with a mean-field normal guide (fit.infer.run_svi); the defaults are what `fit run --engine svi` uses."""

    engine: Literal["svi"] = "svi"
    steps: int = Field(default=4000, gt=0, description="optimizer steps")
    lr: float = Field(default=0.02, gt=0, description="adam's initial learning rate (cosine-decayed to 1/100)")
    seed: int = 0
    likelihood: Literal["beta_binomial", "binomial"] = "beta_binomial"
    num_particles: int = Field(default=1, gt=0, description="ELBO samples per step")
    window: int | None = Field(default=None, description="convergence window (default steps // 10)")
    elbo_tol: float = Field(default=1e-3, description="largest relative ELBO change between the last windows")
    loc_tol: float = Field(default=0.25, description="largest guide location shift over a window, in posterior sds")
    num_draws: int = Field(default=1000, gt=0, description="posterior draws taken from the guide")


FitSettings = Annotated[OlsSettings | NutsSettings | SviSettings, Field(discriminator="engine")]


class NewFamily(Strict):
    """Tier laws for a family the fit has not seen: drawn from the population of the fitted families."""

    families: list[str] = Field(description="the families the population is fitted on")
    tiers: dict[str, LawFit] = Field(description="tier -> the law of a new family (population + a tau deviation)")
    tasks: dict[str, TaskLaw] = Field(
        default_factory=dict,
        description="task -> its law for a new family (its tier's, moved by the offset the fitted families share)",
    )


class SeedSpread(Strict):
    """How far a measured mean moves between calibration seeds at one configuration: the run-to-run noise of
    quantization, which a new quantization run draws again (the items stay the same). The advisor adds it to its
    draws, so an interval is one for the next measurement, not only for the law."""

    sd: dict[str, float] = Field(
        description="bit-width -> pooled sd between seeds of the chance-adjusted mean; bits between or beyond take "
        "the nearest bit-width's"
    )
    configs: dict[str, int] = Field(description="bit-width -> configurations with at least two seeds behind its sd")

    def at(self, bits: Any) -> np.ndarray:
        """The sd at each of ``bits`` (the nearest measured bit-width's)."""
        keys = sorted(self.sd, key=float)
        known, sds = np.array([float(k) for k in keys]), np.array([self.sd[k] for k in keys])
        b = np.atleast_1d(np.asarray(bits, float))
        return sds[np.abs(b[:, None] - known[None, :]).argmin(axis=1)]


class ExtrapolationScale(Strict):
    """How far the tier law errs in N one step past its data (``fit.extrapolation``): a deviation with sd
    ``kappa`` per unit of ln N outside the fitted range, shared by a model's configurations."""

    kappa: float = Field(ge=0, description="sd on the ln(-ln Acc_adj) scale per unit of ln N outside the range")
    held_out: list[str] = Field(description="the sizes held out to measure it (largest, smallest)")
    slopes: list[float] = Field(description="each held-out size's mean residual per unit of ln N distance")

    def sd(self, params_b: float, fitted: tuple[float, float]) -> float:
        """The extra sd for a model of ``params_b`` billions against the fitted range (0 inside it)."""
        lo, hi = fitted
        distance = np.log(params_b / hi) if params_b > hi else (np.log(lo / params_b) if params_b < lo else 0.0)
        return float(self.kappa * distance)


class DropSpread(Strict):
    """How far one model's quantization drop strays from its tier law's (``fit.drop_spread``), on the ln(-ln Acc_adj)
    scale, over the fitted models' configurations at B >= 3 that did not collapse: a task's measured drop
    (quantized minus its own 16-bit score) is the law's drop d times (1 + ``scale`` e2), plus ``sd`` e1, with e1, e2
    standard normal, so its spread about the law's is sqrt(sd^2 + (scale d)^2). A model more sensitive to
    quantization than the law says is so at every bit-width: its deviation grows with the drop, small at 8 bits,
    larger at 3. Profiles written before ``scale`` existed hold the drops' root mean square in ``sd``, scale 0."""

    sd: float = Field(ge=0, description="sd of a task's drop about the tier law's where the law's drop is 0, ln(-ln)")
    scale: float = Field(default=0.0, ge=0, description="sd of a model's drop per unit of the law's drop")
    n: int = Field(ge=0, description="measured (model, configuration, task) drops behind it")
    models: int = Field(ge=0, description="models behind it")


class StageShift(Strict):
    """How far the tier laws miss models of the stage class the profile was not fitted on (``fit.stage_shift``): a
    deviation of sd ``sd[tier]`` on the ln(-ln Acc_adj) scale, beyond the law's omega, shared by a model's
    configurations; the advisor adds it for a model of ``stage`` where no baseline pins its level."""

    stage: str = Field(description="the stage class measured: base or post-trained")
    sd: dict[str, float] = Field(description="tier -> extra sd for a model of that stage")
    rows: int = Field(ge=0, description="tier observations behind it")
    models: list[str] = Field(description="the other-stage models it was measured on")


COLLAPSE_THRESHOLD = 0.5  # median retained chance-adjusted accuracy below which a configuration has collapsed
COLLAPSE_FEATURES = ("intercept", "bits", "ln_group", "ln_params")


class CollapseModel(Strict):
    """The collapse probability as a profile carries it (``strata.collapse`` evaluates it, ``fit.collapse`` fits it)."""

    threshold: float = COLLAPSE_THRESHOLD
    features: list[str] = Field(default_factory=lambda: list(COLLAPSE_FEATURES))
    draws: list[list[float]] = Field(description="(S, 4) draws of the weights, in `features` order")
    family_effect: dict[str, list[float]] = Field(description="family -> (S,) draws of its intercept shift")
    tau: float = Field(gt=0, description="sd of a family's intercept shift; a new family draws from N(0, tau)")
    retained: list[float] = Field(description="retained chance-adjusted fractions seen in collapsed configurations")
    n_configs: int
    n_collapsed: int
    source: str = Field(description="what the model was fitted on")


def task_law_for(profile: Profile, task: str, family: str) -> TaskLaw:
    """The task law to predict a model of ``family`` with: the profile's own, or for a family the profile was not
    fitted on, its new-family task law (where it has one): a family's task offsets are its own."""
    nf = profile.new_family
    if family not in profile.families and nf is not None and task in nf.tasks:
        return nf.tasks[task]
    return profile.tasks[task]


def tier_law_for(profile: Profile, tier: str, family: str) -> LawFit | None:
    """The tier law to predict a model of ``family`` with: the profile's own, or for a family the profile was not
    fitted on, its new-family law (where it has one: Bayesian profiles of several families)."""
    if family not in profile.families and profile.new_family is not None and tier in profile.new_family.tiers:
        return profile.new_family.tiers[tier]
    return profile.tiers.get(tier)


class Profile(Strict):
    schema_version: int
    name: str
    description: str
    families: list[str] = Field(description="model families this profile is fitted on")
    applies_to: list[str] = Field(description="families the advisor uses this profile for by default")
    method: str
    law_form: Literal["four_factor"] = "four_factor"
    engine: Literal["ols", "nuts", "svi"]
    settings: FitSettings = Field(description="the engine's settings the profile was fitted with")
    per_channel_rule: str = "G = -1 is taken as G = hidden_size (the input width of 6 of 7 linear layers)"
    bits_supported: tuple[float, float] = Field(description="bit-widths the law form is valid for")
    tiers: dict[str, LawFit]
    general: LawFit
    baseline: dict[str, LawFit] = Field(description="the (N, B) law per tier, for comparison")
    unquantized: dict[str, LawFit] = Field(description="-ln Acc_adj = A N^alpha of the 16-bit models, per tier")
    tasks: dict[str, TaskLaw]
    data: DataSummary
    command: str = Field(description="the command that regenerates this profile")
    strata_version: str
    diagnostics: FitDiagnostics | None = None
    new_family: NewFamily | None = Field(default=None, description="Bayesian profiles: laws for unseen families")
    collapse: CollapseModel | None = Field(
        default=None, description="the probability that a configuration collapses (below the law's bits too)"
    )
    likelihood: str | None = Field(default=None, description="Bayesian fits: binomial or beta_binomial")
    extrapolation: dict[str, ExtrapolationScale] | None = Field(
        default=None, description="tier -> how its law errs in N past the data's end (the advisor widens by it)"
    )
    seed_spread: dict[str, SeedSpread] | None = Field(
        default=None, description="tier or task -> its spread between calibration seeds, where the data repeat seeds"
    )
    stage_shift: StageShift | None = Field(
        default=None, description="how far the laws miss the family's models of the other stage (widens them)"
    )
    drop_spread: dict[str, DropSpread] | None = Field(
        default=None, description="tier -> how far one model's drop strays from the law's (conditioning uses it)"
    )

    @model_validator(mode="after")
    def _settings_of_its_engine(self) -> Profile:
        if self.settings.engine != self.engine:
            raise ValueError(f"settings are for engine {self.settings.engine!r}, the profile's is {self.engine!r}")
        return self


def load_profile(path: str | Path) -> Profile:
    """Read and validate a profile JSON; raise ProfileError with one line naming the problem and the fix."""
    path = Path(path)
    text = read_input(path, ProfileError, "profile", "pass --profile with a profile JSON file")
    try:  # the fast path: one parse straight into the model
        profile = Profile.model_validate_json(text)
    except ValidationError as exc:
        raise _diagnose(path, text, exc) from None
    if profile.schema_version != PROFILE_SCHEMA_VERSION:
        raise _wrong_version(path, profile.schema_version, profile.command)
    return profile


def _wrong_version(path: Path, version: object, command: object) -> ProfileError:
    return ProfileError(
        f"profile {path} has schema version {version}; this strata reads {PROFILE_SCHEMA_VERSION}: "
        f"regenerate it with `{command or 'fit run ...'}`"
    )


def _diagnose(path: Path, text: bytes, exc: ValidationError) -> ProfileError:
    """One line saying why a profile failed: not JSON, another schema version, or the first bad field."""
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return ProfileError(f"profile {path} is not valid JSON ({err}); regenerate it with `fit run`")
    if not isinstance(raw, dict):
        return ProfileError(f"profile {path} is not a JSON object; regenerate it with `fit run`")
    if raw.get("schema_version") != PROFILE_SCHEMA_VERSION:
        return _wrong_version(path, raw.get("schema_version"), raw.get("command"))
    where, msg = field_error(exc)
    return ProfileError(f"profile {path} is corrupt at {where}: {msg}; regenerate it with `fit run`")


# --- the one reader of a law's draws ---------------------------------------------------------------------------


def law_coef(law: LawFit) -> LawCoef:
    """The law's coefficients as arrays of shape (S, 1): its draws, or its point estimate (S = 1)."""
    if law.draws:
        return LawCoef(*(np.asarray(law.draws[k], float)[:, None] for k in COEF_NAMES))
    return point_coef(law)


def point_coef(law: LawFit) -> LawCoef:
    """The law's point coefficients as arrays of shape (1, 1), whatever draws it carries."""
    return LawCoef(*(np.array([[getattr(law.coef, k)]]) for k in COEF_NAMES))


def seed_noise(profile: Profile, name: str, model: str, bits: Any, shape: tuple[int, int]) -> np.ndarray | None:
    """Draws (S, M) of a next run's seed-to-seed noise for a tier or task at each configuration's bits, or None when
    the profile measured none. Seeded by (model, name), as ``model_deviation`` is: an answer is reproducible."""
    spread = (profile.seed_spread or {}).get(name)
    if spread is None:
        return None
    sd = spread.at(np.broadcast_to(np.ravel(np.asarray(bits, float)), (shape[1],)))
    rng = np.random.default_rng(zlib.crc32(f"{model}\x00{name}\x00seed".encode()))
    return rng.standard_normal(shape) * sd[None, :]


def extrapolated(profile: Profile, tier: str, model: str, params_b: float, draws: np.ndarray) -> np.ndarray:
    """Draws (S, M) of a tier's (or its task's) chance-adjusted accuracy, widened for a model outside the
    profile's range of N by its extrapolation scale: one deviation per draw on the ln(-ln) scale, sd growing with
    the distance in ln N, shared by the model's configurations (seeded by model and tier, as ``model_deviation``).
    Unchanged inside the range, without a scale, or for a point estimate."""
    scale = (profile.extrapolation or {}).get(tier)
    sd = scale.sd(params_b, profile.data.params_b) if scale is not None else 0.0
    return _shifted(draws, sd, f"{model}\x00{tier}\x00extrapolation")


def _shifted(draws: np.ndarray, sd: float, key: str) -> np.ndarray:
    """``draws`` (S, M) moved by one deviation per draw of sd ``sd`` on the ln(-ln) scale, shared by the columns
    (a model's configurations), seeded by ``key``; unchanged for sd 0 or a point estimate."""
    if sd <= 0 or draws.shape[0] < 2:
        return draws
    eps = np.asarray(np.random.default_rng(zlib.crc32(key.encode())).standard_normal(draws.shape[0]))
    z = np.log(-np.log(np.clip(draws, 1e-12, 1 - 1e-12)))
    return np.exp(-np.exp(z + sd * eps[:, None]))


def stage_widened(profile: Profile, tier: str, model: str, stage: str | None, draws: np.ndarray) -> np.ndarray:
    """Draws (S, M) widened for a model of a stage class the profile was not fitted on, by the profile's measured
    stage shift: one deviation per draw on the ln(-ln) scale, shared by the model's configurations (seeded by model
    and tier). Unchanged for a stage the profile knows, an unknown stage, or without a measured shift."""
    shift = profile.stage_shift
    sd = shift.sd.get(tier, 0.0) if shift is not None and stage == shift.stage else 0.0
    return _shifted(draws, sd, f"{model}\x00{tier}\x00stage")


def unpinned(
    profile: Profile, tier: str, model: str, params_b: float, stage: str | None, draws: np.ndarray
) -> np.ndarray:
    """A law's draws for a model whose level no baseline pins: widened past the fitted sizes and for a stage the
    profile was not fitted on."""
    return stage_widened(profile, tier, model, stage, extrapolated(profile, tier, model, params_b, draws))


def model_deviation(model: str, tier: str, size: int) -> np.ndarray:
    """Standard normals for one model's deviation u from one tier's law, drawn once per (model, tier).

    Seeded by the pair itself, so an answer is reproducible, every law of the same tier (its tasks included) shares
    the model's one deviation as the fitted model does, and different tiers get independent deviations.
    """
    seed = zlib.crc32(f"{model}\x00{tier}".encode())
    return np.random.default_rng(seed).standard_normal(size)


def law_draws(
    law: LawFit, params: Any, bits: Any, group: Any, calib: Any, *, model: str | None = None, tier: str | None = None
) -> np.ndarray:
    """Predicted chance-adjusted accuracy, shape (S, M): S draws (1 without draws) by M configurations (G effective;
    factors are scalars or arrays broadcasting against the draws' (S, 1)).

    With ``model`` and ``tier`` given and an 'omega' draw in the law (Bayesian profiles), each draw also carries the
    model's deviation from the law (sd omega), shared by all its configurations: the predictive distribution for
    that model. Without them, the distribution of the law itself.
    """
    coef = law_coef(law)
    z = np.asarray(log_neg_log_acc(coef, params, bits, group, calib))
    if model is not None and tier is not None and law.draws and "omega" in law.draws:
        omega = np.asarray(law.draws["omega"], float)
        z = z + (omega * model_deviation(model, tier, omega.size))[:, None]
    return np.exp(-np.exp(z))
