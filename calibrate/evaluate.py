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
import copy
import difflib
import functools
import json
import logging
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

from calibrate.datasets import Mirror, task_data
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
    """Rows of a probe JSONL file: each a ``query`` (str) with either ``choices`` (>= 2 str) and ``gold`` (an index)
    -- multiple choice -- or an ``answer`` (str) -- generation, scored by exact match. One kind per file. Other fields
    with a scalar value of one type in every row (e.g. a probe's ``repeats``) are kept: lm-eval ignores them and logs
    them with each sample, so a diagnostic can group items by them."""
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
        query = row.get("query")
        if not isinstance(query, str) or not query:
            raise EvaluateError(f"{where}: 'query' must be a non-empty string")
        if rows and ("answer" in row) != ("answer" in rows[0]):
            raise EvaluateError(f"{where}: rows mix 'answer' (generation) and 'choices' (multiple choice); use one")
        if "answer" in row:
            answer = row["answer"]
            if not isinstance(answer, str) or not answer.strip():
                raise EvaluateError(f"{where}: 'answer' must be a non-empty string")
            rows.append({"query": query, "answer": answer, **_extras(row)})
            continue
        choices, gold = row.get("choices"), row.get("gold")
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
            raise EvaluateError(f"{where}: 'choices' must be a list of >= 2 non-empty strings")
        if isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < len(choices):
            raise EvaluateError(f"{where}: 'gold' must be an index into 'choices' (0..{len(choices) - 1})")
        rows.append({"query": query, "choices": choices, "gold": gold, **_extras(row)})
    if not rows:
        raise EvaluateError(f"{path}: no rows")
    # an extra field kept only where every row has it with one type: the dataset's columns must be uniform
    for key in {k for r in rows for k in r} - _CORE:
        if len({type(r.get(key)) for r in rows}) != 1:
            for r in rows:
                r.pop(key, None)
    return rows


_CORE = {"query", "choices", "gold", "answer"}


def _extras(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v for k, v in row.items() if k not in _CORE and isinstance(v, (str, int, float)) and not isinstance(v, bool)
    }


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


@functools.lru_cache(maxsize=4)
def task_index(include: str | None = None, defaults: bool = True) -> Any:
    """lm-eval's ``TaskManager`` over its built-in tasks and/or a folder of task YAMLs, cached per process (indexing
    the ~15k built-in names takes seconds). Callers copy it before changing its factory (``_task_manager``)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include, include_defaults=defaults)


def suggest(name: str, known: list[str]) -> list[str]:
    """Up to three close lm-eval names: those containing ``name`` (shortest first), then difflib's closest."""
    low = name.lower()
    containing = sorted((k for k in known if low in k.lower()), key=len)[:3]
    close = difflib.get_close_matches(low, known, n=3, cutoff=0.6)
    return list(dict.fromkeys(containing + close))[:3]


def leaf_configs(tm: Any, name: str) -> dict[str, dict[str, Any]]:
    """The leaf tasks of an lm-eval name (a task: itself; a group or tag: every task under it) with their configs as
    the index holds them (``!function`` fields unresolved), read without building a task or touching data."""
    from lm_eval.tasks._index import Kind
    from lm_eval.tasks._yaml_loader import load_yaml

    index = tm.task_index
    out: dict[str, dict[str, Any]] = {}

    def config(entry: Any) -> dict[str, Any]:
        if entry.cfg is not None:
            return dict(entry.cfg)
        return dict(load_yaml(entry.yaml_path, resolve_func=False, recursive=True)) if entry.yaml_path else {}

    def walk(item: Any, overrides: dict[str, Any]) -> None:
        if isinstance(item, str):
            entry = index.get(item)
            if entry is None:
                raise EvaluateError(f"lm-eval's index has no task {item!r} (a member of {name})")
            if entry.kind == Kind.TAG:
                for t in sorted(entry.tags):
                    walk(t, overrides)
            elif entry.kind == Kind.GROUP:
                for child in config(entry).get("task") or []:
                    walk(child, overrides)
            else:
                out[item] = {**config(entry), **overrides}
        elif isinstance(item, dict) and "group" in item:
            if item["group"] in index:
                walk(item["group"], overrides)
            else:  # an inline group
                for child in item.get("task") or []:
                    walk(child, overrides)
        elif isinstance(item, dict) and "task" in item:
            more = {**overrides, **{k: v for k, v in item.items() if k != "task"}}
            if item["task"] in index:
                walk(item["task"], more)
            else:  # an inline task
                out[str(item["task"])] = {**item, **overrides}

    walk(name, {})
    return out


