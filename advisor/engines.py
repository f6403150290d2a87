"""Serving engines: which GPTQ configurations each runs fast, slowly or not at all, and its KV-cache dtypes.

The facts live in ``advisor/data/engines.json`` (every rule names the engine code or docs it was read from and the
version checked); this module reads it once, on first use, and validates it with pydantic.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from advisor.schema import ANY_ENGINE
from strata.errors import UserError, field_error

Support = Literal["fast", "slow", "unsupported"]
ANY = ANY_ENGINE
_FILE = Path(__file__).with_name("data") / "engines.json"


class EngineError(UserError):
    """Unknown engine or a KV dtype the engine does not offer; one line naming the flag and the fix."""


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bits: list[int] | Literal["any"]
    group_size: list[int] | Literal["any"]
    sym: list[bool] | Literal["any"]
    act_order: list[bool] | Literal["any"]
    support: Literal["fast", "slow"]
    kernel: str = Field(min_length=1)
    source: str = Field(min_length=1)

    def matches(self, bits: int, group_size: int, sym: bool, act_order: bool) -> bool:
        pairs = ((self.bits, bits), (self.group_size, group_size), (self.sym, sym), (self.act_order, act_order))
        return all(allowed == ANY or value in allowed for allowed, value in pairs)


class Engine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version_checked: str = Field(min_length=1)
    kv_dtypes: list[Literal["bf16", "fp8"]] = Field(min_length=1)
    kv_source: str = Field(min_length=1)
    rules: list[Rule] = Field(min_length=1)


class _File(BaseModel):
    schema_version: Literal[1]
    about: str
    engines: dict[str, Engine]


@lru_cache(maxsize=4)
def load_engines(path: str | Path = _FILE) -> dict[str, Engine]:
    """The engines file, validated (EngineError with one line on a bad entry)."""
    try:
        return _File.model_validate(json.loads(Path(path).read_text())).engines
    except ValidationError as exc:
        where, msg = field_error(exc)
        raise EngineError(f"{Path(path).name}: {where}: {msg}") from None


def engine_names() -> list[str]:
    return [*load_engines(), ANY]


def engine(name: str) -> Engine:
    """One engine's record, or EngineError naming the choices."""
    engines = load_engines()
    if name not in engines:
        raise EngineError(f"unknown --engine {name!r}; use one of {', '.join(engine_names())}")
    return engines[name]


def _int_bits(bits: float) -> int | None:
    return int(bits) if float(bits).is_integer() else None


def kernel_rule(name: str, bits: float, group_size: int, sym: bool, act_order: bool) -> Rule | None:
    """The first rule of engine ``name`` that covers the configuration (None: the engine cannot run it)."""
    b = _int_bits(bits)
    if b is None:
        return None
    return next((r for r in engine(name).rules if r.matches(b, group_size, sym, act_order)), None)


def kernel_support(name: str, bits: float, group_size: int, sym: bool = True, act_order: bool = False) -> Support:
    """ "fast" (an optimized kernel), "slow" (a fallback path) or "unsupported" for a GPTQ checkpoint on ``name``;
    ``name="any"`` restricts nothing (always "fast")."""
    if name == ANY:
        return "fast"
    rule = kernel_rule(name, bits, group_size, sym, act_order)
    return rule.support if rule else "unsupported"


def kv_dtypes(name: str) -> tuple[str, ...]:
    """KV-cache dtypes the engine offers (bf16 = the model dtype, fp8 = 1 byte)."""
    if name == ANY:
        return ("bf16", "fp8")
    return tuple(engine(name).kv_dtypes)


def check_kv_dtype(name: str, kv_dtype: str) -> None:
    """EngineError unless ``name`` offers ``kv_dtype``."""
    offered = kv_dtypes(name)
    if kv_dtype not in offered:
        raise EngineError(f"--kv-dtype {kv_dtype} is not offered by {name}; use --kv-dtype {' or '.join(offered)}")
