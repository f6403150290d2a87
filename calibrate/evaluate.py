"""Tiered evaluation: one model, every task of a tier map, through lm-eval's Python API on an in-memory model.

``Evaluator`` loads the model and tokenizer once, wraps them in lm-eval's ``HFLM`` (tokenizer and batch size passed
explicitly) and builds the tasks once; ``evaluate()`` can then be called many times in one process, e.g. after a
sweep has swapped quantized weights into ``evaluator.model`` in place (``HFLM`` holds the same module object).

Choices made here, and why:
- No response cache, ever: lm-eval's ``use_cache`` keys responses by request, not by weights, so a cache shared
  between a full-precision and a quantized model would silently return the wrong model's answers. ``HFLM`` is used
  bare (no ``CachingLM``) and request caching is off.
- Item subsets are random with a recorded seed (``random.Random(f"{seed}:{task}")``), passed as lm-eval's
  ``samples=`` indices. lm-eval's own ``limit`` takes the *first* items, a biased subset for ordered datasets.
  The number of items behind each accuracy is always reported.
- Local tasks (a tier map with ``include_path``) are indexed with ``TaskManager(include_defaults=False)``, which skips
  indexing lm-eval's thousands of built-in tasks (slow, on every call); the built-ins are indexed only when the map
  names one. Local JSONL probes are read by ``load_probe_dataset`` (named in the task YAML), which resolves the file
  against the task folder and validates every row.
- The JSON is ``strata.answer``'s one shape, as ``advisor predict`` answers: tier means on the law's chance-adjusted
  scale (the unweighted mean over the tier's tasks), task means raw accuracy in [0, 1], ``lo``/``hi`` a central 90%
  band: ``tasks.<task>.{mean, lo, hi, level, n, correct, stderr}``, ``tiers.<tier>.{mean, lo, hi, level, tasks, n,
  stderr}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

from strata.answer import LEVEL, Z90, measured_tier, tier_mean
from strata.errors import StrataError, UserError, first_line
from strata.law import TIERS, normalize
from strata.tiermap import DEFAULT_TIER_MAP, TierMap, load_tier_map

LOCAL_TIER_MAP = "tier_map.yaml"  # a checkpoint directory carrying this file is evaluated on its own tasks


class EvaluateError(UserError):
    """Input that cannot be evaluated; the message is one line naming the input and the fix."""


class EvaluationFailed(StrataError):
    """lm-eval (or the model under it) raised while evaluating; ``task`` names the first task that fails alone."""

    def __init__(self, cause: BaseException, task: str | None) -> None:
        self.task = task
        super().__init__(first_line(cause))


# --- local probe data (called by lm-eval through the task YAML's `custom_dataset`) -----------------------------


def read_probe_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a probe JSONL file: each needs ``query`` (str), ``choices`` (>= 2 str) and ``gold`` (an index)."""
    path = Path(path)
    if not path.is_file():
        raise EvaluateError(f"task data file {path} does not exist")
    rows: list[dict[str, Any]] = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvaluateError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise EvaluateError(f"{where}: a row must be a JSON object")
        query, choices, gold = row.get("query"), row.get("choices"), row.get("gold")
        if not isinstance(query, str) or not query:
            raise EvaluateError(f"{where}: 'query' must be a non-empty string")
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
            raise EvaluateError(f"{where}: 'choices' must be a list of >= 2 non-empty strings")
        if isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < len(choices):
            raise EvaluateError(f"{where}: 'gold' must be an index into 'choices' (0..{len(choices) - 1})")
        rows.append({"query": query, "choices": choices, "gold": gold})
    if not rows:
        raise EvaluateError(f"{path}: no rows")
    return rows


def load_probe_dataset(data_file: str, strata_task_dir: str | None = None, **_: Any) -> Any:
    """lm-eval ``custom_dataset`` hook: the JSONL next to the task YAML as a ``DatasetDict`` with a test split."""
    import datasets

    path = Path(data_file) if strata_task_dir is None else Path(strata_task_dir) / data_file
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(read_probe_rows(path))})


# --- resolving inputs ----------------------------------------------------------------------------------------------


def resolve_model(model: str | Path) -> tuple[str, bool]:
    """(reference, is_local). A local path must be a directory with ``config.json``; anything else is a Hub id."""
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise EvaluateError(f"model path {path} has no config.json; pass a Hugging Face model directory")
        return str(path), True
    text = str(model)
    # A Hub id is "name" or "owner/name"; anything with more parts, or an explicit relative/absolute path, is a path.
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text:
        raise EvaluateError(f"model path {text} does not exist; pass a local model directory or a Hub id")
    return text, False


