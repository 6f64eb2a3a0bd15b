"""Token classification (named-entity recognition): one BIO tag per word, entities as character spans.

Rows are sentences of words with tags, from CoNLL or JSONL files (`edgeft.tagged_data`). Labels are aligned to
sub-words the usual way: the first sub-word of each word carries the word's tag, the other sub-words and the special
tokens are ignored by the loss (-100), and at prediction time a word takes its first sub-word's label (the runtime
also offers `max` and `average`). The head is a linear layer on every token state; the metrics are entity-level
precision, recall and F1 (exact span and type, micro and per type, seqeval) and token accuracy.

Compression: structured pruning, distillation (token-level KL on labelled positions) and quantization apply.
Vocabulary pruning does not: it is exact only for words whose pieces all occur in the training texts, and the
entities a tagger exists to find (WNUT17's "emerging and rare" ones) are precisely words unseen in training, whose
pieces it would replace by characters.
"""

from __future__ import annotations

from pathlib import Path

from edgeft.runtime.tasks import token_classification as device
from edgeft.tasks import sequence_classification

IGNORED = -100  # the label of positions the loss skips (transformers' and PyTorch's convention)


class TokenClassification:
    name = "token-classification"
    metric = "f1"
    metric_scale = 1.0
    generates = False
    merged_loader = "edgeft.models.load_classifier"
    passes = ("prune", "distill", "quantize")
    output_axes = ("batch", "sequence", "labels")
    runtime = device.TASK

    @property
    def export_precisions(self) -> dict[str, tuple[str, ...]]:
        from edgeft.export import PRECISIONS

        return PRECISIONS

    def load_splits(self, spec, seed: int):
        from edgeft.tagged_data import load_tagged_splits

        return load_tagged_splits(spec, seed)

    def tokenize(self, split, tokenizer, max_length: int):
        """Sub-word ids with `labels` (first sub-word: the word's tag id; others: -100) and `word_ids` (-1 for
        special tokens); the word `tags` stay for word-level scoring."""

        def encode(batch):
            encoded = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
            labels, words = [], []
            for row, tags in enumerate(batch["tags"]):
                word_ids = encoded.word_ids(row)
                labels.append([
                    IGNORED if word is None or (position and word_ids[position - 1] == word) else tags[word]
                    for position, word in enumerate(word_ids)
                ])
                words.append([-1 if word is None else word for word in word_ids])
            return {**encoded, "labels": labels, "word_ids": words}

        return split.map(encode, batched=True, remove_columns=["tokens"])

    def collator(self, tokenizer):
        """Pads ids and labels (-100); any other per-token column (e.g. a teacher's logits for distillation) is
        padded with zeros to the same length. `word_ids`/`tags` are for scoring only and left out."""
        import torch
        from transformers import DataCollatorForTokenClassification

        collate = DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORED)
        model_inputs = {"input_ids", "attention_mask", "token_type_ids", "labels"}

        def pad(rows: list[dict]) -> dict:
            batch = collate([{k: v for k, v in row.items() if k in model_inputs} for row in rows])
            length = batch["input_ids"].shape[1]
            for key in set(rows[0]) - model_inputs - {"word_ids", "tags"}:
                values = [torch.as_tensor(row[key], dtype=torch.float32) for row in rows]
                padded = torch.zeros(len(values), length, *values[0].shape[1:])
                for index, value in enumerate(values):
                    padded[index, : len(value)] = value
                batch[key] = padded
            return batch

        return pad

    def build_model(self, encoder, head_config):
        from edgeft.models import TokenClassifier

        return TokenClassifier(encoder, head_config)

    def compute_metrics(self, labels: list[str]):
        from edgeft.metrics import entity_metrics

        def scores(prediction) -> dict:
            predicted, truth = prediction.predictions.argmax(-1), prediction.label_ids
            keep = truth != IGNORED
            gold = [[labels[i] for i in row[mask]] for row, mask in zip(truth, keep)]
            guess = [[labels[i] for i in row[mask]] for row, mask in zip(predicted, keep)]
            metrics = entity_metrics(gold, guess)
            return {key: metrics[key] for key in ("f1", "precision", "recall", "token_accuracy")}

        return scores

    def split_metrics(self, logits, label_ids, split, labels: list[str]) -> dict:
        """Word-level scores against every gold word: a word cut off by max_length counts as predicted `O`."""
        from edgeft.metrics import entity_metrics

        predicted = logits.argmax(-1)
        gold, guess = [], []
        for row, (word_ids, tags) in enumerate(zip(split["word_ids"], split["tags"])):
            first = {}
            for position, word in enumerate(word_ids):
                first.setdefault(word, position)
            gold.append([labels[tag] for tag in tags])
            guess.append([labels[predicted[row, first[word]]] if word in first else device.OUTSIDE
                          for word in range(len(tags))])
        return entity_metrics(gold, guess)

    def examples(self, split, labels: list[str]) -> list[tuple[list[str], list[str]]]:
        return [(words, [labels[tag] for tag in tags]) for words, tags in zip(split["tokens"], split["tags"])]

    def example_text(self, example) -> str:
        return " ".join(example[0])

    def evaluate_predictor(self, predictor, examples: list[tuple[list[str], list[str]]], batch_size: int = 32) -> dict:
        """Entity-level scores of the runtime's word tags (first sub-word) on (words, tags) sentences."""
        from edgeft.metrics import entity_metrics

        predicted = predictor.task.predict_words(predictor, [words for words, _ in examples], batch_size=batch_size)
        metrics = entity_metrics([tags for _, tags in examples], predicted)
        return {key: metrics[key] for key in ("f1", "precision", "recall", "token_accuracy")} | {"n": len(examples)}

    def distill_loss(self, student_logits, teacher_logits, labels, temperature: float, alpha: float):
        """The sentence loss over the labelled tokens only (first sub-words; padding and specials masked)."""
        keep = labels != IGNORED
        return sequence_classification.TASK.distill_loss(
            student_logits[keep], teacher_logits[keep], labels[keep], temperature, alpha
        )

    def write_figures(self, folder: Path, logits, label_ids, labels: list[str], split: str) -> list[str]:
        return []  # the per-type table of the model card says more than a tag confusion matrix

    def card_table(self, metrics: dict) -> list[str]:
        lines = ["| split | entity F1 | precision | recall | token accuracy | sentences | entities |",
                 "| --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {split} | {m['f1']:.4f} | {m['precision']:.4f} | {m['recall']:.4f} | "
                  f"{m['token_accuracy']:.4f} | {m['sentences']} | {m['entities']} |"
                  for split in ("validation", "test") if (m := metrics.get(split))]
        split = "test" if "test" in metrics else "validation"
        lines += ["", f"Per entity type ({split}):", "", "| type | F1 | precision | recall | support |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {name} | {s['f1']:.4f} | {s['precision']:.4f} | {s['recall']:.4f} | {s['support']} |"
                  for name, s in metrics[split]["per_type"].items()]
        return lines


TASK = TokenClassification()
