"""Vocabulary pruning on the tiny random BERT: exact logits on known words, pieces (not [UNK]) for unseen ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset
from pydantic import ValidationError
from tokenizers import Tokenizer

from edgeft.compress.vocab import VocabConfig, prune_vocab
from edgeft.models import (
    HeadConfig,
    SequenceClassifier,
    count_parameters,
    load_classifier,
    load_encoder,
    load_tokenizer,
)
from edgeft.training import model_logits, tokenize

TRAIN = [
    "my card was lost or stolen yesterday",
    "how do i transfer money to another account",
    "why was i charged an extra fee for the payment",
    "can i cancel a transfer i sent by mistake",
]
HELD_OUT = ["the fee for my card", "i lost money to a transfer"]  # every piece appears in TRAIN
UNSEEN = "cryptocurrency refund"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny-bert")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    encoder = load_encoder("tiny-bert")
    return SequenceClassifier(encoder, HeadConfig(labels=["a", "b", "c"], max_length=32)).eval()


@pytest.fixture(scope="module")
def pruned(model, tokenizer):
    return prune_vocab(model, tokenizer, VocabConfig(), TRAIN)


def logits(model, tokenizer, texts):
    return model_logits(model, tokenize(Dataset.from_dict({"text": texts}), tokenizer, 32), tokenizer)


def test_known_words_give_the_same_pieces_and_logits(model, tokenizer, pruned):
    small_model, small_tokenizer = pruned
    for text in HELD_OUT:
        assert small_tokenizer.tokenize(text) == tokenizer.tokenize(text)
    np.testing.assert_array_equal(logits(small_model, small_tokenizer, HELD_OUT), logits(model, tokenizer, HELD_OUT))


def test_unseen_words_split_into_pieces_not_unk(tokenizer, pruned):
    _, small_tokenizer = pruned
    pieces = small_tokenizer.tokenize(UNSEEN)
    assert small_tokenizer.unk_token not in pieces
    assert "".join(piece.removeprefix("##") for piece in pieces) == UNSEEN.replace(" ", "")


def test_embeddings_shrink_to_the_new_vocabulary(model, pruned):
    small_model, small_tokenizer = pruned
    assert small_model.encoder.config.vocab_size == len(small_tokenizer) < 3000
    assert small_model.encoder.get_input_embeddings().num_embeddings == len(small_tokenizer)
    assert count_parameters(small_model)["total"] < count_parameters(model)["total"] / 5
    assert small_model.head_config.extra["vocab"] == {"kept": len(small_tokenizer), "original": 30522}


def test_saved_folder_reloads_and_its_tokenizer_json_matches(pruned, tmp_path):
    # setup
    small_model, small_tokenizer = pruned
    # execute
    small_model.save(tmp_path, small_tokenizer)
    reloaded, reloaded_tokenizer = load_classifier(tmp_path), load_tokenizer(tmp_path)
    # assert: the bare tokenizer.json (what edgeft.runtime uses) gives the same ids, special tokens included
    texts = HELD_OUT + [UNSEEN]
    backend = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert [e.ids for e in backend.encode_batch(texts)] == reloaded_tokenizer(texts)["input_ids"]
    expected = logits(small_model, small_tokenizer, texts)
    np.testing.assert_array_equal(logits(reloaded, reloaded_tokenizer, texts), expected)


def test_min_frequency_keeps_fewer_tokens(model, tokenizer, pruned):
    rare, rare_tokenizer = prune_vocab(model, tokenizer, VocabConfig(min_frequency=2), TRAIN)
    assert len(rare_tokenizer) < len(pruned[1])
    assert rare_tokenizer.unk_token not in rare_tokenizer.tokenize(TRAIN[0])


def test_keep_top_keeps_the_commonest_words_outside_the_training_texts(model, tokenizer, pruned):
    # setup: the words are among the first regular tokens of BERT's vocabulary; none is in TRAIN
    common = "he is one of them"

    # execute
    top, top_tokenizer = prune_vocab(model, tokenizer, VocabConfig(keep_top=100), TRAIN)

    # assert: those words keep their own token (and embedding row) instead of splitting into characters
    assert top_tokenizer.tokenize(common) == tokenizer.tokenize(common) != pruned[1].tokenize(common)
    np.testing.assert_array_equal(logits(top, top_tokenizer, [common]), logits(model, tokenizer, [common]))
    assert len(pruned[1]) < len(top_tokenizer) <= len(pruned[1]) + 100


def test_bad_settings_are_rejected():
    with pytest.raises(ValidationError):
        VocabConfig(min_frequency=0)
    with pytest.raises(ValidationError):
        VocabConfig(keep_top=-1)
