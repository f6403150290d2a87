"""A model's training stage: read from its id, chosen a profile by, and widened for where the profile is of the
other stage (strata.stage, fit.stage_shift, the advisor)."""

from __future__ import annotations

import pytest
from close import assert_close

import advisor
from profiles import DIR
from strata.profile import load_profile
from strata.stage import BASE, POST_TRAINED, stage_class, stage_of_name


@pytest.mark.parametrize(
    ("name", "stage"),
    [("Qwen/Qwen3-8B-Base", BASE), ("meta-llama/Llama-3.1-8B-Instruct", POST_TRAINED), ("Qwen-7B-Chat", POST_TRAINED),
     ("google/gemma-2-9b-it", POST_TRAINED), ("Qwen2.5-7B-Instruct-GPTQ-Int4", POST_TRAINED), ("qwen3-8b", None),
     ("Llama-2-7b", None), ("italian-gpt", None), ("biter-7b", None)],
)  # fmt: skip
def test_a_models_stage_is_what_its_id_says_and_nothing_where_it_says_nothing(name: str, stage: str | None) -> None:
    assert stage_of_name(name) == stage


def test_row_stages_fall_in_two_classes() -> None:
    assert [stage_class(s) for s in ("base", "post-trained", "instruct", "chat", "pretrained?")] == [
        BASE, POST_TRAINED, POST_TRAINED, POST_TRAINED, None
    ]  # fmt: skip


def test_the_shipped_profiles_measure_how_far_their_laws_miss_the_other_stage() -> None:
    """qwen3 (post-trained) is scored on the five Qwen3 Base models, qwen3-base on the five post-trained ones, llama
    (base) on the Llama-2-chat rows; llama3 holds both stages in its fit and has none."""
    shift = load_profile(DIR / "qwen3.json").stage_shift
    assert shift is not None and shift.stage == BASE and len(shift.models) == 5
    assert all(m.endswith("-Base") for m in shift.models) and min(shift.sd.values()) > 0
    assert load_profile(DIR / "qwen3-base.json").stage_shift.stage == POST_TRAINED  # type: ignore[union-attr]
    assert load_profile(DIR / "llama3.json").stage_shift is None


ARGS = dict(bits=4, group_size=128, calib_samples=128)


def test_a_base_model_gets_the_base_profile_and_another_stage_is_widened_and_said() -> None:
    """Qwen/Qwen3-8B-Base is answered by qwen3-base by default. Forced onto the post-trained qwen3 profile, the law
    alone is widened by the measured stage shift (the answer says so); the same model under its plain catalog
    name (no stage in the id) is not; with a baseline the conditioned tiers do not change (the level is pinned)."""
    pred = advisor.predict("Qwen/Qwen3-8B-Base", published_baseline=False, **ARGS)  # type: ignore[arg-type]
    assert pred.profile.name == "qwen3-base"
    base = advisor.predict("Qwen/Qwen3-8B-Base", profile="qwen3", published_baseline=False, **ARGS)  # type: ignore[arg-type]
    plain = advisor.predict("qwen3-8b", profile="qwen3", published_baseline=False, **ARGS)  # type: ignore[arg-type]
    for tier in ("KA", "KR"):
        assert base.tiers[tier].hi - base.tiers[tier].lo > 1.3 * (plain.tiers[tier].hi - plain.tiers[tier].lo)
    assert any("stage base" in e for e in base.extrapolates) and not any("stage" in e for e in plain.extrapolates)
    scores = {"tasks": {t: {"mean": 0.7} for t in ("arc_easy", "hellaswag", "piqa", "boolq", "mmlu", "arc_challenge",
                                                    "winogrande")}}  # fmt: skip
    given = advisor.predict("Qwen/Qwen3-8B-Base", profile="qwen3", baseline=scores, **ARGS)  # type: ignore[arg-type]
    again = advisor.predict("qwen3-8b", profile="qwen3", baseline=scores, **ARGS)  # type: ignore[arg-type]
    assert_close(given.tiers["KA"].model_dump(), again.tiers["KA"].model_dump(), rel=1e-12, abs_=1e-12)
