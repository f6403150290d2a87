"""A word-level tokenizer for the synthetic world, built locally with ``tokenizers`` (nothing is downloaded).

One token per word keeps every entity name a single embedding row, which is what lets a ~100k-parameter model
store hundreds of facts. Words are split on whitespace and punctuation (the ``Whitespace`` pre-tokenizer), so
lm-eval's "context + ' ' + continuation" encodes to exactly the tokens the model was trained on. No special token
is added on encode: training lines and evaluation prompts both start at the first word.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SPECIALS = (PAD, EOS, UNK)


def build(words: list[str]) -> Tokenizer:
    """A tokenizer whose ids are: the special tokens, then ``words`` in the given order (deterministic)."""
    vocab = {tok: i for i, tok in enumerate([*SPECIALS, *dict.fromkeys(words)])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    return tok


# What tokenizer_config.json says beside the class: transformers 5 replaces a declared ``tokenizer_class`` by the
# family's own class for some model types (qwen2 gets ``Qwen2Tokenizer``, a byte-level BPE that reads this word-level
# vocabulary as unknown tokens) unless the config carries an ``auto_map``, which it then resolves, without remote
# code, to the declared class. A real checkpoint ships its own tokenizer and is not touched by this.
AUTO_MAP = {"AutoTokenizer": [None, "TokenizersBackend"]}


def declare(config_path: str | Path) -> None:
    """Make a world tokenizer_config.json load as the generic tokenizers backend under any model type."""
    import json

    path = Path(config_path)
    cfg = json.loads(path.read_text())
    cfg["tokenizer_class"] = "TokenizersBackend"
    cfg["auto_map"] = AUTO_MAP
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def save(tok: Tokenizer, out_dir: str | Path) -> None:
    """Save as a transformers fast tokenizer (tokenizer.json + config) loadable by ``AutoTokenizer`` whatever the
    checkpoint's model type (see ``declare``)."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK)
    fast.save_pretrained(str(out_dir))
    declare(Path(out_dir) / "tokenizer_config.json")
