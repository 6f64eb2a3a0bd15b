"""Vocabulary pruning: keep the WordPiece tokens a domain uses and slice the word embeddings to match.

Word embeddings are about half of MiniLM's parameters, and a narrow domain uses a few thousand of its 30,522 tokens.
The kept vocabulary is: every token the training texts produce, every special/added token, every single
character with its `##` continuation form, so words never seen in training still split into pieces instead of
collapsing to [UNK], and the first `keep_top` regular tokens of the vocabulary, so the commonest words outside the
training texts keep their own embedding (BERT's WordPiece vocabularies list regular tokens by corpus frequency:
"the", "of", "and", ...; a held-out text split into characters is where pruning loses accuracy).

Why the pruned tokenizer reproduces the original one exactly on any word whose original pieces were all kept:
WordPiece takes the longest vocabulary prefix at each step. Each original piece is still in the vocabulary, and no
longer prefix can have appeared (it was not in the larger vocabulary either), so every step picks the same piece.
Token ids change (kept tokens keep their order); the embedding rows move with them, so the logits are unchanged.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path

import torch
from pydantic import NonNegativeInt, PositiveInt

from edgeft.errors import EdgeftError
from edgeft.models import SequenceClassifier
from edgeft.recipe import Strict

CONTINUATION = "##"


class VocabConfig(Strict):
    min_frequency: PositiveInt = 1
    """Keep a token seen in the training texts at least this many times (1: every token the domain uses)."""
    keep_characters: bool = True
    """Also keep every single character and its `##` form, so unseen words split into pieces, not [UNK]."""
    keep_top: NonNegativeInt = 0
    """Also keep the first this many tokens of the vocabulary after its special and single-character block (the
    commonest words of the pretraining corpus in a BERT WordPiece vocabulary)."""


class Space(Strict):
    """What the search tries: vocabulary pruning on, off, or both."""

    apply: list[bool] = [True, False]
    """Choices for pruning the vocabulary."""
    min_frequency: PositiveInt = 1
    """As in VocabConfig."""
    keep_top: NonNegativeInt = 0
    """As in VocabConfig."""

    def off(self) -> dict:
        """The parameters that skip the pass (where the space allows it)."""
        return {"vocab": False} if False in self.apply else {}

    def sample(self, trial, earlier: dict, profile) -> VocabConfig | None:
        if not trial.suggest_categorical("vocab", self.apply):
            return None
        return VocabConfig(min_frequency=self.min_frequency, keep_top=self.keep_top)


Config = VocabConfig
COSTLY = False


def run(model_dir: Path, config: VocabConfig, out_dir: Path, context) -> Path:
    """The pass: restrict the vocabulary of the classifier in `model_dir` to the training texts' tokens."""
    from edgeft.models import load_classifier, load_tokenizer

    model, tokenizer = prune_vocab(load_classifier(model_dir), load_tokenizer(model_dir), config,
                                   list(context.splits.train["text"]))
    model.save(out_dir, tokenizer)
    return out_dir


def prune_vocab(model: SequenceClassifier, tokenizer, config: VocabConfig, texts: list[str]):
    """A copy of `model` and a new tokenizer restricted to the tokens `texts` use (inputs are left untouched).

    Args:
        model: the classifier; its encoder's input embeddings are sliced.
        tokenizer: its fast WordPiece tokenizer (BERT family).
        config: what to keep.
        texts: the training texts that define the domain's vocabulary.

    Returns:
        (model, tokenizer): save them together with `model.save(folder, tokenizer)`.

    Raises:
        EdgeftError: a tokenizer that is not a fast WordPiece tokenizer.
    """
    state = json.loads(tokenizer.backend_tokenizer.to_str()) if tokenizer.is_fast else {}
    if state.get("model", {}).get("type") != "WordPiece":
        raise EdgeftError("vocab: only fast WordPiece tokenizers (BERT family) can be pruned")
    vocab = state["model"]["vocab"]
    kept = _kept_ids(tokenizer, vocab, config, texts)
    new_id = {old: new for new, old in enumerate(kept)}
    new_tokenizer = _rebuilt_tokenizer(tokenizer, state, new_id)

    model = copy.deepcopy(model).eval()
    encoder = model.encoder
    old = encoder.get_input_embeddings()
    pad = new_id.get(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else None
    embeddings = torch.nn.Embedding(len(kept), old.embedding_dim, padding_idx=pad)
    embeddings.weight.data = old.weight.data[torch.tensor(kept)].clone()
    encoder.set_input_embeddings(embeddings)
    encoder.config.vocab_size = len(kept)
    encoder.config.pad_token_id = pad
    model.head_config.extra["vocab"] = {"kept": len(kept), "original": len(vocab)}
    return model, new_tokenizer


def _kept_ids(tokenizer, vocab: dict[str, int], config: VocabConfig, texts: list[str]) -> list[int]:
    # No truncation: a token beyond max_length in one text is still part of the domain's vocabulary.
    counts = Counter(i for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"] for i in ids)
    keep = {i for i, count in counts.items() if count >= config.min_frequency}
    keep |= set(tokenizer.added_tokens_decoder) | set(tokenizer.all_special_ids)
    if config.keep_characters:
        keep |= {i for token, i in vocab.items() if _is_character(token)}
    if config.keep_top:
        regular = sorted(i for token, i in vocab.items() if not _special_or_character(token, tokenizer))
        keep |= set(regular[: config.keep_top])
    return sorted(keep)


def _is_character(token: str) -> bool:
    return len(token) == 1 or (token.startswith(CONTINUATION) and len(token) == len(CONTINUATION) + 1)


def _special_or_character(token: str, tokenizer) -> bool:
    bracketed = token.startswith("[") and token.endswith("]")  # [unused0] ... reserved slots
    return token in tokenizer.all_special_tokens or bracketed or _is_character(token)


def _rebuilt_tokenizer(tokenizer, state: dict, new_id: dict[int, int]):
    """The same normaliser, pre-tokeniser, post-processor and decoder around the smaller WordPiece vocabulary."""
    from tokenizers import Tokenizer

    state["model"]["vocab"] = {t: new_id[i] for t, i in state["model"]["vocab"].items() if i in new_id}
    vocab = state["model"]["vocab"]
    for added in state.get("added_tokens", []):
        added["id"] = new_id[added["id"]]
    if state.get("padding"):
        state["padding"]["pad_id"] = vocab[state["padding"]["pad_token"]]
    processor = state.get("post_processor") or {}
    for special in processor.get("special_tokens", {}).values():  # TemplateProcessing
        special["ids"] = [vocab[token] for token in special["tokens"]]
    for key in ("cls", "sep"):  # BertProcessing / RobertaProcessing store (token, id) pairs
        if key in processor:
            processor[key][1] = vocab[processor[key][0]]
    backend = Tokenizer.from_str(json.dumps(state))
    files = ("vocab_file", "tokenizer_file", "name_or_path")  # the new backend replaces what they point at
    settings = {key: value for key, value in tokenizer.init_kwargs.items() if key not in files}
    return type(tokenizer)(tokenizer_object=backend, **settings)