def choose_tier_map(model_ref: str, is_local: bool, tier_map: str | Path | None) -> Path:
    """The explicit map, else the one the checkpoint carries, else the project's default (real lm-eval tasks)."""
    if tier_map is not None:
        return Path(tier_map)
    if is_local and (Path(model_ref) / LOCAL_TIER_MAP).is_file():
        return Path(model_ref) / LOCAL_TIER_MAP
    return DEFAULT_TIER_MAP


def _task_manager(include: Path | None, names: list[str], metadata: dict[str, Any]) -> Any:
    from lm_eval.tasks import TaskManager

    if include is not None:
        if not include.is_dir():
            raise EvaluateError(f"tier map include_path {include} is not a directory")
        tm = TaskManager(include_path=str(include), include_defaults=False, metadata=metadata)
        if all(n in tm.all_tasks for n in names):
            return tm
    tm = TaskManager(include_path=str(include) if include else None, include_defaults=True, metadata=metadata)
    unknown = [n for n in names if n not in tm.all_tasks]
    if unknown:
        raise EvaluateError(f"tier map names tasks lm-eval does not know: {', '.join(unknown)}")
    return tm


# --- the evaluator -------------------------------------------------------------------------------------------------


class Evaluator:
    """One loaded model, reusable for many evaluations over one tier map's tasks."""

    def __init__(
        self,
        model: str | Path,
        tier_map: str | Path | None = None,
        *,
        tasks: list[str] | None = None,
        device: str = "cpu",
        batch_size: int = 256,
        dtype: str = "float32",
        trust_remote_code: bool = False,
    ) -> None:
        self.model_ref, is_local = resolve_model(model)
        self.tier_map_path = choose_tier_map(self.model_ref, is_local, tier_map)
        self.tier_map: TierMap = load_tier_map(self.tier_map_path)
        self.task_keys = self._select(tasks)
        # lm-eval task name -> tier map key
        self.lm_names = {self.tier_map.tasks[k].lm_eval_task or k: k for k in self.task_keys}
        include = self.tier_map.include_path
        include_dir = (self.tier_map_path.parent / include).resolve() if include else None
        meta = {"strata_task_dir": str(include_dir)} if include_dir else {}
        self.task_manager = _task_manager(include_dir, list(self.lm_names), meta)
        self.device, self.batch_size, self.dtype = device, batch_size, dtype
        self.model, self.tokenizer = self._load(trust_remote_code)
        self.lm = self._wrap()
        self.loaded = self.task_manager.load(list(self.lm_names))
        for task in self.loaded["tasks"].values():
            if task.get_config("num_fewshot") is None:
                task.set_config(key="num_fewshot", value=0)
            task.set_fewshot_seed(seed=1234)
        self.sizes = {name: len(task.eval_docs) for name, task in self.loaded["tasks"].items()}

    def _select(self, tasks: list[str] | None) -> list[str]:
        if not tasks:
            return list(self.tier_map.tasks)
        keys = []
        for name in tasks:
            key = self.tier_map.resolve(name)
            if key is None:
                raise EvaluateError(f"task {name!r} is not in tier map {self.tier_map_path}")
            keys.append(key)
        return list(dict.fromkeys(keys))

    def _load(self, trust_remote_code: bool) -> tuple[Any, Any]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        try:
            # Loading a GPTQ checkpoint imports GPTQModel, which prints a banner to stdout: keep stdout for answers.
            with contextlib.redirect_stdout(sys.stderr):
                tok = AutoTokenizer.from_pretrained(self.model_ref, trust_remote_code=trust_remote_code)
                model: Any = AutoModelForCausalLM.from_pretrained(
                    self.model_ref, dtype=getattr(torch, self.dtype), trust_remote_code=trust_remote_code
                )
        except Exception as exc:  # loaders raise many types (OSError, ValueError, SafetensorError, KeyError, ...)
            raise EvaluateError(f"cannot load model {self.model_ref}: {first_line(exc)}") from None
        model.to(torch.device(self.device))  # in place for a module
        return model.eval(), tok

    def _wrap(self) -> Any:
        from lm_eval.models.huggingface import HFLM

        logging.getLogger("lm_eval").setLevel(logging.ERROR)  # HFLM warns that a pre-built model ignores its args

        class QuietHFLM(HFLM):
            # lm-eval's evaluator never passes disable_tqdm, and tqdm's env switch loses to an explicit argument:
            # its per-request bars would bury a sweep's own progress display.
            def loglikelihood(self, requests: Any, disable_tqdm: bool = True) -> Any:
                return super().loglikelihood(requests, disable_tqdm=True)

            def loglikelihood_rolling(self, requests: Any, disable_tqdm: bool = True) -> Any:
                return super().loglikelihood_rolling(requests, disable_tqdm=True)

            def generate_until(self, requests: Any, disable_tqdm: bool = True) -> Any:
                return super().generate_until(requests, disable_tqdm=True)

        return QuietHFLM(pretrained=self.model, tokenizer=self.tokenizer, batch_size=self.batch_size)

    def subset(self, limit: int | None, seed: int) -> dict[str, list[int]] | None:
        """Seeded random item indices per task (None: every item). Raises if ``limit`` exceeds a task."""
        if limit is None:
            return None
        if limit <= 0:
            raise EvaluateError(f"--limit must be positive, got {limit}")
        out = {}
        for name, n in self.sizes.items():
            if limit > n:
                raise EvaluateError(f"--limit {limit} is larger than task {name} ({n} items)")
            out[name] = sorted(random.Random(f"{seed}:{name}").sample(range(n), limit))
        return out

    def evaluate(self, limit: int | None = None, seed: int = 0, config: dict[str, Any] | None = None) -> dict[str, Any]:
        """Evaluate the model as it is now; return the ``advisor predict``-shaped result."""
        samples = self.subset(limit, seed)
        start = time.perf_counter()
        try:
            res = self._run(self.loaded, samples)
            tasks: dict[str, dict[str, Any]] = {}
            for name, key in self.lm_names.items():
                try:
                    acc = float(res["results"][name]["acc,none"])
                    n = int(res["n-samples"][name]["effective"])
                except (KeyError, TypeError, ValueError) as exc:
                    raise EvaluationFailed(exc, name) from exc
                correct = round(acc * n)
                stderr = math.sqrt(acc * (1 - acc) / (n - 1)) if n > 1 else float("nan")
                lo, hi = max(acc - Z90 * stderr, 0.0), min(acc + Z90 * stderr, 1.0)
                tasks[key] = {"mean": acc, "lo": lo, "hi": hi, "level": LEVEL, "n": n, "correct": correct,
                              "stderr": stderr}  # fmt: skip
        except (EvaluationFailed, KeyboardInterrupt):
            raise
        except Exception as exc:  # lm-eval, the tokenizer or the model raised: name the task that fails alone
            raise EvaluationFailed(exc, self._failing_task()) from exc
        seconds = time.perf_counter() - start
        return {
            "model": self.model_ref,
            "config": config or {"bits": None, "group_size": None, "calib_samples": None, "dtype": self.dtype},
            "tiers": self.tiers(tasks),
            "tasks": tasks,
            "evaluation": {
                "tier_map": str(self.tier_map_path),
                "limit": limit,
                "seed": seed,
                "subset": "random.Random(f'{seed}:{task}').sample(range(items), limit), sorted" if limit else "all",
                "batch_size": self.batch_size,
                "device": self.device,
                "seconds": round(seconds, 3),
            },
        }

    def _run(self, task_dict: Any, samples: dict[str, list[int]] | None) -> Any:
        from lm_eval import evaluator as lm_evaluator

        res = lm_evaluator.evaluate(
            lm=self.lm,
            task_dict=task_dict,
            samples=samples,
            cache_requests=False,
            bootstrap_iters=0,  # acc's standard error is analytic (below); no bootstrap needed
            log_samples=False,
            verbosity="ERROR",
        )
        if res is None:
            raise RuntimeError("lm-eval returned no results (not rank 0 of a distributed run)")
        return res

    def _failing_task(self) -> str | None:
        """The first task that fails when evaluated alone on one item (only called after a failure)."""
        for name, task in self.loaded["tasks"].items():
            try:
                self._run({"tasks": {name: task}, "groups": {}, "group_map": {}}, {name: [0]})
            except Exception:
                return str(name)
        return None

    def tiers(self, tasks: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Per tier, the unweighted mean of its tasks' chance-adjusted accuracy (``strata.answer``: the fit's tier
        observation, what the advisor predicts) with a normal-approximation 90% band."""
        out: dict[str, dict[str, Any]] = {}
        for tier in TIERS:
            keys = [k for k in tasks if self.tier_map.tasks[k].tier == tier]
            if not keys:
                continue
            chances = [self.tier_map.tasks[k].chance for k in keys]
            mean, se = measured_tier([tasks[k]["mean"] for k in keys], [tasks[k]["stderr"] for k in keys], chances)
            # The band is clipped to what the scale can reach: 1 (every item right) and, below, the value of
            # getting every item wrong (the mean of -chance / (1 - chance) over the tier's tasks).
            floor = tier_mean([float(normalize(0.0, c)) for c in chances])
            lo, hi = max(mean - Z90 * se, floor), min(mean + Z90 * se, 1.0)
            n = sum(tasks[k]["n"] for k in keys)
            out[tier] = {"mean": mean, "lo": lo, "hi": hi, "level": LEVEL, "tasks": keys, "n": n, "stderr": se}
        return out
