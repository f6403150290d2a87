"""The advisor: exact cheapest-first search, honest answers, stable exit codes, one-line errors."""

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
from advisor_cli import cli
from close import assert_close

import advisor
from advisor import core
from advisor.api import _query
from advisor.catalog import lookup
from advisor.memory import quantized_bytes
from advisor.schema import Prediction, Recommendation
from strata.profile import LawFit, law_draws


def test_recommendation_is_the_cheapest_qualifying_configuration():
    rec = advisor.recommend("qwen3-8b", min_ka=0.5, min_kr=0.35, confidence=None)
    assert isinstance(rec, Recommendation) and rec.found
    q = _query("qwen3-8b", None)
    arch = lookup("qwen3-8b").arch
    # independent brute force over the grid with the public predict()
    best = None
    for b, g, c in itertools.product((3, 4, 8), core.DEFAULT_GROUPS, core.DEFAULT_CALIB):
        p = core.predict(q, b, g, c)
        if p.tiers["KA"].mean >= 0.5 and p.tiers["KR"].mean >= 0.35:
            key = (quantized_bytes(arch, b, g).total, c)
            best = min(best or (key, (b, g, c)), (key, (b, g, c)))
    chosen = rec.recommendation.config
    assert (chosen.bits, chosen.group_size, chosen.calib_samples) == best[1]
    for alt in rec.alternatives:
        assert alt.memory_gb >= rec.recommendation.memory_gb


def test_confidence_makes_the_answer_more_conservative():
    loose = advisor.recommend("qwen3-8b", min_ka=0.6, confidence=None)
    strict = advisor.recommend("qwen3-8b", min_ka=0.6, confidence=0.99)
    assert loose.found
    if strict.found:
        assert strict.recommendation.memory_gb >= loose.recommendation.memory_gb
        assert strict.recommendation.prob_all >= 0.99


def test_memory_budget_is_respected():
    rec = advisor.recommend("qwen3-8b", min_ka=0.3, memory_gb=6.2)
    assert rec.found and rec.recommendation.memory_gb <= 6.2


def test_relative_targets_are_fractions_of_the_unquantized_prediction():
    rec = advisor.recommend("qwen3-8b", min_kr=0.95, relative=True, confidence=None)
    unq = advisor.predict("qwen3-8b", bits=16, group_size=-1, calib_samples=128).tiers["KR"].mean
    assert rec.scale == "relative"
    assert rec.recommendation.tiers["KR"].target == pytest.approx(0.95 * unq)


def test_predict_reports_tiers_adjusted_and_tasks_raw_with_intervals():
    p = advisor.predict("Qwen/Qwen3-32B", bits=4, group_size=128, calib_samples=128)
    assert isinstance(p, Prediction)
    for iv in p.tiers.values():
        assert iv.lo < iv.mean < iv.hi
    arc = p.tasks["arc_challenge"]
    assert arc.chance == 0.25 and 0.25 < arc.mean < 1.0
    assert any("N 32.8B outside" in e for e in p.extrapolates)  # 32B is outside the fitted 0.6-14.8B


def test_more_bits_predict_higher_accuracy_and_cost_more():
    q = _query("qwen3-4b", None)
    p3, p4, p8 = (core.predict(q, b, 128, 128, extrapolate=True) for b in (3, 4, 8))
    assert p3.tiers["KR"].mean < p4.tiers["KR"].mean < p8.tiers["KR"].mean
    assert p3.memory_gb < p4.memory_gb < p8.memory_gb


def test_cli_json_answer_and_exit_codes(capsys):
    code, out, _ = cli(capsys, "recommend", "--model", "qwen3-8b", "--min-ka", "0.5", "--json")
    assert code == 0
    answer = json.loads(out)
    assert answer["schema_version"] == 2 and answer["found"] and answer["recommendation"]["config"]["bits"] >= 3
    code, out, _ = cli(capsys, "recommend", "--model", "qwen3-8b", "--min-kr", "0.6", "--json")
    answer = json.loads(out)
    assert code == 3 and not answer["found"]
    assert answer["closest"] is not None and answer["shortfall"]["KR"] > 0
    # an answer that finds nothing says what KR is here, the best any configuration reaches, and the 16-bit value
    assert answer["closest"]["tiers"]["KR"]["tasks"] == ["arc_challenge", "winogrande"]
    assert answer["best_reachable"]["KR"] < 0.6 and answer["unquantized"]["KR"]["mean"] < 0.6
    assert answer["closest"]["tiers"]["KR"]["level"] == pytest.approx(0.9)


