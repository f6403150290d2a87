"""Whole-model GPTQ (or RTN) for many configurations at once, layer by layer, as GPTQModel does by default.

A decoder-only Hugging Face model is a stack of identical blocks (``model.model.layers`` for Llama, Qwen, Mistral).
GPTQ quantizes them in order, each from the inputs it will really see: the calibration batch is run up to the
first block once (a forward pre-hook catches block 0's hidden states and keyword arguments — attention mask,
position embeddings, position ids — and stops the pass: the "Catcher" pattern), then every block is handled alone
with those arguments, and its outputs become the next block's inputs.

Within a block, *true-sequential* order (GPTQModel's default): the block's linear layers are grouped by the input
tensor they read, in execution order — [q, k, v] (the normed hidden states), o, [gate, up], down for a Llama/Qwen
block — and each group's Hessians are taken from a forward pass through the groups already quantized, so o_proj
sees the output of the quantized q/k/v. The groups are found generically by one hooked forward pass; with
``true_sequential=False`` all linears of a block are quantized from one pass (llm-compressor's default).

``propagate="quantized"`` (the default) feeds each block the outputs of the blocks below *as quantized*;
``propagate="original"`` feeds every block full-precision activations (every configuration then sees the same
inputs, one pass per block serves all groups).

Many configurations for one calibration set at once: inputs are kept once per *stream* of hidden states — one
stream at the start, one per configuration as soon as their quantized blocks differ — and a Hessian is computed
once per distinct input (at the first group of the first block every configuration sees the same input: one
Hessian for all). Each linear is then solved for all configurations in one batched ``gptq()`` call, with a shared
Hessian where there is one and a stack of per-configuration Hessians otherwise, so the column loop runs once.
Forward passes run ``batch_size`` sequences at a time, under ``torch.func.functional_call`` with the quantized
weights of each configuration, so the model's own weights are never written. Hessians accumulate in float32.

Linear layers outside the blocks (the output head, tied to the embedding in the shipped models) are left as they
are. Limits: hidden states of every stream stay on the model's device (C × Cb × seqlen × hidden); blocks must all
take the same attention mask (models mixing sliding-window and full-attention blocks are refused).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from calibrate import gptq as _gptq
from calibrate.gptq import QuantConfig

METHODS = ("gptq", "rtn")
PROPAGATE = ("quantized", "original")
TIMINGS = ("capture", "hessian", "solve", "propagate", "total")


@dataclass
class QuantizedModel:
    config: QuantConfig
    weights: dict[str, torch.Tensor]  # linear module name -> dequantized weight, on `offload`, model dtype


class _Stop(Exception):
    """Raised by a hook to end a forward pass: nothing after that point is needed."""


def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The name and ``nn.ModuleList`` of the model's blocks: the outermost list of same-class modules with linears."""
    # named_modules() walks parents first, so the first match is the outermost list (the blocks, not MoE experts).
    for name, mod in model.named_modules():
        if (
            isinstance(mod, nn.ModuleList)
            and len(mod) > 0
            and len({type(m) for m in mod}) == 1
            and any(isinstance(m, nn.Linear) for m in mod[0].modules())
        ):
            return name, mod
    raise ValueError(
        f"{type(model).__name__} has no decoder layers: expected an nn.ModuleList of blocks with nn.Linear "
        "layers (as model.model.layers in Llama, Qwen, Mistral)"
    )


