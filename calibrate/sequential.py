"""Whole-model GPTQ (or RTN) for many configurations at once, layer by layer, as GPTQModel does by default.

A decoder-only Hugging Face model is a stack of identical blocks (``model.model.layers`` for Llama, Qwen, Mistral,
Gemma, ``model.decoder.layers`` for OPT, ``transformer.h`` for GPT-2): found by one rule, the outermost
``nn.ModuleList`` of same-class modules holding quantizable weights. GPTQ quantizes them in order, each from the
inputs it will really see: the calibration batch is run through the model once, with a forward pre-hook on every
block catching its keyword arguments — attention mask, position embeddings, position ids, as the model computes
them *for that block* (Gemma-2/3 mix sliding-window and full-attention blocks, each with its own mask and, in
Gemma-3, its own rotary embedding) — and block 0's hidden states; the pass stops at the last block (the "Catcher"
pattern). Then every block is handled alone with its own arguments, and its outputs become the next block's inputs.

What is quantized in a block, by rule (``weights``): every ``nn.Linear``; every transformers ``Conv1D`` (GPT-2,
weight stored (in, out): it is quantized as the (out, in) matrix it is, groups along the input dimension, and
stored back transposed); every 3-D parameter of a module — transformers' fused MoE experts (``gate_up_proj``,
``down_proj``: (experts, out, in), or (experts, in, out) where the module says ``is_transposed``, as gpt-oss),
each expert's matrix quantized as a linear layer of its own. Fused projections (Phi-3's ``qkv_proj`` and
``gate_up_proj``) are ordinary linears. Routers (not linears in transformers 5) and the output head are left as
they are. An expert's inputs are caught by a ``TorchFunctionMode`` that sees the experts module index its 3-D
parameter (``W[e]``) and multiply by the slice (``F.linear(x, W[e])`` or ``x @ W[e]``), with transformers'
``eager`` experts implementation forced while quantizing (the grouped-matmul kernels hide the per-expert
products).

MoE experts no calibration token reaches: they fall back to RTN (same grid, no error feedback), counted per
configuration (``QuantizedModel.experts_rtn_fallback``, stored in sweep rows). An empty Hessian would make GPTQ
zero the expert (every column is "dead"), deleting it for every token routed to it later. The alternative —
routing every calibration token through every expert, as llm-compressor can — calibrates an expert on tokens the
router never sends it (a distribution it does not serve) and needs a per-family forward; the fallback needs neither,
leaves the routed experts' statistics exactly as the model's routing makes them, and the stored count tells how
much of a model was calibrated. A dense linear that no token reaches falls back the same way (counted in
``rtn_fallback``).

Within a block, *true-sequential* order (GPTQModel's default): the block's weights are grouped by the input
tensor they read, in execution order — [q, k, v] (the normed hidden states), o, [gate, up], down for a Llama/Qwen
block, each experts parameter a group of its own — and each group's Hessians are taken from a forward pass through
the groups already quantized, so o_proj sees the output of the quantized q/k/v. The groups are found generically by
one hooked forward pass; with ``true_sequential=False`` all weights of a block are quantized from one pass
(llm-compressor's default).

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

Limits: hidden states of every stream stay on the model's device (C × Cb × seqlen × hidden); a model without such
a block list, or whose blocks hold nothing quantizable, is refused with one line naming its architecture.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.overrides import TorchFunctionMode

from calibrate import gptq as _gptq
from calibrate.gptq import QuantConfig
from strata.errors import UserError

METHODS = ("gptq", "rtn")
PROPAGATE = ("quantized", "original")
TIMINGS = ("capture", "hessian", "solve", "propagate", "total")
# Families with a test of their own (tests/test_architectures.py); others are found by the same rules.
TESTED = (
    "Llama", "Mistral", "Qwen2", "Qwen3", "Qwen3-MoE", "Mixtral", "Phi-3", "Gemma-2", "Gemma-3", "OPT", "GPT-2",
    "gpt-oss",
)  # fmt: skip
RULE = (
    "a decoder-only model whose blocks are one nn.ModuleList of same-class modules holding nn.Linear, Conv1D or "
    "fused-expert (3-D) weights"
)


class ArchitectureError(UserError):
    """A model whose blocks the quantizer cannot find or handle: one line naming its architecture."""


@dataclass
class QuantizedModel:
    config: QuantConfig
    # weight name (a linear's module name, or ``module.param`` of a 3-D experts parameter; see ``weights``) ->
    # dequantized weight in the parameter's own layout, on ``offload``, model dtype
    weights: dict[str, torch.Tensor]
    rtn_fallback: list[str] = field(default_factory=list)  # weights (``name[expert]``) no calibration token reached
    experts_rtn_fallback: int = 0  # distinct (layer, expert) among them


@dataclass(frozen=True)
class Weight:
    """One quantizable weight: a linear layer's (2-D) or a fused-experts parameter (3-D, one matrix per expert)."""

    tensor: torch.Tensor  # the parameter itself
    module: str  # the owning module's name
    param: str  # the parameter's name in it: "weight", "gate_up_proj", ...
    transposed: bool  # stored (in, out): Conv1D, experts with ``is_transposed``

    @property
    def experts(self) -> int | None:
        return self.tensor.shape[0] if self.tensor.dim() == 3 else None

    @property
    def in_features(self) -> int:
        return self.tensor.shape[-2] if self.transposed else self.tensor.shape[-1]

    @property
    def path(self) -> str:
        """The parameter's name relative to the module ``weights`` was called on (``functional_call``'s key)."""
        return f"{self.module}.{self.param}" if self.module else self.param

    def rows(self, t: torch.Tensor | None = None) -> torch.Tensor:
        """``t`` (default: the weight) as (experts, out, in) matrices; a 2-D weight is one expert."""
        t = self.tensor if t is None else t
        t = t if t.dim() == 3 else t.unsqueeze(0)
        return t.transpose(-1, -2) if self.transposed else t

    def stored(self, q: torch.Tensor) -> torch.Tensor:
        """(experts, out, in) matrices back in the parameter's own layout and shape."""
        q = q.transpose(-1, -2) if self.transposed else q
        return q.reshape(self.tensor.shape).contiguous()


