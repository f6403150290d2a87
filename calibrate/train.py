"""Train the model zoo: small Qwen3-architecture models on the synthetic world's corpus.

    python -m calibrate.train --size xs --seed 0 --out examples/models/strata-world-xs

Each size is a ``Qwen3Config`` (tied embeddings, grouped-query attention, the real architecture at toy scale); the
sizes span ~50x in parameters. The output directory is a complete Hugging Face checkpoint (safetensors, config,
tokenizer) plus the world's tier map and probe tasks (``tier_map.yaml``, ``tasks/``), so
``calibrate evaluate --model <out>`` needs no other flag, and ``training.json`` records how it was made.

Determinism: one seed drives the world, the initial weights and the order of training lines; deterministic torch
algorithms are requested, and the thread count is fixed (CPU reductions can depend on it). The same seed, size,
step count and device give the same loss curve.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from calibrate import tokenizer as wtok
from calibrate import world as wworld
from strata.errors import first_line


@dataclass(frozen=True)
class Size:
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    steps: int  # default training steps: enough to reach well above chance on all tiers (see docs/zoo.md)
    lr: float
    # Zoo sizes train for whole epochs of length-bucketed batches (every line once per epoch, almost no padding);
    # ``steps`` is then ignored. None: the first sizes' sampler (random lines with replacement, padded batches).
    epochs: int | None = None
    world: str = "default"  # the world it is trained on: a key of WORLDS


SIZES: dict[str, Size] = {
    "xs": Size(hidden=64, layers=2, intermediate=192, heads=4, kv_heads=2, head_dim=16, steps=2000, lr=3e-3),
    "s": Size(hidden=96, layers=3, intermediate=288, heads=4, kv_heads=2, head_dim=24, steps=2000, lr=2e-3),
    "m": Size(hidden=128, layers=4, intermediate=384, heads=4, kv_heads=2, head_dim=32, steps=3000, lr=1.5e-3),
    "l": Size(hidden=192, layers=6, intermediate=576, heads=6, kv_heads=2, head_dim=32, steps=4000, lr=1e-3),
    "xl": Size(hidden=256, layers=8, intermediate=768, heads=8, kv_heads=4, head_dim=32, steps=4000, lr=8e-4),
}


# The zoo (issue 15): five sizes spanning 21x in block (non-embedding) parameters, 25k to 523k, about 2.2x apart
# (so that each step up learns visibly more), on the spelled world whose facts sit near the smaller models'
# capacity. Widths and feed-forward sizes are multiples of 32, so group sizes 8, 16 and 32 divide every quantized
# layer's input. All train on the same data budget (ZOO_EPOCHS epochs), as a scaling law
# assumes. (A one-layer 32-wide model, 12k block parameters, stayed at chance on every tier: not a zoo member.)
ZOO_EPOCHS = 4
ZOO_SIZES: dict[str, Size] = {
    "zoo-25k": Size(32, 2, 96, 2, 1, 16, 0, 4e-3, ZOO_EPOCHS, "zoo"),
    "zoo-62k": Size(64, 2, 96, 4, 2, 16, 0, 3e-3, ZOO_EPOCHS, "zoo"),
    "zoo-148k": Size(96, 2, 160, 6, 3, 16, 0, 2.5e-3, ZOO_EPOCHS, "zoo"),
    "zoo-271k": Size(128, 2, 224, 8, 4, 16, 0, 2e-3, ZOO_EPOCHS, "zoo"),
    "zoo-523k": Size(160, 2, 384, 10, 5, 16, 0, 1.5e-3, ZOO_EPOCHS, "zoo"),
}
SIZES.update(ZOO_SIZES)
WORLDS: dict[str, wworld.WorldSpec] = {"default": wworld.WorldSpec(), "zoo": wworld.ZOO}


def model_config(size: Size, vocab_size: int) -> Any:
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=size.hidden,
        intermediate_size=size.intermediate,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads,
        head_dim=size.head_dim,
        max_position_embeddings=64,  # the longest corpus line is ~25 tokens
        tie_word_embeddings=True,
        pad_token_id=wtok.SPECIALS.index(wtok.PAD),
        eos_token_id=wtok.SPECIALS.index(wtok.EOS),
        bos_token_id=None,
    )


@dataclass
class TrainResult:
    model: Any
    tokenizer: Any  # tokenizers.Tokenizer
    world: wworld.World
    losses: list[float]  # mean loss of each logged window
    params: int
    tokens: int  # non-padding training tokens seen
    seconds: float  # training time, summed over the sittings of a resumed run
    finished: bool = True


def _encode(tok: Any, lines: list[str]) -> list[list[int]]:
    eos = tok.token_to_id(wtok.EOS)
    return [[*tok.encode(line).ids, eos] for line in lines]


def _batch(seqs: list[list[int]], idx: list[int], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(seqs[i]) for i in idx)
    ids = torch.full((len(idx), width), pad, dtype=torch.long)
    for row, i in enumerate(idx):
        ids[row, : len(seqs[i])] = torch.tensor(seqs[i])
    labels = ids.masked_fill(ids == pad, -100)
    return ids, labels


def _random_batches(n: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """The first sizes' sampler: ``steps`` batches of lines drawn with replacement."""
    order = torch.Generator().manual_seed(seed)
    return [torch.randint(n, (batch_size,), generator=order).tolist() for _ in range(steps)]