def test_cli_predict_json_has_the_shared_shape(capsys):
    code, out, _ = cli(capsys, "predict", "--model", "qwen3-8b", "--bits", "4", "--group-size", "per-channel",
                       "--calib-samples", "128", "--task", "mmlu", "--json")  # fmt: skip
    answer = json.loads(out)
    assert code == 0
    assert set(answer["tiers"]) == {"KA", "KR"} and set(answer["tasks"]) == {"mmlu"}
    assert answer["config"] == {"method": "GPTQ", "bits": 4.0, "group_size": -1, "calib_samples": 128, "sym": True,
                                "act_order": False}  # fmt: skip


def test_cli_table_output(capsys):
    code, out, _ = cli(capsys, "recommend", "--model", "mistral-7b", "--min-ka", "0.3", "--min-kr", "0.1")
    assert code == 0 and "cheapest of" in out and "family Mistral is not in the profile" in out
    code, out, _ = cli(capsys, "recommend", "--model", "llama-3.1-8b", "--min-ka", "0.3", "--min-kr", "0.1")
    assert code == 0 and "profile llama3" in out and "family Llama-3 is not in" not in out


def test_model_from_config_and_from_params(capsys, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "qwen3", "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28,
        "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
        "tie_word_embeddings": True}))  # fmt: skip
    code, out, _ = cli(capsys, "predict", "--model", str(tmp_path), "--bits", "4", "--group-size", "128", "--json")
    assert code == 0 and json.loads(out)["model"]["params_b"] == pytest.approx(1.72, abs=0.01)
    code, out, _ = cli(capsys, "recommend", "--params", "20", "--family", "Qwen3", "--min-ka", "0.5", "--json")
    assert code == 0 and json.loads(out)["model"]["approximate"]


BAD_INPUTS = [
    (("recommend", "--model", "qwen3-9b", "--min-kr", "0.5"), "did you mean"),
    (("recommend", "--model", "qwen3-8b", "--min-kr", "1.5"), "targets are fractions in [0, 1]"),
    (("recommend", "--model", "qwen3-8b", "--target", "KX=0.5"), "unknown tier 'KX'"),
    (("recommend", "--model", "qwen3-8b", "--min-ka", "0.5", "--memory-gb", "1"), "impossible"),
    (("recommend", "--model", "qwen3-8b", "--min-km", "0.5"), "no quantized KM law"),
    (("recommend", "--model", "llama-2-7b", "--min-km", "0.5"), "no quantized KM law"),
    (("recommend", "--model", "qwen3-8b"), "give at least one target"),
    (("recommend", "--model", "qwen3-8b", "--min-ka", "0.5", "--bits", "12"), "law's support"),
    (("predict", "--model", "qwen3-8b", "--bits", "12", "--group-size", "128"), "outside what the law supports"),
    (("predict", "--model", "qwen3-8b", "--bits", "4", "--group-size", "0"), "group size 0"),
    (("predict", "--model", "qwen3-8b", "--bits", "four", "--group-size", "128"), "invalid float"),
    (("predict", "--model", "qwen3-8b", "--bits", "4", "--group-size", "128", "--profile", "nope"), "unknown profile"),
    (("recommend", "--params", "7", "--min-ka", "0.5"), "needs --family"),
]


@pytest.mark.parametrize("argv, message", BAD_INPUTS)
def test_bad_input_is_one_line_on_stderr_and_exit_2(capsys, argv, message):
    code, out, err = cli(capsys, *argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert out == ""


def test_missing_corrupt_and_old_profiles_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"schema_version": 0, "command": "fit run --preset qwen3"}))
    cases = ((tmp_path / "none.json", "does not exist"), (bad, "not valid JSON"), (old, "schema version 0"),
             (tmp_path, "is a directory"))  # fmt: skip
    for path, msg in cases:
        code, _, err = cli(capsys, "recommend", "--model", "qwen3-8b", "--min-ka", "0.5", "--profile", str(path))
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1


def test_search_covers_the_whole_grid():
    rec = advisor.recommend("qwen3-8b", min_ka=0.1)
    assert rec.searched == 3 * 5 * 5  # 2-bit is listed as excluded, every other point evaluated
    assert rec.excluded and rec.excluded[0].startswith("2-bit")


