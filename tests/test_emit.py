"""Handover emitters: GPTQModel config, llm-compressor recipe and the calibrate quantize command."""

import json
import shlex
from pathlib import Path

import pytest
import yaml

from advisor.emit import Choice, EmitError, calibrate_args, emit, gptqmodel_config, llmcompressor_recipe_dict

CHOICE = Choice("Qwen/Qwen3-8B", bits=4, group_size=128, calib_samples=256, sym=False, act_order=True, damp=0.05)


def _quantize_params(args):
    typer = pytest.importorskip("typer")
    from calibrate.cli import app

    group = typer.main.get_command(app)
    cmd = group.commands["quantize"]  # type: ignore[attr-defined]
    return cmd.make_context("quantize", list(args[1:])).params


def test_command_parses_with_calibrates_own_cli():
    args = calibrate_args(CHOICE, out="ckpt")
    params = _quantize_params(args)
    assert params["model"] == "Qwen/Qwen3-8B" and params["bits"] == 4 and params["group_size"] == 128
    assert params["calib_samples"] == 256 and params["out"] == "ckpt"
    assert params["sym"] is False and params["act_order"] is True and params["damp"] == pytest.approx(0.05)
    text = emit("command", CHOICE, out="ckpt")
    assert shlex.split(text) == ["calibrate", *args]


def test_defaults_give_a_minimal_command():
    c = Choice("meta-llama/Llama-3.1-8B", bits=3.0, group_size=-1, calib_samples=128)
    args = calibrate_args(c)
    assert "--asym" not in args and "--act-order" not in args and "--damp" not in args
    params = _quantize_params(args)
    assert params["bits"] == 3 and params["group_size"] == -1 and params["sym"] is True
    assert params["out"] == "Llama-3.1-8B-gptq-w3g-1"
    # a calibration source, or calibrate quantize refuses to run: WikiText-2 unless files are named
    assert (params["dataset"], params["dataset_name"]) == ("wikitext", "wikitext-2-raw-v1")
    local = _quantize_params(calibrate_args(Choice("m", 4, 32, 8, calib_files=("a.txt", "b.txt"), seqlen=16)))
    assert local["calib_file"] == ["a.txt", "b.txt"] and local["seqlen"] == 16 and local["dataset"] is None


def test_gptqmodel_config_json():
    cfg = json.loads(emit("gptqmodel", CHOICE))
    assert cfg == gptqmodel_config(CHOICE)
    assert cfg["bits"] == 4 and cfg["group_size"] == 128 and cfg["desc_act"] is True and cfg["sym"] is False
    assert cfg["damp_percent"] == pytest.approx(0.05)


def test_gptqmodel_loads_the_config():
    gptqmodel = pytest.importorskip("gptqmodel")
    q = gptqmodel.QuantizeConfig(**gptqmodel_config(CHOICE))
    assert q.bits == 4 and q.group_size == 128 and q.desc_act is True and q.sym is False


def test_llmcompressor_recipe_structure():
    text = emit("llmcompressor", CHOICE)
    assert "num_calibration_samples=256" in text
    doc = yaml.safe_load(text)
    assert doc == llmcompressor_recipe_dict(CHOICE)
    mod = doc["quant_stage"]["quant_modifiers"]["GPTQModifier"]
    assert mod["ignore"] == ["lm_head"] and mod["dampening_frac"] == pytest.approx(0.05)
    w = mod["config_groups"]["group_0"]["weights"]
    assert w == {"num_bits": 4, "type": "int", "symmetric": False, "strategy": "group", "group_size": 128,
                 "actorder": "weight"}  # fmt: skip
    per_channel = llmcompressor_recipe_dict(Choice("m", 8, -1, 64))
    w = per_channel["quant_stage"]["quant_modifiers"]["GPTQModifier"]["config_groups"]["group_0"]["weights"]
    assert w["strategy"] == "channel" and "group_size" not in w and "actorder" not in w


def test_llmcompressor_loads_the_recipe(tmp_path):
    pytest.importorskip("llmcompressor")
    from llmcompressor.recipe import Recipe

    path = tmp_path / "recipe.yaml"
    path.write_text(emit("llmcompressor", CHOICE))
    recipe = Recipe.create_instance(str(path))
    assert recipe is not None


def test_llmcompressor_quantizes_a_shipped_model_with_the_recipe(tmp_path):
    pytest.importorskip("llmcompressor")
    datasets = pytest.importorskip("datasets")
    import torch
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = Path(__file__).resolve().parents[1]
    model_dir = root / "examples" / "models" / "strata-world-xs"
    choice = Choice(str(model_dir), 4, 32, 16, sym=False, act_order=True)  # G 32 divides its widths (64, 192)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(emit("llmcompressor", choice))
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    text = (root / "examples" / "calib" / "strata-world.txt").read_text().splitlines()
    ids = [tok(line)["input_ids"] for line in text if line.strip()][:16]
    calib = datasets.Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * len(i) for i in ids]})
    out = tmp_path / "out"
    oneshot(model=model, dataset=calib, recipe=str(recipe), num_calibration_samples=16, max_seq_length=64,
            output_dir=str(out))  # fmt: skip
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    weights = config["config_groups"]["group_0"]["weights"]
    assert (weights["num_bits"], weights["group_size"], weights["strategy"]) == (4, 32, "group")
    assert weights["symmetric"] is False and weights["actorder"] == "weight"
    assert "lm_head" in config["ignore"]


@pytest.mark.parametrize(
    "kw, match",
    [({"bits": 5}, "--bits 5"), ({"bits": 2.5}, "--bits 2.5"), ({"group_size": 0}, "--group-size 0"),
     ({"calib_samples": 0}, "calibration samples"), ({"damp": 0}, "damping")],
)  # fmt: skip
def test_bad_choices_are_one_line(kw, match):
    args = {"model": "m", "bits": 4, "group_size": 128, "calib_samples": 128, **kw}
    with pytest.raises(EmitError, match=match):
        Choice(**args)


def test_unknown_format():
    with pytest.raises(EmitError, match="unknown --emit 'awq'; use one of gptqmodel, llmcompressor, command"):
        emit("awq", CHOICE)
