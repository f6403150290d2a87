"""A model's training stage as rows and model ids name it, in two classes: base (pretrained only) and post-trained
(instruct, chat, RLHF, ...). Post-training moves a model's benchmark accuracy by more than the spread between models
of one stage, so a profile fitted on one class is another protocol for a model of the other (``fit.stage_shift``
measures by how much; the advisor widens by it)."""

from __future__ import annotations

import re

BASE = "base"
POST_TRAINED = "post-trained"
_POST = {"post-trained", "instruct", "chat", "it", "sft", "rlhf", "dpo"}
# the suffixes model makers give their checkpoints: Qwen3-8B-Base, Llama-3.1-8B-Instruct, Qwen-7B-Chat, gemma-2-9b-it
_SUFFIX = re.compile(r"(?:^|[-_.])(base|instruct|chat|it)(?=$|[-_.])", re.IGNORECASE)


def stage_class(stage: str | None) -> str | None:
    """``base`` or ``post-trained`` for a row's stage; None where it is not one of the known names."""
    s = (stage or "").strip().lower()
    return BASE if s == BASE else (POST_TRAINED if s in _POST else None)


def stage_of_name(name: str | None) -> str | None:
    """The stage class a model id names by its suffix (the last one wins: ``...-Base-Instruct`` is post-trained),
    or None where the id does not say (plain ``Qwen3-8B`` is post-trained, plain ``Llama-2-7b`` is base: the maker's
    convention, not the name's)."""
    found = _SUFFIX.findall((name or "").split("/")[-1])
    return None if not found else stage_class(found[-1].lower())