def test_draw_evaluation_is_numpy_only():
    q = _query("qwen3-8b", None)
    d = law_draws(q.profile.tiers["KA"], 8.2e9, np.array([3.0, 4.0]), np.array([128.0, 128.0]),
                  np.array([128.0, 128.0]), model="qwen3-8b", tier="KA")  # fmt: skip
    assert isinstance(d, np.ndarray) and d.shape == (200, 2)


def _fixed_law(ln_a: float, omega: float, draws: int = 4000) -> LawFit:
    """A law with no coefficient uncertainty and a model deviation of sd ``omega``: only the deviation varies."""
    coef = {"ln_a": ln_a, "alpha": 0.0, "beta": 0.0, "gamma": 0.0, "delta": 0.0}
    return LawFit(coef=coef, draws={**{k: [v] * draws for k, v in coef.items()}, "omega": [omega] * draws}, n_rows=10)


def test_each_tier_gets_its_own_model_deviation():
    """Tiers whose laws are independent (no shared coefficient draws) must meet their targets independently:
    P(all) is the product of the per-tier probabilities, not their minimum (one noise vector shared by all)."""
    ka, kr = _fixed_law(-1.0, 0.5), _fixed_law(-1.2, 0.5)
    one = np.array([1.0])
    a = law_draws(ka, 1e9, one * 4, one * 128, one * 128, model="m", tier="KA")[:, 0]
    r = law_draws(kr, 1e9, one * 4, one * 128, one * 128, model="m", tier="KR")[:, 0]
    ta, tr = float(np.median(a)), float(np.median(r))  # targets each met with probability ~0.5
    pa, pr, both = np.mean(a >= ta), np.mean(r >= tr), np.mean((a >= ta) & (r >= tr))
    assert abs(both - pa * pr) < 4 * np.sqrt(pa * pr * (1 - pa * pr) / a.size)  # 4 binomial sd of 4000 draws
    again = law_draws(ka, 1e9, one * 4, one * 128, one * 128, model="m", tier="KA")[:, 0]
    np.testing.assert_allclose(a, again, rtol=1e-12)  # the same seeded deviation: a reproducible answer
    other = law_draws(ka, 1e9, one * 4, one * 128, one * 128, model="m2", tier="KA")[:, 0]
    assert not np.allclose(a, other)  # another model, another deviation