def _factory(meta: dict[str, Any], mirror: Mirror | None) -> Any:
    """lm-eval's task factory; with a mirror, every leaf task's data is read from it (``calibrate.datasets``)."""
    from lm_eval.tasks._factory import TaskFactory

    class MirroredFactory(TaskFactory):
        def _load_full_config(self, entry: Any, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
            cfg: dict[str, Any] = super()._load_full_config(entry, overrides)
            if mirror is None or not isinstance(cfg.get("task"), str) or "group" in cfg:
                return cfg
            data = task_data(cfg["task"], cfg)
            if data is not None:
                path, name, _kwargs, splits = data
                mirror.check(cfg["task"], path, name, splits)
                cfg["custom_dataset"] = mirror.loader(path, name)
                cfg["dataset_kwargs"] = {}
            return cfg

    return MirroredFactory(meta=meta)


def task_manager(include: Path | None, lm_names: dict[str, str], meta: dict[str, Any], mirror: Mirror | None) -> Any:
    """A TaskManager that knows every name of ``lm_names`` (lm-eval name -> tier map key), or one line naming the
    first unknown task with close lm-eval names."""
    base = None
    if include is not None:
        if not include.is_dir():
            raise EvaluateError(f"tier map include_path {include} is not a directory")
        local = task_index(str(include), False)  # the built-ins are indexed only when the map names one
        if all(n in local.all_tasks for n in lm_names):
            base = local
    if base is None:
        base = task_index(str(include) if include else None, True)
        for name, key in lm_names.items():
            if name not in base.all_tasks:
                close = suggest(name, base.all_tasks)
                hint = f"did you mean {', '.join(close)}? " if close else ""
                where = f"task {key}" if name == key else f"task {key} (lm_eval_task {name})"
                raise EvaluateError(
                    f"tier map {where}: lm-eval does not know {name!r}; {hint}set lm_eval_task: <an lm-eval task> "
                    "for it in the tier map"
                )
    tm = copy.copy(base)  # the cached index, with this evaluation's metadata and data source
    tm._factory = _factory(meta, mirror)  # lm-eval builds every task and group member through this factory
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
        datasets: str | Path | None = None,
        max_length: int | None = None,
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
        mirror = Mirror.from_env(datasets)
        self.datasets = str(mirror.root) if mirror is not None else None
        self.task_manager = task_manager(include_dir, self.lm_names, meta, mirror)
        self.device, self.batch_size, self.dtype, self.max_length = device, batch_size, dtype, max_length
        logging.getLogger("lm_eval").setLevel(logging.ERROR)  # per-task notices (custom_dataset, defaults) are noise
        self.loaded = self._build()  # tasks before the model: bad input stops before the slow part
        self.model, self.tokenizer = self._load(trust_remote_code)
        self.lm = self._wrap()
        self.sizes = {name: len(task.eval_docs) for name, task in self.loaded["tasks"].items()}

    def _build(self) -> Any:
        """Load every task (a group with its subtasks), then check each one's metric, filter and few-shot count."""
        self.members: dict[str, list[str]] = {}  # tier map key -> the lm-eval leaf tasks it sums over
        self.group_of: dict[str, str] = {}  # tier map key -> the lm-eval group it is, when it is one
        to_load: list[str] = []
        for key in self.task_keys:
            spec = self.tier_map.tasks[key]
            name = spec.lm_eval_task or key
            leaves = list(leaf_configs(self.task_manager, name))
            if spec.subtasks is not None:
                bad = [t for t in spec.subtasks if t not in leaves]
                if bad:
                    raise EvaluateError(
                        f"task {key}: {', '.join(bad)} {'is' if len(bad) == 1 else 'are'} not a subtask of lm-eval's "
                        f"{name}; pick subtasks from: {', '.join(leaves[:5])}{', ...' if len(leaves) > 5 else ''}"
                    )
                leaves = list(dict.fromkeys(spec.subtasks))
                to_load += leaves
            else:
                to_load.append(name)
                if name in self.task_manager.all_groups:
                    self.group_of[key] = name
            self.members[key] = leaves
        try:
            loaded = self.task_manager.load(to_load)
        except ValueError as exc:
            if "Duplicate task" not in str(exc):
                raise
            raise EvaluateError(
                f"{exc}: two tier map tasks share a subtask; evaluate them in separate runs (--tasks)"
            ) from None
        for key, leaves in self.members.items():
            spec = self.tier_map.tasks[key]
            for leaf in leaves:
                task = loaded["tasks"][leaf]
                about = f"task {key}" + (f" (lm-eval's {leaf})" if leaf != key else "")
                metrics = list(task.aggregation())
                if spec.metric not in metrics:
                    raise EvaluateError(
                        f"{about} reports {', '.join(metrics)}, not {spec.metric}; set metric: to one of them in the "
                        "tier map"
                    )
                filters = [f["name"] for f in task.config.filter_list or []] or ["none"]
                if spec.filter not in filters:
                    raise EvaluateError(
                        f"{about} has filter(s) {', '.join(filters)}, not {spec.filter!r}; set filter: to one of them "
                        "in the tier map"
                    )
                task.set_config(key="num_fewshot", value=spec.num_fewshot)
                if spec.num_fewshot and getattr(task, "sampler", None) is None:
                    raise EvaluateError(
                        f"{about} has no split to draw {spec.num_fewshot} few-shot examples from; set num_fewshot: 0"
                    )
                task.set_fewshot_seed(seed=1234)
        return loaded

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

        return QuietHFLM(
            pretrained=self.model, tokenizer=self.tokenizer, batch_size=self.batch_size, max_length=self.max_length
        )

    def subset(self, limit: int | None, seed: int) -> dict[str, list[int]] | None:
        """Seeded random item indices per lm-eval task (None: every item). Raises if ``limit`` exceeds a task; the
        subtasks of a group (or a subset of one) are each capped at their size instead."""
        if limit is None:
            return None
        if limit <= 0:
            raise EvaluateError(f"--limit must be positive, got {limit}")
        pooled = {leaf for key, leaves in self.members.items() if len(leaves) > 1 or key in self.group_of
                  for leaf in leaves}  # fmt: skip
        out = {}
        for name, n in self.sizes.items():
            if limit > n and name not in pooled:
                raise EvaluateError(f"--limit {limit} is larger than task {name} ({n} items)")
            out[name] = sorted(random.Random(f"{seed}:{name}").sample(range(n), min(limit, n)))
        return out

    def evaluate(self, limit: int | None = None, seed: int = 0, config: dict[str, Any] | None = None) -> dict[str, Any]:
        """Evaluate the model as it is now; return the ``advisor predict``-shaped result."""
        samples = self.subset(limit, seed)
        start = time.perf_counter()
        try:
            res = self._run(self.loaded, samples)
            tasks = {key: self._task_result(key, res) for key in self.members}
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
                "max_length": self.max_length,
                "datasets": self.datasets,
                "device": self.device,
                "seconds": round(seconds, 3),
            },
        }

    def item_scores(self, limit: int | None = None, seed: int = 0) -> dict[str, list[tuple[dict[str, Any], float]]]:
        """Per tier map task, every evaluated item's document and its 0/1 score under the task's metric and filter,
        from lm-eval's own logged samples (a diagnostic by item: e.g. accuracy by a probe field such as popularity)."""
        try:
            res = self._run(self.loaded, self.subset(limit, seed), log_samples=True)
            out: dict[str, list[tuple[dict[str, Any], float]]] = {}
            for key, leaves in self.members.items():
                spec = self.tier_map.tasks[key]
                out[key] = [
                    (s["doc"], float(s[spec.metric]))
                    for leaf in leaves
                    for s in res["samples"][leaf]
                    if s.get("filter", "none") == spec.filter
                ]
        except (EvaluationFailed, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise EvaluationFailed(exc, self._failing_task()) from exc
        return out

    def _task_result(self, key: str, res: dict[str, Any]) -> dict[str, Any]:
        """One tier map task: its metric on every leaf task, n and correct summed (a group pooled: micro)."""
        spec = self.tier_map.tasks[key]
        leaves = self.members[key]
        n = correct = 0
        value = float("nan")
        for leaf in leaves:
            try:
                value = float(res["results"][leaf][spec.metric_key])
                k = int(res["n-samples"][leaf]["effective"])
            except (KeyError, TypeError, ValueError) as exc:
                raise EvaluationFailed(exc, leaf) from exc
            n += k
            correct += round(value * k)  # a 0/1 score per item: the mean times the items is the count
        pooled = len(leaves) > 1 or key in self.group_of
        mean = correct / n if pooled else value
        stderr = math.sqrt(mean * (1 - mean) / (n - 1)) if n > 1 else float("nan")
        first = self.loaded["tasks"][leaves[0]]
        out: dict[str, Any] = {
            "mean": mean, "lo": max(mean - Z90 * stderr, 0.0), "hi": min(mean + Z90 * stderr, 1.0), "level": LEVEL,
            "n": n, "correct": correct, "stderr": stderr,
            "metric": spec.metric, "filter": spec.filter, "n_shot": spec.num_fewshot,
            "lm_eval_task": spec.lm_eval_task or key,
            "kind": "group" if pooled else str(first.config.output_type),
        }  # fmt: skip
        if pooled:
            out["subtasks"] = len(leaves)
            out["aggregation"] = "micro: correct and n summed over the subtasks"
            group = self.group_of.get(key)
            if group is not None:
                aggs = [a for a in self.loaded["groups"][group].aggregate_metric_list or [] if a.metric == spec.metric]
                out["lm_eval_aggregation"] = ("micro" if aggs[0].weight_by_size else "macro") if aggs else None
                out["lm_eval_mean"] = res["results"].get(group, {}).get(spec.metric_key)
        return out

    def _run(self, task_dict: Any, samples: dict[str, list[int]] | None, log_samples: bool = False) -> Any:
        from lm_eval import evaluator as lm_evaluator

        res = lm_evaluator.evaluate(
            lm=self.lm,
            task_dict=task_dict,
            samples=samples,
            cache_requests=False,
            bootstrap_iters=0,  # acc's standard error is analytic (below); no bootstrap needed
            log_samples=log_samples,
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