def is_conv1d(module: nn.Module) -> bool:
    """transformers' ``Conv1D`` (GPT-2): a linear layer whose weight is stored (in, out)."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and isinstance(module.weight, torch.Tensor)


def weights(model: nn.Module, skip: Iterable[str] = ("lm_head",)) -> dict[str, Weight]:
    """Every quantizable weight of ``model`` by name — a linear's (or Conv1D's) module name, or ``module.param`` for
    a 3-D experts parameter — leaving out names ending in one of ``skip``."""
    skip = tuple(skip)
    out: dict[str, Weight] = {}
    for name, m in model.named_modules():
        if skip and name.endswith(skip):
            continue
        if isinstance(m, nn.Linear) or is_conv1d(m):
            out[name] = Weight(m.weight, name, "weight", is_conv1d(m))
            continue
        for pname, p in m.named_parameters(recurse=False):
            if p.dim() == 3:
                w = Weight(p, name, pname, bool(getattr(m, "is_transposed", False)))
                out[w.path] = w
    return out


def param_of(model: nn.Module, name: str) -> torch.Tensor:
    """The tensor a ``weights`` name stands for: a linear's (or Conv1D's) ``.weight``, or the named 3-D parameter."""
    layer = dict(model.named_modules()).get(name)
    if layer is not None:
        if not (isinstance(layer, nn.Linear) or is_conv1d(layer)):
            raise ValueError(f"{name} is not an nn.Linear or a Conv1D")
        return layer.weight
    return model.get_parameter(name)


class _Stop(Exception):
    """Raised by a hook to end a forward pass: nothing after that point is needed."""


def _arch(model: nn.Module) -> str:
    cfg = getattr(model, "config", None)
    archs = getattr(cfg, "architectures", None) or [type(model).__name__]
    return f"{archs[0]} (model_type {getattr(cfg, 'model_type', '?')})"


def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The name and ``nn.ModuleList`` of the model's blocks: the outermost list of same-class modules with
    quantizable weights."""
    # named_modules() walks parents first, so the first match is the outermost list (the blocks, not MoE experts).
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 0 and len({type(m) for m in mod}) == 1 and weights(mod[0]):
            return name, mod
    raise ArchitectureError(
        f"{_arch(model)} has no decoder layers the quantizer can find: it handles {RULE} (tested: {', '.join(TESTED)})"
    )