def test_installed_entry_point_runs_from_anywhere(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "advisor.cli", "recommend", "--model", "qwen3-8b", "--min-ka", "0.5", "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["profile"]["name"] == "qwen3"


def test_import_advisor_loads_no_heavy_stack(tmp_path):
    code = (
        "import sys, advisor; advisor.recommend('qwen3-8b', min_ka=0.5); "
        "print(sorted(m for m in ('torch', 'jax', 'lm_eval', 'numpyro', 'transformers') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_interval_is_numpys_linear_quantile_of_the_draws():
    # advisor.core._interval interpolates the sorted draws instead of calling np.quantile (start-up time)
    from advisor.core import _interval

    rng = np.random.default_rng(7)
    for n in (2, 3, 10, 201, 4000):
        x = rng.standard_t(3, size=n)
        got = _interval(x)
        want = np.quantile(x, [0.05, 0.5, 0.95])
        assert_close(
            [got.lo, got.median, got.hi], [float(w) for w in want], rel=0, abs_=1e-12
        )  # the same interpolation: rounding only


def test_recommend_json_loads_nothing_it_does_not_use():
    # the cold start is most of an advisor call (bench/advisor_latency.py): no table library, no YAML reader,
    # no numpy.ma (np.quantile's lazy import), no heavy stack
    code = (
        "import sys, io, contextlib\n"
        "sys.argv = ['advisor', 'recommend', '--model', 'qwen3-8b', '--min-kr', '0.6', '--json']\n"
        "from advisor.cli import main\n"
        "try:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        main()\n"
        "except SystemExit as e:\n"
        "    assert e.code in (0, 3), e.code\n"
        "unused = ('numpy.ma', 'rich', 'typer', 'yaml', 'torch', 'jax', 'lm_eval')\n"
        "print(' '.join(m for m in unused if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == []


def test_a_profiles_seed_spread_widens_its_tier_interval_to_a_next_runs(tmp_path):
    """With the seed-to-seed sd a profile measured, a tier's 90% interval is one for the next quantization run: at
    least as wide as the noise alone (2 x 1.645 sd), centred where it was; tiers without a spread are unchanged."""
    from profiles import DIR
    from strata.profile import SeedSpread, load_profile

    prof = load_profile(DIR / "qwen3.json")
    path = tmp_path / "spread.json"
    prof.seed_spread = {"KA": SeedSpread(sd={"3": 0.01, "4": 0.05}, configs={"3": 4, "4": 4})}
    path.write_text(prof.model_dump_json(exclude_none=True))
    args = dict(bits=4, group_size=128, calib_samples=128, published_baseline=False)
    before = advisor.predict("qwen3-8b", profile=str(DIR / "qwen3.json"), **args).tiers
    after = advisor.predict("qwen3-8b", profile=str(path), **args).tiers
    width = lambda t: t.hi - t.lo  # noqa: E731
    # 0.9: the 5% and 95% quantiles of a few thousand draws carry a few percent of Monte Carlo error
    assert width(after["KA"]) >= 0.9 * 2 * 1.645 * 0.05 > width(before["KA"])
    assert abs(after["KA"].mean - before["KA"].mean) < 0.01  # zero-mean noise: 0.05 / sqrt(draws) moves the mean
    assert_close(after["KR"].model_dump(), before["KR"].model_dump(), rel=1e-12, abs_=1e-12)


def test_past_the_fitted_sizes_the_interval_widens_with_the_profiles_extrapolation_scale(tmp_path):
    """Qwen3-32B is past the qwen3 profile's 0.6-14.8B: with the profile's extrapolation scale its KA interval is
    wider than the law's own, by about kappa x ln(32 / 14.8) on the ln(-ln) scale; inside the range (8B) nothing
    changes; with a baseline (the level measured) nothing changes either."""
    from profiles import DIR
    from strata.profile import load_profile

    prof = load_profile(DIR / "qwen3.json")
    assert prof.extrapolation is not None and prof.extrapolation["KA"].kappa > 0
    plain = tmp_path / "plain.json"
    prof.extrapolation = None
    plain.write_text(prof.model_dump_json(exclude_none=True))
    args = dict(bits=4, group_size=128, calib_samples=128, published_baseline=False)
    width = lambda t: t.hi - t.lo  # noqa: E731
    wide = advisor.predict("qwen3-32b", profile="qwen3", **args).tiers["KA"]
    narrow = advisor.predict("qwen3-32b", profile=str(plain), **args).tiers["KA"]
    assert width(wide) > 1.2 * width(narrow)
    inside = [advisor.predict("qwen3-8b", profile=p, **args).tiers["KA"] for p in ("qwen3", str(plain))]
    assert_close(inside[0].model_dump(), inside[1].model_dump(), rel=1e-12, abs_=1e-12)
    base = {"tasks": {"arc_easy": {"mean": 0.8}, "arc_challenge": {"mean": 0.6}, "winogrande": {"mean": 0.75}}}
    kw = {**args, "published_baseline": True, "baseline": base}
    given = [advisor.predict("qwen3-32b", profile=p, **kw).tiers["KR"] for p in ("qwen3", str(plain))]
    assert_close(given[0].model_dump(), given[1].model_dump(), rel=1e-12, abs_=1e-12)
    # a task the baseline lacks comes from its own law alone: widened too (piqa beside a baseline of arc_easy)
    part = {**args, "published_baseline": True, "baseline": {"tasks": {"arc_easy": {"mean": 0.8}}}}
    piqa = [
        advisor.predict("qwen3-32b", profile=p, tasks=["piqa"], **part).tasks["piqa"] for p in ("qwen3", str(plain))
    ]
    assert width(piqa[0]) > 1.2 * width(piqa[1])


def test_a_profiles_drop_spread_is_the_conditioned_intervals_model_to_model_scatter(tmp_path):
    """With a baseline, what is left unknown is how this model's drop strays from the law's: the profile's
    measured drop spread. A wide spread widens the conditioned KA interval (the median barely moves: zero-mean);
    without a baseline the law alone does not use it."""
    from profiles import DIR
    from strata.profile import DropSpread, load_profile

    prof = load_profile(DIR / "qwen3.json")
    assert prof.drop_spread is not None and set(prof.drop_spread) == {"KA", "KR"}
    wide = tmp_path / "wide.json"
    prof.drop_spread = {t: DropSpread(sd=0.5, n=10, models=2) for t in prof.drop_spread}
    wide.write_text(prof.model_dump_json(exclude_none=True))
    base = {"tasks": {"arc_easy": {"mean": 0.80}, "hellaswag": {"mean": 0.60}, "piqa": {"mean": 0.78},
                      "boolq": {"mean": 0.85}, "mmlu": {"mean": 0.70}, "arc_challenge": {"mean": 0.55},
                      "winogrande": {"mean": 0.70}}}  # fmt: skip
    args = dict(bits=4, group_size=128, calib_samples=128)  # 4 bits: no collapse mixed in
    shipped = advisor.predict("qwen3-8b", profile=str(DIR / "qwen3.json"), baseline=base, **args).tiers["KA"]
    widened = advisor.predict("qwen3-8b", profile=str(wide), baseline=base, **args).tiers["KA"]
    assert widened.hi - widened.lo > 1.5 * (shipped.hi - shipped.lo)
    assert abs(widened.point - shipped.point) < 0.03  # a median under a wider zero-mean spread
    alone = dict(args, published_baseline=False)
    assert_close(advisor.predict("qwen3-8b", profile=str(wide), **alone).tiers["KA"].model_dump(),
                 advisor.predict("qwen3-8b", profile=str(DIR / "qwen3.json"), **alone).tiers["KA"].model_dump(),
                 rel=1e-12, abs_=1e-12)  # fmt: skip


def test_a_drop_spread_that_grows_with_the_drop_widens_4_bits_and_leaves_8_bits_narrow(tmp_path):
    """A model's deviation in proportion to the law's drop (``DropSpread.scale``): it widens the conditioned 4-bit
    interval, where the law predicts a drop, and leaves the 8-bit one, where the law's drop is near 0, about as it
    is without it."""
    from profiles import DIR
    from strata.profile import DropSpread, load_profile

    def width(scale: float, bits: int) -> float:
        prof = load_profile(DIR / "qwen3.json")
        prof.drop_spread = {t: DropSpread(sd=0.01, scale=scale, n=10, models=2) for t in prof.tiers}
        path = tmp_path / f"p{scale}.json"
        path.write_text(prof.model_dump_json(exclude_none=True))
        band = advisor.predict("qwen3-8b", profile=str(path), bits=bits, group_size=128, calib_samples=128).tasks
        return band["arc_easy"].hi - band["arc_easy"].lo

    assert width(1.0, 4) > 1.5 * width(0.0, 4)
    assert width(1.0, 8) < 1.5 * width(0.0, 8) + 0.005  # the 8-bit law's drop is small: little to scale


def test_the_default_group_grid_is_fitted_to_a_narrow_model_and_a_chosen_one_is_not():
    """The zoo's 25k model is 32 wide: the default grid (32..256, per channel) is searched on the sizes that fit
    it, the others listed as excluded; a group size the user asks for that does not fit stays an error."""
    from pathlib import Path

    from advisor.core import AdviceError

    zoo = advisor.resolve_model(
        str(Path(__file__).resolve().parents[1] / "examples" / "models" / "strata-zoo-25k"), family="strata-world"
    )
    rec = advisor.recommend(zoo, min_km=0.1)
    assert rec.found and rec.recommendation.config.group_size in (32, -1)  # type: ignore[union-attr]
    assert [e.split(":")[0] for e in rec.excluded if e.startswith("G=")] == ["G=64", "G=128", "G=256"]
    with pytest.raises(AdviceError, match="group size 64"):
        advisor.recommend(zoo, min_km=0.1, group_sizes=[64, -1])


def test_a_task_in_no_tier_is_left_out_for_a_family_no_profile_was_fitted_on():
    """truthfulqa_mc1 (no tier) has only its fitted family's law; carried to Gemma-2 it said 0.252 [0.251, 0.253].
    It is left out, and the answer says why; the fitted family keeps it."""
    gemma = advisor.predict("google/gemma-2-9b", bits=4, group_size=128, calib_samples=128)
    assert "truthfulqa_mc1" not in gemma.tasks and "arc_easy" in gemma.tasks
    assert any(e.startswith("task truthfulqa_mc1: in no tier") for e in gemma.extrapolates)
    llama = advisor.predict("meta-llama/Llama-2-7b-hf", bits=4, group_size=128, calib_samples=128)
    assert "truthfulqa_mc1" in llama.tasks