def _epoch_batches(
    seqs: list[list[int]], batch_size: int, epochs: int, seed: int, spans: list[tuple[int, int]] | None = None
) -> list[list[int]]:
    """Every line once per epoch, in batches of lines of one length (so a batch carries almost no padding): each
    epoch shuffles the lines, sorts them stably by length (equal lengths stay shuffled), cuts batches and shuffles
    the batches. The whole plan is a function of the seed, so a resumed run replays the same order. ``spans``
    (start, count) per epoch: an epoch's own lines in ``seqs``, for a world whose epochs differ (default: all)."""
    batches: list[list[int]] = []
    for epoch in range(epochs):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        first, count = spans[epoch] if spans is not None else (0, len(seqs))
        idx = [first + i for i in torch.randperm(count, generator=gen).tolist()]
        idx.sort(key=lambda i: len(seqs[i]))
        cut = [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]
        batches += [cut[j] for j in torch.randperm(len(cut), generator=gen).tolist()]
    return batches


CHECKPOINT = "checkpoint.pt"  # training state under the output folder while a run is unfinished


def train(
    size: str | Size,
    seed: int = 0,
    steps: int | None = None,
    batch_size: int = 128,
    lr: float | None = None,
    device: str = "cpu",
    world_spec: wworld.WorldSpec | None = None,
    log_every: int = 100,
    threads: int | None = None,
    progress: bool = False,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 0,
    stop_after: int | None = None,
) -> TrainResult:
    """Train one zoo model from scratch; deterministic given the arguments.

    With ``checkpoint_dir``, the training state (weights, optimizer, schedule, step, losses) is written there every
    ``checkpoint_every`` steps (a multiple of ``log_every``) and a run finding one there continues from it, so an
    interrupted run resumes where it stopped and ends where an uninterrupted one would. ``stop_after`` ends the
    sitting after that many steps in all (the state is saved; the result is the unfinished model)."""
    from transformers import Qwen3ForCausalLM

    spec = SIZES[size] if isinstance(size, str) else size
    lr = spec.lr if lr is None else lr
    if threads is not None:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)

    world = wworld.generate(world_spec or replace(WORLDS[spec.world], seed=seed))
    tok = wtok.build(wworld.vocabulary(world))
    pad = tok.token_to_id(wtok.PAD)
    assert pad is not None
    if spec.epochs is not None and steps is None and wworld.sparse(world):
        # Some people are seen in only some epochs: each epoch has its own lines, encoded once per distinct line.
        cache: dict[str, list[int]] = {}
        seqs: list[list[int]] = []
        spans: list[tuple[int, int]] = []
        for epoch in range(spec.epochs):
            lines = wworld.corpus(world, epoch)
            for line in set(lines) - cache.keys():
                cache[line] = _encode(tok, [line])[0]
            spans.append((len(seqs), len(lines)))
            seqs += [cache[line] for line in lines]
        plan = _epoch_batches(seqs, batch_size, spec.epochs, seed, spans)
    elif spec.epochs is not None and steps is None:
        seqs = _encode(tok, wworld.corpus(world))
        plan = _epoch_batches(seqs, batch_size, spec.epochs, seed)
    else:
        seqs = _encode(tok, wworld.corpus(world))
        plan = _random_batches(len(seqs), batch_size, spec.steps if steps is None else steps, seed)
    steps = len(plan)

    model: Any = Qwen3ForCausalLM(model_config(spec, tok.get_vocab_size()))
    model.to(torch.device(device))  # in place for a module
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    warmup = max(1, steps // 20)

    def schedule(step: int) -> float:  # linear warm-up, then cosine down to 10% of the peak
        if step < warmup:
            return (step + 1) / warmup
        return 0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    losses: list[float] = []
    window: list[float] = []
    tokens, done, before = 0, 0, 0.0
    ckpt = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    if checkpoint_every and checkpoint_every % log_every:
        raise ValueError(f"checkpoint_every ({checkpoint_every}) must be a multiple of log_every ({log_every})")
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        if state["steps"] != steps:
            raise ValueError(f"{ckpt} is a run of {state['steps']} steps, not {steps}; remove it to start again")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        losses, tokens, done, before = list(state["losses"]), int(state["tokens"]), int(state["step"]), state["seconds"]
        if progress:
            print(f"resuming from {ckpt} at step {done}/{steps}", flush=True)
    model.train()
    start = time.perf_counter()
    last = steps if stop_after is None else min(steps, stop_after)
    for step in range(done, last):
        ids, labels = _batch(seqs, plan[step], pad)
        ids, labels = ids.to(device), labels.to(device)
        # Right padding under a causal mask never influences a real token, so no attention mask is needed.
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        tokens += int((labels != -100).sum())
        window.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            losses.append(sum(window) / len(window))
            window = []
            elapsed = before + time.perf_counter() - start
            if progress:
                print(f"step {step + 1}/{steps} loss {losses[-1]:.4f} {elapsed:.0f}s", flush=True)
            if ckpt is not None and checkpoint_every and ((step + 1) % checkpoint_every == 0 or step + 1 == last):
                ckpt.parent.mkdir(parents=True, exist_ok=True)
                state = {
                    **{"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()},
                    **{"step": step + 1, "steps": steps, "losses": losses, "tokens": tokens, "seconds": elapsed},
                }
                torch.save(state, ckpt.with_suffix(".tmp"))
                ckpt.with_suffix(".tmp").replace(ckpt)  # a kill mid-write leaves the previous state intact
    seconds = before + time.perf_counter() - start
    model.eval()
    return TrainResult(model.cpu(), tok, world, losses, params, tokens, seconds, finished=last == steps)


def save(result: TrainResult, out: str | Path, size: str, seed: int, device: str, extra: dict[str, Any],
         epochs_override: int | None = None) -> Path:  # fmt: skip
    """Write the checkpoint, tokenizer, tier map + probe tasks and ``training.json`` under ``out``; the record's
    command repeats ``--epochs`` when the run overrode its size's epoch count. ``extra`` is copied, never changed."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result.model.save_pretrained(str(out), safe_serialization=True)
    wtok.save(result.tokenizer, out)
    wworld.write_tasks(result.world, out)
    embed = result.model.get_input_embeddings().weight.numel()  # tied: the head shares it
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in extra.items() if k in ("batch_size", "threads"))
    if epochs_override is not None:
        flags += f" --epochs {epochs_override}"
    record = {
        "size": size,
        "architecture": asdict(SIZES[size]) if size in SIZES else None,
        "params": result.params,
        "params_nonembed": result.params - embed,
        "seed": seed,
        "world": asdict(result.world.spec),
        "train_tokens": result.tokens,
        "seconds": round(result.seconds, 1),
        "tokens_per_s": round(result.tokens / result.seconds) if result.seconds else None,
        "device": device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "final_loss": round(result.losses[-1], 4),
        "losses": [round(v, 4) for v in result.losses],
        "command": f"python -m calibrate.train --size {size} --seed {seed} --out {out} {flags}".strip(),
        **extra,
    }
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / CHECKPOINT).unlink(missing_ok=True)  # the finished model replaces the training state
    return out


ZOO_PREFIX = "strata-zoo-"


def run_one(size: str, out: Path, seed: int, device: str, threads: int, batch_size: int | None = None,
            steps: int | None = None, lr: float | None = None, world: wworld.WorldSpec | None = None,
            stop_after: int | None = None, epochs: int | None = None) -> TrainResult | None:  # fmt: skip
    """Train (or resume) one model into ``out``; None when ``out`` already holds the finished model. ``epochs``
    overrides a zoo size's epoch count (the data budget: every popularity level seen that many times more)."""
    if (out / "training.json").is_file() and not (out / CHECKPOINT).is_file():
        return None
    spec = SIZES[size]
    if epochs is not None:
        if spec.epochs is None or epochs < 1:
            raise ValueError(f"--epochs needs a zoo size and a positive count (size {size}, epochs {epochs})")
        spec = replace(spec, epochs=epochs)
    batch = batch_size or (256 if spec.epochs is not None else 128)
    result = train(spec, seed, steps, batch, lr, device, world_spec=world, threads=threads, progress=True,
                   checkpoint_dir=out, checkpoint_every=100 if spec.epochs is not None else 0,
                   stop_after=stop_after)  # fmt: skip
    if not result.finished:
        print(f"{size}: stopped after {stop_after} steps; run again to resume from {out / CHECKPOINT}")
        return result
    extra = {"steps": steps or (None if spec.epochs else spec.steps), "epochs": spec.epochs, "batch_size": batch,
             "threads": threads}  # fmt: skip
    save(result, out, size, seed, device, extra, epochs_override=epochs)
    print(
        f"{size}: {result.params} params, {result.tokens} tokens, {result.seconds:.1f} s on {device} "
        f"({result.tokens / result.seconds:.0f} tokens/s), final loss {result.losses[-1]:.4f} -> {out}"
    )
    return result


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m calibrate.train", description=__doc__.splitlines()[0])
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--size", choices=sorted(SIZES))
    what.add_argument("--zoo", metavar="DIR", help=f"train every zoo size into DIR/{ZOO_PREFIX}<size>, smallest "
                      "first; finished models are kept, an interrupted one resumes from its checkpoint")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="output folder (with --size)")
    ap.add_argument("--steps", type=int, default=None, help="default: the size's own step count (or epochs)")
    ap.add_argument("--batch-size", type=int, default=None, help="lines per step (default 256 for zoo sizes, else 128)")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--epochs", type=int, default=None, help="zoo sizes: epochs of the world (default "
                    f"{ZOO_EPOCHS}); more epochs see every popularity level more often")  # fmt: skip
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (1: robust on a shared machine)")
    ap.add_argument("--calib-out", metavar="FILE", help="with --zoo: also write 2,000 lines of the zoo world's corpus "
                    "to FILE, one per line (the sweep's calibration source)")  # fmt: skip
    ap.add_argument("--stop-after", type=int, default=None, help="end this sitting after N steps (resumable)")
    ap.add_argument(
        "--people", type=int, default=None, help="people in the world (default 160); more facts per parameter make "
        "a model closer to its capacity, and quantization hurts it sooner"
    )  # fmt: skip
    args = ap.parse_args(argv)
    if args.size and not args.out:
        ap.error("--size needs --out")
    world = None
    if args.people:
        base = wworld.WorldSpec()
        scale = args.people / base.people  # organisations and cities grow with the people, countries stay few
        world = wworld.WorldSpec(
            seed=args.seed,
            people=args.people,
            orgs=max(base.orgs, round(base.orgs * scale)),
            cities=max(base.cities, round(base.cities * scale)),
            countries=base.countries,
        )
    if args.size:
        jobs = [(args.size, Path(args.out))]
    else:
        jobs = [(z, Path(args.zoo) / f"{ZOO_PREFIX}{z.removeprefix('zoo-')}") for z in ZOO_SIZES]
    try:
        for _, out in jobs:  # before any training: a folder that cannot be written fails now, not at the save
            out.mkdir(parents=True, exist_ok=True)
            probe = out / ".write-test"
            probe.write_text("")
            probe.unlink()
        if args.zoo and args.calib_out:
            text = wworld.calibration_text(wworld.generate(replace(wworld.ZOO, seed=args.seed)), 2000)
            Path(args.calib_out).write_text("\n".join(text) + "\n")
        for size, out in jobs:
            if run_one(size, out, args.seed, args.device, args.threads, args.batch_size, args.steps, args.lr, world,
                       args.stop_after, args.epochs) is None:  # fmt: skip
                print(f"{size}: {out} already holds the finished model (training.json); kept")
    except (ValueError, OSError) as exc:  # a stale checkpoint, an impossible world, an unwritable folder
        print(f"python -m calibrate.train: {first_line(exc)}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
