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
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from calibrate import tokenizer as wtok
from calibrate import world as wworld


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


SIZES: dict[str, Size] = {
    "xs": Size(hidden=64, layers=2, intermediate=192, heads=4, kv_heads=2, head_dim=16, steps=2000, lr=3e-3),
    "s": Size(hidden=96, layers=3, intermediate=288, heads=4, kv_heads=2, head_dim=24, steps=2000, lr=2e-3),
    "m": Size(hidden=128, layers=4, intermediate=384, heads=4, kv_heads=2, head_dim=32, steps=3000, lr=1.5e-3),
    "l": Size(hidden=192, layers=6, intermediate=576, heads=6, kv_heads=2, head_dim=32, steps=4000, lr=1e-3),
    "xl": Size(hidden=256, layers=8, intermediate=768, heads=8, kv_heads=4, head_dim=32, steps=4000, lr=8e-4),
}


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
    seconds: float


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
) -> TrainResult:
    """Train one zoo model from scratch; deterministic given the arguments."""
    from transformers import Qwen3ForCausalLM

    spec = SIZES[size] if isinstance(size, str) else size
    steps = spec.steps if steps is None else steps
    lr = spec.lr if lr is None else lr
    if threads is not None:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)

    world = wworld.generate(world_spec or wworld.WorldSpec(seed=seed))
    tok = wtok.build(wworld.vocabulary(world))
    seqs = _encode(tok, wworld.corpus(world))
    pad = tok.token_to_id(wtok.PAD)
    assert pad is not None

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
    order = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    window: list[float] = []
    tokens = 0
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(len(seqs), (batch_size,), generator=order).tolist()
        ids, labels = _batch(seqs, idx, pad)
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
            if progress:
                print(f"step {step + 1}/{steps} loss {losses[-1]:.4f} {time.perf_counter() - start:.0f}s", flush=True)
    seconds = time.perf_counter() - start
    model.eval()
    return TrainResult(model.cpu(), tok, world, losses, params, tokens, seconds)


def save(result: TrainResult, out: str | Path, size: str, seed: int, device: str, extra: dict[str, Any]) -> Path:
    """Write the checkpoint, tokenizer, tier map + probe tasks and ``training.json`` under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result.model.save_pretrained(str(out), safe_serialization=True)
    wtok.save(result.tokenizer, out)
    wworld.write_tasks(result.world, out)
    record = {
        "size": size,
        "architecture": asdict(SIZES[size]) if size in SIZES else None,
        "params": result.params,
        "seed": seed,
        "world": asdict(result.world.spec),
        "train_tokens": result.tokens,
        "seconds": round(result.seconds, 1),
        "device": device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "final_loss": round(result.losses[-1], 4),
        "losses": [round(v, 4) for v in result.losses],
        "command": f"python -m calibrate.train --size {size} --seed {seed} --out {out}",
        **extra,
    }
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m calibrate.train", description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=None, help="default: the size's own step count")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (1: robust on a shared machine)")
    ap.add_argument(
        "--people", type=int, default=None, help="people in the world (default 160); more facts per parameter make "
        "a model closer to its capacity, and quantization hurts it sooner"
    )  # fmt: skip
    args = ap.parse_args(argv)
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
    result = train(
        args.size,
        args.seed,
        args.steps,
        args.batch_size,
        args.lr,
        args.device,
        world_spec=world,
        threads=args.threads,
        progress=True,
    )
    extra = {"steps": args.steps or SIZES[args.size].steps, "batch_size": args.batch_size}
    out = save(result, args.out, args.size, args.seed, args.device, extra)
    print(
        f"{args.size}: {result.params} params, {result.tokens} tokens, {result.seconds:.1f} s on {args.device}, "
        f"final loss {result.losses[-1]:.4f} -> {out}"
    )


if __name__ == "__main__":
    main()