@torch.no_grad()
def swap_in(model: nn.Module, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copy dequantized weights into the model in place; return the originals for ``calibrate.rtn.restore``."""
    originals: dict[str, torch.Tensor] = {}
    for name, w in weights.items():
        target = param_of(model, name)
        if target.shape != w.shape:
            raise ValueError(f"{name}: weight of shape {tuple(w.shape)} for a parameter of {tuple(target.shape)}")
        originals[name] = target.detach().clone()
        target.copy_(w)  # in place: anything holding the model (an lm-eval HFLM) sees the new weights
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


@contextlib.contextmanager
def _eager_experts(model: nn.Module) -> Iterator[None]:
    """transformers' per-expert loop for fused experts while quantizing (its kernels hide each expert's product)."""
    configs = {id(c): c for m in model.modules() if (c := getattr(m, "config", None)) is not None}
    old = {k: c._experts_implementation for k, c in configs.items() if hasattr(c, "_experts_implementation")}
    try:
        for k in old:
            configs[k]._experts_implementation = "eager"
        yield
    finally:
        for k, v in old.items():
            configs[k]._experts_implementation = v


def _capture(
    model: nn.Module, layers: nn.ModuleList, calib_ids: torch.Tensor, batch_size: int, device: torch.device
) -> tuple[list[torch.Tensor], list[list[tuple]]]:
    """Block 0's hidden states per calibration batch, and every block's (positional rest, keyword) arguments per
    batch: blocks of different attention types get different masks and position embeddings."""
    xs: list[torch.Tensor] = []
    ctxs: list[list[tuple]] = [[] for _ in layers]

    def catch(i: int, args: tuple, kwargs: dict[str, Any]) -> None:
        kwargs = dict(kwargs)
        x = args[0] if args else kwargs.pop("hidden_states")
        if i == 0:
            xs.append(x.detach())
        ctxs[i].append((args[1:], kwargs))
        if i == len(layers) - 1:
            raise _Stop

    handles = [
        m.register_forward_pre_hook(lambda _, a, k, i=i: catch(i, a, k), with_kwargs=True) for i, m in enumerate(layers)
    ]
    try:
        for batch in calib_ids.split(batch_size):
            with contextlib.suppress(_Stop):
                model(batch.to(device), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return xs, ctxs


Unit = tuple[str, int | None]
# ``F.linear(x, W[e])`` or ``x @ W[e]`` (a TorchFunctionMode sees ``@`` as ``Tensor.matmul``)
_PRODUCTS = (
    torch.nn.functional.linear,
    torch.matmul,
    torch.Tensor.matmul,
    torch.Tensor.__matmul__,
)  # (weight name in the block, expert index or None)


class _Tap(TorchFunctionMode):
    """Sees the inputs of a block's weights during a forward: a pre-hook per linear, and for 3-D experts
    parameters the products with their slices (``W[e]``, then ``F.linear(x, W[e])`` or ``x @ W[e]``)."""

    def __init__(self, layer: nn.Module, ws: dict[str, Weight], names: list[str], on: Callable, done: Callable):
        super().__init__()
        self.on, self.done = on, done  # on(name, expert, x); done(name) when its module's forward ends
        self.tracked: dict[int, str] = {}  # id of the tensor now standing for a 3-D parameter -> its name
        self.slices: dict[int, tuple[str, int, torch.Tensor]] = {}
        self.hooks = []
        self.experts = False
        modules = dict(layer.named_modules())
        for n in names:
            w, mod = ws[n], modules[ws[n].module]
            if w.experts is None:
                self.hooks.append(mod.register_forward_pre_hook(lambda _, a, n=n: self.on(n, None, a[0])))
                continue
            self.experts = True

            def track(m: nn.Module, _a: tuple, n: str = n) -> None:
                self.tracked[id(getattr(m, ws[n].param))] = n

            self.hooks.append(mod.register_forward_pre_hook(track))
            self.hooks.append(mod.register_forward_hook(lambda *_, n=n: self.done(n)))

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is torch.Tensor.__getitem__ and id(args[0]) in self.tracked:
            idx = args[1]
            if isinstance(idx, int) or (
                isinstance(idx, torch.Tensor) and idx.numel() == 1 and not idx.is_floating_point()
            ):
                self.slices[id(out)] = (self.tracked[id(args[0])], int(idx), out)
        elif func in _PRODUCTS:
            w = args[1] if len(args) > 1 else kwargs.get("weight")
            hit = self.slices.get(id(w))
            if hit is not None and hit[2] is w:
                self.on(hit[0], hit[1], args[0])
        return out

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        try:
            if self.experts:
                with self:
                    yield
            else:
                yield
        finally:
            self.tracked.clear()
            self.slices.clear()

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()


def _groups(
    layer: nn.Module, ws: dict[str, Weight], x: torch.Tensor, ctx: tuple, true_sequential: bool
) -> list[list[str]]:
    """The block's weights grouped by the input tensor they read, in execution order (one group if not
    sequential); each experts parameter is a group of its own (its experts read different tokens)."""
    if not true_sequential:
        return [list(ws)]
    seen: list[tuple[str, object]] = []  # holding the tensors keeps their identities unique
    tokens = {n: object() for n in ws}
    tap = _Tap(layer, ws, list(ws), lambda n, e, t: seen.append((n, t if e is None else tokens[n])), lambda _: None)
    try:
        with tap.active():
            _call(layer, {}, x, ctx)  # one batch shows the order (its arguments may be sized for the batch)
    finally:
        tap.remove()
    groups: list[tuple[object, list[str]]] = []
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
    never = [n for n in ws if n not in done]  # not run on this input: last, alone
    return [g[1] for g in groups] + ([never] if never else [])


def _hessians(
    layer: nn.Module,
    ws: dict[str, Weight],
    names: list[str],
    params: dict[str, torch.Tensor],
    xs: list[torch.Tensor],
    ctxs: list[tuple],
) -> dict[Unit, tuple[torch.Tensor, int]]:
    """(H = 2 XᵀX / n in float32, n tokens) of each named weight's inputs over all batches, per expert for 3-D
    experts parameters (n = 0 and H = 0 for an expert no token reached); each pass stops after the last one."""
    dev = next(iter(ws.values())).tensor.device
    sums: dict[Unit, torch.Tensor] = {}
    count: dict[Unit, int] = {}
    pending: set[str] = set()

    def take(name: str, expert: int | None, inp: torch.Tensor) -> None:
        cols = ws[name].in_features
        x = inp.reshape(-1, cols).float()
        u = (name, expert)
        if u not in sums:
            sums[u] = torch.zeros(cols, cols, device=dev)
            count[u] = 0
        sums[u] += x.T @ x
        count[u] += x.shape[0]
        if expert is None:
            finish(name)

    def finish(name: str) -> None:
        pending.discard(name)
        if not pending:
            raise _Stop

    tap = _Tap(layer, ws, names, take, finish)
    try:
        for x, ctx in zip(xs, ctxs, strict=True):
            pending.update(names)
            with contextlib.suppress(_Stop), tap.active():
                _call(layer, params, x, ctx)
    finally:
        tap.remove()
    out: dict[Unit, tuple[torch.Tensor, int]] = {}
    for n in names:
        cols, E = ws[n].in_features, ws[n].experts
        for e in [None] if E is None else range(E):
            n_tok = count.get((n, e), 0)
            # Same expression as calibrate.gptq.hessian, so a single batch gives bit-identical Hessians.
            H = 2.0 * sums[(n, e)] / n_tok if n_tok else torch.zeros(cols, cols, device=dev)
            out[(n, e)] = (H, n_tok)
    return out


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
    """Quantize the model's block weights under every config; the model's own weights are left unchanged.

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

    def weights_of(layer: nn.Module) -> dict[str, Weight]:
        found = weights(layer, skip=())
        for n, w in found.items():
            for cfg in configs:
                if cfg.group_size > 0 and w.in_features % cfg.group_size:
                    raise ValueError(f"group size {cfg.group_size} does not divide {n}'s input width {w.in_features}")
        return found

    if method == "rtn":
        for i, layer in enumerate(layers):
            for n, w in weights_of(layer).items():
                Q = torch.stack([_gptq.rtn(m, configs) for m in w.rows().detach()], dim=1)  # (C, E, out, in)
                for c in range(C):
                    results[c].weights[f"{prefix}.{i}.{n}"] = w.stored(Q[c]).to(offload)
        t["solve"] = t["total"] = _sync(device) - start
        return results, t

    assert calib_ids is not None
    was_training = model.training
    model.eval()
    fallback: list[set[str]] = [set() for _ in range(C)]  # experts (``layer.module[e]``) that fell back to RTN
    try:
        with _eager_experts(model):
            xs, ctxs = _capture(model, layers, calib_ids, batch_size, device)
            streams: list[list[torch.Tensor]] = [xs]  # hidden states, one list of batches per distinct input
            stream_of = [0] * C  # which stream each config reads
            t["capture"] = _sync(device) - start
            for i, layer in enumerate(layers):
                ws = weights_of(layer)
                clock = _sync(device)
                sequential = true_sequential and propagate == "quantized"  # full precision inputs: one pass serves all
                groups = _groups(layer, ws, xs[0], ctxs[i][0], sequential)
                t["hessian"] += _sync(device) - clock
                qparams: list[dict[str, torch.Tensor]] = [{} for _ in range(C)]  # this block's quantized weights
                for g, names in enumerate(groups):
                    clock = _sync(device)
                    # Configs read the same input while they share a stream and nothing of this block is quantized.
                    key = [(stream_of[c], c if g > 0 else -1) for c in range(C)]
                    hs = {
                        k: _hessians(layer, ws, names, qparams[k[1]] if k[1] >= 0 else {}, streams[k[0]], ctxs[i])
                        for k in dict.fromkeys(key)
                    }
                    say(f"layer {i + 1}/{len(layers)}: {', '.join(names)} ({len(hs)} Hessian pass(es))")
                    clock2 = _sync(device)
                    t["hessian"] += clock2 - clock
                    for n in names:
                        w = ws[n]
                        mats = w.rows().detach()
                        Q = torch.empty((C, *mats.shape), dtype=mats.dtype, device=mats.device)
                        for e in range(mats.shape[0]):
                            u = (n, None if w.experts is None else e)
                            calibrated = [c for c in range(C) if hs[key[c]][u][1] > 0]
                            empty = [c for c in range(C) if c not in calibrated]
                            if calibrated:
                                ks = list(dict.fromkeys(key[c] for c in calibrated))
                                H = (
                                    hs[ks[0]][u][0]
                                    if len(ks) == 1
                                    else torch.stack([hs[key[c]][u][0] for c in calibrated])
                                )
                                Q[calibrated, e] = _gptq.gptq(
                                    mats[e],
                                    H,
                                    [configs[c] for c in calibrated],
                                    damp=damp,
                                    block_size=block_size,
                                    act_order=act_order,
                                    static_groups=static_groups,
                                )
                            if empty:  # no calibration token reached it: RTN, never an all-zero weight
                                Q[empty, e] = _gptq.rtn(mats[e], [configs[c] for c in empty])
                                for c in empty:
                                    where = f"{prefix}.{i}.{n}" + ("" if w.experts is None else f"[{e}]")
                                    results[c].rtn_fallback.append(where)
                                    if w.experts is not None:
                                        fallback[c].add(f"{prefix}.{i}.{w.module}[{e}]")
                        for c in range(C):
                            q = w.stored(Q[c])
                            qparams[c][w.path] = q
                            results[c].weights[f"{prefix}.{i}.{n}"] = q.to(offload)
                    t["solve"] += _sync(device) - clock2
                clock = _sync(device)
                if propagate == "original":
                    streams = [[_call(layer, {}, x, ctx) for x, ctx in zip(streams[0], ctxs[i], strict=True)]]
                else:  # each config continues from its own quantized block
                    streams = [
                        [
                            _call(layer, qparams[c], x, ctx)
                            for x, ctx in zip(streams[stream_of[c]], ctxs[i], strict=True)
                        ]
                        for c in range(C)
                    ]
                    stream_of = list(range(C))
                xs = streams[0]
                t["propagate"] += _sync(device) - clock
    finally:
        model.train(was_training)
    for c in range(C):
        results[c].experts_rtn_fallback = len(fallback[c])
    t["total"] = _sync(device) - start
    return results, t


@torch.no_grad()
def layer_hessians(
    model: nn.Module, calib_ids: torch.Tensor, batch_size: int = 8
) -> dict[tuple[str, int | None], tuple[torch.Tensor, int]]:
    """Each block weight's full-precision input Hessian and token count (per expert for experts parameters),
    keyed by (weight name as in ``QuantizedModel.weights``, expert or None): the objective GPTQ minimises under
    ``propagate="original"`` — tr(ΔW H ΔWᵀ) for a weight error ΔW (out, in)."""
    prefix, layers = decoder_layers(model)
    device = next(model.parameters()).device
    out: dict[tuple[str, int | None], tuple[torch.Tensor, int]] = {}
    was_training = model.training
    model.eval()
    try:
        with _eager_experts(model):
            xs, ctxs = _capture(model, layers, calib_ids, batch_size, device)
            for i, layer in enumerate(layers):
                ws = weights(layer, skip=())
                for (n, e), v in _hessians(layer, ws, list(ws), {}, xs, ctxs[i]).items():
                    out[(f"{prefix}.{i}.{n}", e)] = v
                xs = [_call(layer, {}, x, ctx) for x, ctx in zip(xs, ctxs[i], strict=True)]
    finally:
        model.train(was_training)
    return out
