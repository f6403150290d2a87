"""`calibrate quantize`: a real GPTQ checkpoint of strata-world-xs written by GPTQModel, loaded back and evaluated.

The checkpoint test needs gptqmodel (the `deploy` extra) and skips without it; bad inputs exit 2 with one line
before GPTQModel is ever imported, so those tests run everywhere. GPTQMODEL_DISABLE_PACK_EXT=1 keeps GPTQModel's
one-time C++ packing helper (~34 s to compile) out of the test; its Python packing path writes the same format.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
XS = ROOT / "examples" / "models" / "strata-world-xs"
CALIB = ROOT / "examples" / "calib" / "strata-world.txt"
CONFIG = ["--bits", "4", "--group-size", "32", "--calib-samples", "8", "--seqlen", "16", "--calib-file", str(CALIB)]


def _quantize(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TQDM_DISABLE="1")
    env["GPTQMODEL_DISABLE_PACK_EXT"] = "1"
    cmd = [sys.executable, "-m", "calibrate.cli", "quantize", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=400)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    if importlib.util.find_spec("gptqmodel") is None:  # not imported here: its import changes the environment
        pytest.skip("gptqmodel is not installed (the deploy extra)")
    work = tmp_path_factory.mktemp("deploy")
    out = work / "xs-b4-g32"
    run = _quantize("--model", str(XS), "--out", str(out), *CONFIG, "--json", cwd=work)
    assert run.returncode == 0, run.stderr[-3000:]
    return work, out, json.loads(run.stdout)  # stdout is the summary alone: GPTQModel's output goes to stderr


def test_checkpoint_is_written_with_its_record(checkpoint: tuple[Path, Path, dict]) -> None:
    work, out, summary = checkpoint
    assert summary["out"] == str(out)
    assert (summary["bits"], summary["group_size"], summary["calib_samples"]) == (4, 32, 8)
    assert summary["calib_samples_effective"] == 8
    assert summary["size_bytes"] == (out / "model.safetensors").stat().st_size > 0
    qcfg = json.loads((out / "config.json").read_text())["quantization_config"]
    assert (qcfg["quant_method"], qcfg["bits"], qcfg["group_size"], qcfg["desc_act"]) == ("gptq", 4, 32, False)
    assert (out / "tier_map.yaml").is_file() and (out / "tasks" / "strata_world_kr.jsonl").is_file()
    record = json.loads((out / "strata_quantize.json").read_text())
    assert record["calibration"]["source"] == "files:strata-world.txt"
    assert (record["calibration"]["stated"], record["calibration"]["effective"]) == (8, 8)
    assert record["quantizer"]["act_group_aware"] is False
    assert record["versions"]["gptqmodel"]
    assert record["parameters"]["calibration"]["seqlen"] == 16 and record["parameters"]["gptq"]["sym"] is True
    # GPTQModel's ./logs and the staging folder stay out of the working directory
    assert sorted(p.name for p in work.iterdir()) == [out.name]


def test_checkpoint_loads_on_the_4bit_grid_and_beats_chance(checkpoint: tuple[Path, Path, dict]) -> None:
    pytest.importorskip("optimum")  # transformers loads GPTQ checkpoints through optimum + gptqmodel
    import torch

    from calibrate.evaluate import Evaluator

    _, out, _ = checkpoint
    from huggingface_hub import constants

    env = dict(os.environ)  # importing gptqmodel (through transformers) sets HF_HOME and other variables
    try:
        os.environ.setdefault("HF_HOME", str(constants.HF_HOME))  # else tokenicer points it at /tmp
        ev = Evaluator(out)  # the checkpoint's own tier map, as `calibrate evaluate --model OUT` uses
        quantized = {n: m for n, m in ev.model.named_modules() if hasattr(m, "qweight")}
        assert len(quantized) == 2 * 7  # q, k, v, o, gate, up, down in each of 2 layers
        for name, module in quantized.items():
            w = module.dequantize_weight().float()  # (in, out)
            scales = module.scales.float()  # (groups, out)
            assert scales.shape[0] == w.shape[0] // 32, name
            codes = w.reshape(scales.shape[0], 32, -1) / scales[:, None, :]
            assert torch.allclose(codes, codes.round(), atol=2e-2), name  # integer multiples of the group's scale
            span = codes.round().amax(dim=1) - codes.round().amin(dim=1)
            assert int(span.max()) <= 15, name  # at most 16 levels per group and output
        result = ev.evaluate(limit=48, seed=0)
    finally:
        os.environ.clear()
        os.environ.update(env)
    for name, task in result["tasks"].items():
        assert task["mean"] > 0.25, name  # chance is 0.25 on every task
    for tier, t in result["tiers"].items():
        assert t["mean"] > 0, tier  # the chance-adjusted scale


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bits", "5"], "--bits 5 is not supported"),
        (["--out", "full"], "exists and is not empty"),
        (["--model", "missing/model/dir"], "does not exist"),
        (["--seqlen", "0"], "--seqlen must be positive"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    base = {"--model": str(XS), "--out": "new", **dict(zip(CONFIG[::2], CONFIG[1::2], strict=True))}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    run = _quantize(*[s for kv in base.items() for s in kv], cwd=tmp_path)
    assert run.returncode == 2, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], run.stderr
    assert run.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]  # nothing written, not even a staging folder


def _quantize_here(out: Path, **change: object) -> dict:
    """quantize_checkpoint in this process (checks that need the model's config and tokenizer, without a new
    interpreter importing transformers each time; the CLI turns the same errors into exit 2 as above)."""
    from calibrate.deploy import quantize_checkpoint
    from calibrate.spec import CalibrationSpec, GptqSpec

    seqlen = change.pop("seqlen", 16)
    kwargs: dict = {"bits": 4, "group_size": 32, "calib_samples": 8, "device": "cpu", **change}
    calibration = CalibrationSpec(files=[str(CALIB)], seqlen=seqlen, seeds=[0])
    gptq = GptqSpec(sym=True, act_order=False, damp=0.01)
    return quantize_checkpoint(str(XS), str(out), calibration=calibration, gptq=gptq, **kwargs)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"group_size": 48}, "--group-size 48 does not divide the input width 64 of .*layer model.layers.0"),
        ({"calib_samples": 100000}, "yields 1036 windows of 16 tokens, fewer than Cb=100000"),
        ({"seqlen": 128}, "--seqlen 128 is longer than .*64 positions"),
    ],
)
def test_inputs_checked_against_the_model(tmp_path: Path, change: dict, message: str) -> None:
    from calibrate.deploy import DeployError

    with pytest.raises(DeployError, match=message):
        _quantize_here(tmp_path / "out", **change)
    assert list(tmp_path.iterdir()) == []


def test_missing_gptqmodel_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from calibrate.deploy import DeployError

    monkeypatch.setitem(sys.modules, "gptqmodel", None)  # `import gptqmodel` now raises ImportError
    with pytest.raises(DeployError, match=r"GPTQModel is not installed.*strata\[deploy\]"):
        _quantize_here(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # no staging folder left behind


def test_the_emitted_command_and_gptqmodel_config_quantize_a_shipped_model(tmp_path: Path) -> None:
    """The advisor's handover, run: `--emit command` is a `calibrate quantize` that writes the checkpoint, and the
    `--emit gptqmodel` fields are the checkpoint's quantization config."""
    if importlib.util.find_spec("gptqmodel") is None:
        pytest.skip("gptqmodel is not installed (the deploy extra)")
    from advisor.emit import Choice, calibrate_args, gptqmodel_config

    choice = Choice(str(XS), bits=4, group_size=32, calib_samples=8, calib_files=(str(CALIB),), seqlen=16)
    out = tmp_path / "handover"
    run = _quantize(*calibrate_args(choice, str(out))[1:], cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    qcfg = json.loads((out / "config.json").read_text())["quantization_config"]
    want = gptqmodel_config(choice)
    assert (qcfg["bits"], qcfg["group_size"], qcfg["desc_act"], qcfg["sym"]) == (
        want["bits"],
        want["group_size"],
        want["desc_act"],
        want["sym"],
    )


@pytest.mark.parametrize("family", sorted(__import__("test_architectures").FAMILIES))
def test_calibrate_quantize_writes_a_checkpoint_of_every_family(family: str, tmp_path: Path) -> None:
    """The real architectures of tests/test_architectures.py (tiny, random), each written by GPTQModel."""
    if importlib.util.find_spec("gptqmodel") is None:
        pytest.skip("gptqmodel is not installed (the deploy extra)")
    import transformers
    from test_architectures import FAMILIES
    from tiny_sweep import random_model

    cls, over = FAMILIES[family]
    model = random_model(tmp_path / family, getattr(transformers, cls), **over)
    out = tmp_path / f"{family}-w4g32"
    args = ["--bits", "4", "--group-size", "32", "--calib-samples", "4", "--seqlen", "16", "--calib-file", str(CALIB)]
    run = _quantize("--model", str(model), "--out", str(out), *args, "--device", "cpu", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    qcfg = json.loads((out / "config.json").read_text())["quantization_config"]
    assert (qcfg["bits"], qcfg["group_size"]) == (4, 32)
