"""Token classification (NER) on the device: logits per sub-word -> words -> entity spans with character offsets.

The post-processing is transformers' `TokenClassificationPipeline`'s, in numpy (a test compares the two on the same
model): a softmax per token; special tokens dropped; sub-words fused into words (with a word-aware tokenizer such as
WordPiece, a token is a sub-word when its vocabulary string and the text it covers differ in length, i.e. it carries
the `##` prefix; [UNK] never is); one label per word by the aggregation strategy:
    first: the first sub-word's label and score (how the model was trained: only first sub-words carry a label);
    max: the label of the sub-word with the highest score;
    average: the label with the highest score averaged over the word's sub-words;
then adjacent words of the same type joined into one entity (a `B-` tag starts a new one), scored by the mean of
their words' scores, and `O` dropped.
"""

from __future__ import annotations

import json

import numpy as np

from edgeft.runtime.display import escape

from edgeft.errors import EdgeftError
from edgeft.runtime.tasks.sequence_classification import softmax

AGGREGATIONS = ("first", "max", "average")
OUTSIDE = "O"


class TokenClassification:
    name = "token-classification"

    def rows(self, outputs: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return outputs[attention_mask.astype(bool)]

    def example_rows(self, outputs: np.ndarray, attention_mask: np.ndarray) -> list[np.ndarray]:
        return [row[keep.astype(bool)] for row, keep in zip(outputs, attention_mask)]

    def row_counts(self, predictor, texts: list[str]) -> list[int]:
        return [len(encoding.ids) for encoding in predictor.encodings(texts)]

    def predict(self, predictor, texts: list[str], aggregation: str = "first", batch_size: int = 32) -> list[list]:
        """Entities per text: [{"text", "type", "start", "end", "score"}], offsets in characters of the text."""
        _check(aggregation)
        encodings = predictor.encodings(texts)
        word_aware, unk_id = predictor.subword_rule()
        return [
            entities(text, encoding, scores, predictor.labels, aggregation, word_aware, unk_id)
            for text, encoding, scores in zip(texts, encodings, _scores(predictor, encodings, batch_size))
        ]

    def predict_words(self, predictor, sentences: list[list[str]], aggregation: str = "first",
                      batch_size: int = 32) -> list[list[str]]:
        """One tag per given word (pre-split text, as in CoNLL files); words cut off by max_length get `O`."""
        _check(aggregation)
        encodings = predictor.encodings(sentences, pretokenized=True)
        tags = []
        for words, encoding, scores in zip(sentences, encodings, _scores(predictor, encodings, batch_size)):
            positions: dict[int, list[int]] = {}
            for position, word in enumerate(encoding.word_ids):
                if word is not None and not encoding.special_tokens_mask[position]:
                    positions.setdefault(word, []).append(position)
            tags.append([
                predictor.labels[_word_label(scores[positions[index]], aggregation)[0]] if index in positions
                else OUTSIDE
                for index in range(len(words))
            ])
        return tags

    def records(self, predictor, texts: list[str], top_k: int = 1) -> list[dict]:
        return [{"text": text, "entities": found} for text, found in zip(texts, self.predict(predictor, texts))]

    def render(self, records: list[dict], as_json: bool) -> str:
        """JSON lines, or the text followed by one `type  score  span  [start:end]` line per entity."""
        if as_json:
            return "\n".join(json.dumps(record, ensure_ascii=False) for record in records)
        lines = []
        for record in records:
            lines.append(escape(record["text"]))
            lines += [f"  {escape(e['type'])}\t{e['score']:.3f}\t{escape(e['text'])}\t[{e['start']}:{e['end']}]"
                      for e in record["entities"]] or ["  (no entities)"]
        return "\n".join(lines)


def entities(text: str, encoding, scores: np.ndarray, labels: list[str], aggregation: str, word_aware: bool,
             unk_id: int | None) -> list[dict]:
    """The pipeline's post-processing of one text's token probabilities (see the module docstring)."""
    words, group = [], []
    for index, (token, (start, end)) in enumerate(zip(encoding.tokens, encoding.offsets)):
        if encoding.special_tokens_mask[index]:
            continue
        if word_aware:
            subword = len(token) != end - start
        else:  # the pipeline's fallback for tokenizers that do not mark continuations
            subword = start > 0 and " " not in text[start - 1 : start + 1]
        if encoding.ids[index] == unk_id:
            subword = False
        if group and not subword:
            words.append(_word(group, scores, aggregation))
            group = []
        group.append((index, start, end))
    if group:
        words.append(_word(group, scores, aggregation))

    spans, current = [], []
    for word in words:
        if current:
            bi, kind = _tag(labels[word[0]])
            if kind != _tag(labels[current[-1][0]])[1] or bi == "B":
                spans.append(current)
                current = []
        current.append(word)
    if current:
        spans.append(current)
    found = []
    for span in spans:
        kind = labels[span[0][0]].split("-", 1)[-1]
        if kind == OUTSIDE:
            continue
        start, end = span[0][2], span[-1][3]
        score = float(np.nanmean([word[1] for word in span]))
        found.append({"text": text[start:end], "type": kind, "start": int(start), "end": int(end), "score": score})
    return found


def _word(group: list[tuple[int, int, int]], scores: np.ndarray, aggregation: str) -> tuple[int, float, int, int]:
    label, score = _word_label(scores[[index for index, _, _ in group]], aggregation)
    return label, score, group[0][1], group[-1][2]


def _word_label(token_scores: np.ndarray, aggregation: str) -> tuple[int, float]:
    """(label id, score) of one word from its sub-words' probabilities (tokens x labels)."""
    if aggregation == "first":
        row = token_scores[0]
    elif aggregation == "max":
        row = token_scores[int(token_scores.max(axis=1).argmax())]
    else:
        row = np.nanmean(token_scores, axis=0)
    label = int(row.argmax())
    return label, float(row[label])


def _tag(label: str) -> tuple[str, str]:
    """("B"|"I", type); a label without a B-/I- prefix (O) continues like I-, as the pipeline does."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _scores(predictor, encodings, batch_size: int) -> list[np.ndarray]:
    """Per text, the softmax of its real tokens' logits (tokens x labels)."""
    result = []
    for start in range(0, len(encodings), batch_size):
        outputs, mask = predictor.forward([encoding.ids for encoding in encodings[start : start + batch_size]])
        result += [softmax(row[keep.astype(bool)]) for row, keep in zip(outputs, mask)]
    return result


def _check(aggregation: str) -> None:
    if aggregation not in AGGREGATIONS:
        raise EdgeftError(f"aggregation: {aggregation!r} is not one of {', '.join(AGGREGATIONS)}")


TASK = TokenClassification()
