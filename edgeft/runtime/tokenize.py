"""Reproduce the training tokenizer from `tokenizer.json` plus the manifest's settings, with `tokenizers` only.

`tokenizer.json` carries the normaliser (lower-casing), pre-tokeniser, vocabulary and the [CLS]/[SEP] template;
truncation and padding are call-time settings in transformers, so the manifest stores them and they are applied here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class TextEncoder:
    """Texts -> int arrays `input_ids` and `attention_mask` padded to a common length.

    Args:
        path: the bundle's tokenizer.json.
        settings: the manifest's `tokenizer` mapping (max_length, truncation_side, padding_side, pad_id).
    """

    def __init__(self, path: Path, settings: dict):
        from tokenizers import Tokenizer

        self.settings = settings
        self.max_length = int(settings["max_length"])
        self.tokenizer = Tokenizer.from_file(str(path))
        vocabulary = self.tokenizer.get_vocab_size(with_added_tokens=True)
        if not 0 <= int(settings.get("pad_id", 0)) < vocabulary:
            raise ValueError(f"pad_id {settings.get('pad_id')} is outside the vocabulary (0..{vocabulary - 1})")
        self.tokenizer.no_padding()  # padding is done below, to the batch's longest or to a fixed bucket
        self.tokenizer.enable_truncation(self.max_length, direction=settings.get("truncation_side", "right"))

    def encodings(self, texts: list, pretokenized: bool = False) -> list:
        """`tokenizers.Encoding` per text (or per list of words when `pretokenized`), special tokens added,
        truncated to max_length."""
        return self.tokenizer.encode_batch(list(texts), is_pretokenized=pretokenized)

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text, special tokens added, truncated to max_length."""
        return [encoding.ids for encoding in self.encodings(texts)]

    @property
    def word_aware(self) -> bool:
        """Whether the vocabulary marks word continuations (WordPiece's `##`), so sub-words can be told apart."""
        return bool(getattr(self.tokenizer.model, "continuing_subword_prefix", None))

    @property
    def unk_id(self) -> int | None:
        unknown = getattr(self.tokenizer.model, "unk_token", None)
        return self.tokenizer.token_to_id(unknown) if unknown else None

    def pad(self, ids: list[list[int]], length: int | None = None, dtype=np.int64) -> dict[str, np.ndarray]:
        """Pad to `length` (default: the longest), on the side the model was trained with."""
        length = length or max(len(row) for row in ids)
        input_ids = np.full((len(ids), length), int(self.settings.get("pad_id", 0)), dtype=dtype)
        attention_mask = np.zeros((len(ids), length), dtype=dtype)
        left = self.settings.get("padding_side", "right") == "left"
        for row, tokens in enumerate(ids):
            span = slice(length - len(tokens), length) if left else slice(0, len(tokens))
            input_ids[row, span] = tokens
            attention_mask[row, span] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}


def tokenizer_settings(tokenizer, max_length: int) -> dict:
    """What the runtime must reproduce of a transformers fast tokenizer (stored in the manifest)."""
    return {
        "file": "tokenizer.json",
        "max_length": int(max_length),
        "truncation_side": tokenizer.truncation_side,
        "padding_side": tokenizer.padding_side,
        "pad_id": int(tokenizer.pad_token_id),
        "pad_token": tokenizer.pad_token,
        "lowercase": bool(getattr(tokenizer, "do_lower_case", False)),
        "add_special_tokens": True,
    }


def save_tokenizer(tokenizer, path: Path) -> None:
    """Write a transformers fast tokenizer's `tokenizer.json` without call-time padding/truncation state.

    The manifest carries those settings; leaving a fixed padding length in the file would mislead other readers.
    """
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.no_truncation()
    backend.save(str(path))