@torch.no_grad()
def swap_in(model: nn.Module, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copy dequantized weights into the model in place; return the originals for ``calibrate.rtn.restore``."""
    modules = dict(model.named_modules())
    originals: dict[str, torch.Tensor] = {}
    for name, w in weights.items():
        layer = modules[name]
        if not isinstance(layer, nn.Linear):
            raise ValueError(f"{name} is not an nn.Linear")
        originals[name] = layer.weight.detach().clone()
        layer.weight.copy_(w)  # in place: anything holding the model (an lm-eval HFLM) sees the new weights
    return originals


def _sync(device: torch.device) -> float:
    """A clock reading after the device's queued work is done, so stage timings are real on a GPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _call(layer: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, ctx: tuple) -> torch.Tensor:
    """One block forward with ``params`` standing in for its weights (the module itself is not written)."""
    args, kwargs = ctx
    out = functional_call(layer, params, (x, *args), kwargs)
    return out[0] if isinstance(out, tuple) else out  # transformers < 5 returns (hidden_states, ...)


def _capture(
    model: nn.Module, first: nn.Module, calib_ids: torch.Tensor, batch_size: int, device: torch.device
) -> tuple[list[torch.Tensor], list[tuple]]:
    """Block 0's hidden states and (positional rest, keyword) arguments, one entry per calibration batch."""
    xs: list[torch.Tensor] = []
    ctxs: list[tuple] = []

    def catch(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        kwargs = dict(kwargs)
        x = args[0] if args else kwargs.pop("hidden_states")
        xs.append(x.detach())
        ctxs.append((args[1:], kwargs))
        raise _Stop

    handle = first.register_forward_pre_hook(catch, with_kwargs=True)
    try:
        for batch in calib_ids.split(batch_size):
            with contextlib.suppress(_Stop):
                model(batch.to(device), use_cache=False)
    finally:
        handle.remove()
    return xs, ctxs


def _groups(
    layer: nn.Module, linears: dict[str, nn.Linear], x: torch.Tensor, ctx: tuple, true_sequential: bool
) -> list[list[str]]:
    """The block's linears grouped by the input tensor they read, in execution order (one group if not sequential)."""
    if not true_sequential:
        return [list(linears)]
    seen: list[tuple[str, torch.Tensor]] = []  # holding the tensors keeps their identities unique
    hooks = [m.register_forward_pre_hook(lambda _, a, n=n: seen.append((n, a[0]))) for n, m in linears.items()]
    try:
        _call(layer, {}, x[:1], ctx)  # one sequence is enough to see the order
    finally:
        for h in hooks:
            h.remove()
    groups: list[tuple[torch.Tensor, list[str]]] = []
    done: set[str] = set()
    for name, t in seen:
        if name in done:
            continue
        done.add(name)
        match = next((g for g in groups if g[0] is t), None)
        if match is None:
            groups.append((t, [name]))
        else:
            match[1].append(name)
    never = [n for n in linears if n not in done]  # not run on this input (e.g. unrouted experts): last, alone
    return [g[1] for g in groups] + ([never] if never else [])


def _hessians(
    layer: nn.Module,
    linears: dict[str, nn.Linear],
    names: list[str],
    params: dict[str, torch.Tensor],
    xs: list[torch.Tensor],
    ctxs: list[tuple],
) -> dict[str, torch.Tensor]:
    """H = 2 XᵀX / n (float32) of each named linear's inputs over all batches; each pass stops after the last one."""
    cols = {n: linears[n].in_features for n in names}
    dev = next(iter(linears.values())).weight.device
    sums = {n: torch.zeros(cols[n], cols[n], device=dev) for n in names}
    count = dict.fromkeys(names, 0)
    pending: set[str] = set()

    def take(name: str, inp: tuple) -> None:
        x = inp[0].reshape(-1, cols[name]).float()
        sums[name] += x.T @ x
        count[name] += x.shape[0]
        pending.discard(name)
        if not pending:
            raise _Stop

    hooks = [linears[n].register_forward_pre_hook(lambda _, a, n=n: take(n, a)) for n in names]
    try:
        for x, ctx in zip(xs, ctxs, strict=True):
            pending.update(names)
            with contextlib.suppress(_Stop):
                _call(layer, params, x, ctx)
    finally:
        for h in hooks:
            h.remove()
    # Same expression as calibrate.gptq.hessian, so a single batch gives bit-identical Hessians.
    return {n: 2.0 * sums[n] / max(count[n], 1) for n in names}


def _check(
    model: nn.Module,
    calib_ids: torch.Tensor | None,
    configs: list[QuantConfig],
    method: str,
    propagate: str,
    batch_size: int,
) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if propagate not in PROPAGATE:
        raise ValueError(f"propagate must be one of {PROPAGATE}, got {propagate!r}")
    if not configs:
        raise ValueError("no configurations to quantize")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for cfg in configs:
        if not 1 <= cfg.bits <= 16:
            raise ValueError(f"bits must be in [1, 16], got {cfg.bits}")
    if method == "gptq" and (calib_ids is None or calib_ids.numel() == 0):
        raise ValueError("GPTQ needs calibration token ids (Cb, seqlen); got none")
    if calib_ids is not None and calib_ids.numel() and calib_ids.dim() != 2:
        raise ValueError(f"calibration ids must be (Cb, seqlen), got shape {tuple(calib_ids.shape)}")
    types = set(getattr(getattr(model, "config", None), "layer_types", None) or ())
    if len(types) > 1:
        raise ValueError(f"blocks of several attention types {sorted(types)} need their own masks: not supported")


@torch.no_grad()
def quantize_model(
    model: nn.Module,
    calib_ids: torch.Tensor | None,
    configs: list[QuantConfig],
    *,
    method: str = "gptq",
    damp: float = 0.01,
    block_size: int = 128,
    act_order: bool = False,
    static_groups: bool = False,
    true_sequential: bool = True,
    propagate: str = "quantized",
    batch_size: int = 8,
    offload: str | torch.device = "cpu",
    progress: Callable[[str], None] | None = None,
) -> tuple[list[QuantizedModel], dict[str, float]]:
    """Quantize the model's block linears under every config; the model's own weights are left unchanged.

    Returns one ``QuantizedModel`` per config (same order) and the seconds spent per stage (capture, hessian,
    solve, propagate, total). ``calib_ids`` is an unpadded batch of token ids (Cb, seqlen); RTN needs none.
    ``damp``, ``block_size``, ``act_order`` and ``static_groups`` are ``calibrate.gptq.gptq``'s.
    """
    _check(model, calib_ids, configs, method, propagate, batch_size)
    say = progress or (lambda _: None)
    prefix, layers = decoder_layers(model)
    device = next(model.parameters()).device
    C = len(configs)
    results = [QuantizedModel(cfg, {}) for cfg in configs]
    t = dict.fromkeys(TIMINGS, 0.0)
    start = _sync(device)

    def linears_of(layer: nn.Module) -> dict[str, nn.Linear]:
        found = {n: m for n, m in layer.named_modules() if isinstance(m, nn.Linear)}
        for n, m in found.items():
            for cfg in configs:
                if cfg.group_size > 0 and m.in_features % cfg.group_size:
                    raise ValueError(f"group size {cfg.group_size} does not divide {n}'s input width {m.in_features}")
        return found

    if method == "rtn":
        for i, layer in enumerate(layers):
            for n, m in linears_of(layer).items():
                Q = _gptq.rtn(m.weight.detach(), configs)
                for c in range(C):
                    results[c].weights[f"{prefix}.{i}.{n}"] = Q[c].to(offload)
        t["solve"] = t["total"] = _sync(device) - start
        return results, t

    assert calib_ids is not None
    was_training = model.training
    model.eval()
    try:
        xs, ctxs = _capture(model, layers[0], calib_ids, batch_size, device)
        streams: list[list[torch.Tensor]] = [xs]  # hidden states, one list of batches per distinct input
        stream_of = [0] * C  # which stream each config reads
        t["capture"] = _sync(device) - start
        for i, layer in enumerate(layers):
            linears = linears_of(layer)
            clock = _sync(device)
            sequential = true_sequential and propagate == "quantized"  # full precision inputs: one pass serves all
            groups = _groups(layer, linears, xs[0], ctxs[0], sequential)
            t["hessian"] += _sync(device) - clock
            qparams: list[dict[str, torch.Tensor]] = [{} for _ in range(C)]  # this block's quantized weights
            for g, names in enumerate(groups):
                clock = _sync(device)
                # Configs read the same input while they share a stream and nothing of this block is quantized yet.
                key = [(stream_of[c], c if g > 0 else -1) for c in range(C)]
                hs = {
                    k: _hessians(layer, linears, names, qparams[k[1]] if k[1] >= 0 else {}, streams[k[0]], ctxs)
                    for k in dict.fromkeys(key)
                }
                say(f"layer {i + 1}/{len(layers)}: {', '.join(names)} ({len(hs)} Hessian pass(es))")
                clock2 = _sync(device)
                t["hessian"] += clock2 - clock
                for n in names:
                    H = hs[key[0]][n] if len(hs) == 1 else torch.stack([hs[k][n] for k in key])
                    Q = _gptq.gptq(
                        linears[n].weight.detach(),
                        H,
                        configs,
                        damp=damp,
                        block_size=block_size,
                        act_order=act_order,
                        static_groups=static_groups,
                    )
                    for c in range(C):
                        qparams[c][f"{n}.weight"] = Q[c]
                        results[c].weights[f"{prefix}.{i}.{n}"] = Q[c].to(offload)
                t["solve"] += _sync(device) - clock2
            clock = _sync(device)
            if propagate == "original":
                streams = [[_call(layer, {}, x, ctx) for x, ctx in zip(streams[0], ctxs, strict=True)]]
            else:  # each config continues from its own quantized block
                streams = [
                    [_call(layer, qparams[c], x, ctx) for x, ctx in zip(streams[stream_of[c]], ctxs, strict=True)]
                    for c in range(C)
                ]
                stream_of = list(range(C))
            xs = streams[0]
            t["propagate"] += _sync(device) - clock
    finally:
        model.train(was_training)
    t["total"] = _sync(device) - start
    return results, t
