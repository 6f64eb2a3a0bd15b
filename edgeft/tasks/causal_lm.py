"""Causal language modelling: a decoder LM learns to continue a prompt with a completion, scored by generating.

Rows are (prompt, completion) columns (`data.text_column`, `data.label_column`); a prompt may repeat once per
reference completion (E2E NLG). The prompt goes through `generation.prompt_template` (and the model's chat template
when asked), the loss covers the completion tokens and the eos token only, and quality is corpus BLEU and ROUGE-L of
greedy generations against every reference of each distinct prompt, plus perplexity on the completions. The whole
LM is tuned (LoRA, DoRA or every weight) through the same Trainer + peft path as the classifiers.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import numpy as np

from edgeft.decoders import GENERATION_FILE
from edgeft.errors import EdgeftError
from edgeft.runtime.generate import PROMPT
from edgeft.runtime.tasks import causal_lm as device

METHODS = ("lora", "dora", "full")
IGNORE = -100  # label id the loss skips (prompt tokens, padding)
MERGE_TOLERANCE = 1e-3
MERGE_CHECK_ROWS = 16
GENERATION_BATCH = 16
DEFAULT_NEW_TOKENS = 64  # bundles exported before they recorded their scoring length


class CausalLM:
    name = "causal-lm"
    metric = "bleu"
    metric_scale = 100.0  # sacrebleu's scale: one point of BLEU is 1.0
    generates = True
    merged_loader = "transformers.AutoModelForCausalLM.from_pretrained"
    checkpoint_metric = "loss"  # the Trainer keeps the checkpoint with the lowest validation loss
    passes = ("quantize",)
    output_axes = ("batch", "sequence", "vocab")
    runtime = device.TASK

    @property
    def export_precisions(self) -> dict[str, tuple[str, ...]]:
        from edgeft.export.decoder import PRECISIONS

        return PRECISIONS

    def load_splits(self, spec, seed: int):
        """Prompt/completion rows; validation held out by prompt, so no prompt is in both train and validation."""
        from edgeft.data import Splits, _read

        problems: list[str] = []
        raw = {"train": _read(spec.train, "train", spec, problems)}
        if isinstance(spec.validation, str):
            raw["validation"] = _read(spec.validation, "validation", spec, problems)
        if spec.test:
            raw["test"] = _read(spec.test, "test", spec, problems)
        if problems:
            raise EdgeftError(problems)
        raw = {name: split.rename_columns({"text": "prompt", "label": "completion"}) for name, split in raw.items()}
        if "validation" not in raw:
            prompts = sorted(set(raw["train"]["prompt"]))
            order = np.random.default_rng(spec.held_out_seed(seed)).permutation(prompts)
            held = set(order[: max(1, round(spec.validation * len(prompts)))])
            if len(held) == len(prompts):
                raise EdgeftError(f"data.validation: {len(prompts)} distinct prompt(s) cannot be split")
            raw["validation"] = raw["train"].filter(lambda row: row["prompt"] in held)
            raw["train"] = raw["train"].filter(lambda row: row["prompt"] not in held)
        if spec.require_in_completion:
            raw["train"] = keep_complete(raw["train"], spec.require_in_completion)
        if spec.repeat:
            raw["train"] = repeat_rows(raw["train"], spec.repeat)
        if spec.substitutions:
            raw["train"] = substitute_values(raw["train"], spec.substitutions, spec.substitution_rate, seed)
        return Splits(raw["train"], raw["validation"], raw.get("test"), [])

    def tokenize(self, split, tokenizer, max_length: int, prompt_format: str):
        """`input_ids` = prompt + completion + eos (cut at max_length), `labels` = the same with prompt tokens ignored."""

        def encode(batch):
            rows = {"input_ids": [], "attention_mask": [], "labels": []}
            for prompt, completion in zip(batch["prompt"], batch["completion"]):
                prompt_ids = tokenizer(prompt_format.replace(PROMPT, prompt), add_special_tokens=False)["input_ids"]
                target = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
                ids = (prompt_ids + target)[:max_length]
                rows["input_ids"].append(ids)
                rows["attention_mask"].append([1] * len(ids))
                rows["labels"].append(([IGNORE] * len(prompt_ids) + target)[:max_length])
            return rows

        return split.map(encode, batched=True, remove_columns=split.column_names)

    def collator(self, tokenizer):
        from transformers import DataCollatorForSeq2Seq

        # Pads input_ids with the pad token and labels with IGNORE (works for decoder-only rows too).
        return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE, padding=True)

    def compute_metrics(self, labels: list[str]):
        return None  # validation loss only; BLEU needs generation, done once after training

    def examples(self, split, labels: list[str] | None = None) -> list[tuple[str, list[str]]]:
        """Distinct prompts in first-seen order, each with all its reference completions."""
        grouped: dict[str, list[str]] = {}
        for prompt, completion in zip(split["prompt"], split["completion"]):
            grouped.setdefault(prompt, []).append(completion)
        return list(grouped.items())

    def example_text(self, example) -> str:
        return example[0]

    def evaluate_predictor(self, generator, examples: list[tuple[str, list[str]]], max_new_tokens: int | None = None
                           ) -> dict:
        """BLEU and ROUGE-L of a loaded bundle's greedy generations (`edgeft.runtime`, no torch), at the bundle's
        scoring length (the recipe's `generation.max_new_tokens`) unless `max_new_tokens` is given."""
        from edgeft.metrics import generation_metrics

        max_new_tokens = max_new_tokens or generator.manifest["decoder"].get("max_new_tokens", DEFAULT_NEW_TOKENS)
        started = time.perf_counter()
        outputs = [generator.generate(prompt, max_new_tokens=max_new_tokens) for prompt, _ in examples]
        scores = generation_metrics(outputs, [refs for _, refs in examples])
        return {**scores, "seconds": round(time.perf_counter() - started, 1)}

    def model_metrics(self, model_dir: Path, split) -> dict:
        """BLEU and ROUGE-L of a PyTorch model folder (a run's `merged/`) on a split's distinct prompts, greedy, at
        its `generation.json` scoring length: the reference compression measures its bundles against."""
        import json

        from edgeft.decoders import load_decoder, load_decoder_tokenizer

        settings = json.loads((Path(model_dir) / GENERATION_FILE).read_text())
        model, tokenizer = load_decoder(model_dir), load_decoder_tokenizer(model_dir)
        scores, _ = greedy_scores(model, tokenizer, self.examples(split), settings["prompt_format"],
                                  settings["max_new_tokens"])
        return scores

    def card_table(self, metrics: dict) -> list[str]:
        lines = ["| split | BLEU | ROUGE-L | perplexity | prompts |", "| --- | --- | --- | --- | --- |"] + [
            f"| {split} | {metrics[split]['bleu']:.2f} | {metrics[split]['rouge_l']:.2f} | "
            f"{metrics[split]['perplexity']:.3f} | {metrics[split]['n']} |"
            for split in ("validation", "test") if split in metrics
        ]
        samples = metrics.get("samples", [])
        if samples:
            lines += ["", "Sample generations (greedy, test prompts):", ""]
            lines += [f"- `{s['prompt']}` → {s['generated']}" for s in samples]
        return lines

    def summarize(self, recipe) -> dict:
        """Rows, distinct prompts and token-length percentiles of the formatted training sequences (`--dry-run`):
        what `data.max_length` should cover."""
        from edgeft.decoders import load_decoder_tokenizer, resolve_decoder

        splits = self.load_splits(recipe.data, recipe.training.seed)
        tokenizer = load_decoder_tokenizer(resolve_decoder(recipe.model.name))
        prompt_format = build_prompt_format(tokenizer, generation_spec(recipe))
        summary = {"prompt_format": prompt_format, "splits": {}}
        for name, split in splits.items():
            tokenized = self.tokenize(split, tokenizer, 1 << 30, prompt_format)
            lengths = np.array([len(ids) for ids in tokenized["input_ids"]])
            completion = np.array([sum(t != IGNORE for t in labels) for labels in tokenized["labels"]])
            summary["splits"][name] = {
                "rows": len(split),
                "prompts": len(set(split["prompt"])),
                "tokens_p50": int(np.percentile(lengths, 50)),
                "tokens_p90": int(np.percentile(lengths, 90)),
                "tokens_p99": int(np.percentile(lengths, 99)),
                "tokens_max": int(lengths.max()),
                "completion_tokens_p99": int(np.percentile(completion, 99)),
                "truncated_fraction": round(float((lengths > recipe.data.max_length).mean()), 4),
            }
        return summary

    def tune(self, recipe, folder: Path, resume: bool, progress=None):
        """Train, pick the lowest-validation-loss checkpoint, merge, check the merge, score by generating;
        progress lines go to the `progress` stream.

        Returns:
            (metrics, the Trainer's log history, the model source), or (None, None, None) on ranks other than 0.
        """
        from edgeft.decoders import load_decoder, load_decoder_tokenizer, resolve_decoder
        from edgeft.methods import apply_method
        from edgeft.models import count_parameters
        from edgeft.training import average_last_checkpoints, build_trainer, train

        if recipe.method.kind not in METHODS:
            raise EdgeftError(f"method.kind: a causal LM tunes with {', '.join(METHODS)} (got {recipe.method.kind!r})")
        splits = self.load_splits(recipe.data, recipe.training.seed)
        source = resolve_decoder(recipe.model.name)
        tokenizer = load_decoder_tokenizer(source)
        spec = generation_spec(recipe)
        prompt_format = build_prompt_format(tokenizer, spec)
        model = apply_method(load_decoder(source, len(tokenizer), recipe.training.seed), recipe.method)
        params = count_parameters(model)
        max_length = recipe.data.max_length
        tokenized = {name: self.tokenize(split, tokenizer, max_length, prompt_format) for name, split in splits.items()}
        scored_on = {}
        if recipe.training.checkpoint_metric == "bleu":
            scored_on = {"bleu_examples": self.examples(splits.validation)[: spec.eval_prompts],
                         "bleu_tokenizer": tokenizer, "prompt_format": prompt_format,
                         "max_new_tokens": spec.max_new_tokens}
        trainer = build_trainer(model, recipe.training, tokenizer, tokenized, folder, trainer_class=_trainer_class(),
                                task=self, progress=progress, **scored_on)
        _, train_record = train(trainer, folder, resume)
        if not trainer.is_world_process_zero():
            return None, None, None
        if recipe.training.average_checkpoints > 1:
            train_record["averaged_checkpoints"] = average_last_checkpoints(model, folder,
                                                                            recipe.training.average_checkpoints)

        model.eval()
        check_rows = tokenized["validation"].select(range(min(MERGE_CHECK_ROWS, len(tokenized["validation"]))))
        tuned_logits = _logits(model, check_rows, self.collator(tokenizer))
        if recipe.method.kind != "full":
            model.save_pretrained(folder / "adapter")
            tokenizer.save_pretrained(folder / "adapter")
            model = model.merge_and_unload()
        merged_dir = save_merged(model, tokenizer, folder / "merged", prompt_format, spec, max_length)
        merged = load_decoder(merged_dir).to(model.device)  # score where training ran (a GPU when there is one)
        diff = float(np.abs(tuned_logits - _logits(merged, check_rows, self.collator(tokenizer))).max())
        if diff > MERGE_TOLERANCE:
            raise EdgeftError(f"merge check failed: merged logits differ by {diff:.2e} (> {MERGE_TOLERANCE})", 1)

        metrics = {"task": self.name, "labels": [], "params": params, "method": recipe.method.kind}
        for name in ("validation", "test"):
            if name in tokenized:
                metrics[name], samples = self.score(merged, tokenizer, getattr(splits, name), tokenized[name],
                                                    prompt_format, spec, progress, name)
        metrics.update(
            samples=samples[: spec.samples],  # from the test split when there is one
            train={**train_record, "max_length": max_length},
            merge={"supported": True, "max_abs_diff": diff, "rows": len(check_rows), "tolerance": MERGE_TOLERANCE},
            prompt_format=prompt_format,
        )
        return metrics, trainer.state.log_history, source

    def score(self, model, tokenizer, split, tokenized, prompt_format: str, spec, progress=None,
              split_name: str = "") -> tuple[dict, list[dict]]:
        """BLEU / ROUGE-L of greedy generations for the split's distinct prompts, completion perplexity, and the
        generations themselves (prompt, generated, first reference); a line per batch on `progress`."""
        examples = self.examples(split)[: spec.eval_prompts]
        started = time.perf_counter()
        scores, outputs = greedy_scores(model, tokenizer, examples, prompt_format, spec.max_new_tokens,
                                        progress, f"generating for {split_name} BLEU")
        scores["generation_seconds"] = round(time.perf_counter() - started, 1)
        scores["perplexity"] = perplexity(model, tokenized, self.collator(tokenizer))
        scores["max_new_tokens"] = spec.max_new_tokens
        generations = [{"prompt": p, "generated": g, "reference": refs[0]} for (p, refs), g in zip(examples, outputs)]
        return scores, generations


def keep_complete(split, rules):
    """The training rows whose completion says, for every match of each rule's `when` in the prompt, its `require`
    (`\\1`... filled with the match's groups, escaped; case-insensitive)."""
    compiled = [(re.compile(rule.when), rule) for rule in rules]

    def complete(row) -> bool:
        for when, rule in compiled:
            for match in when.finditer(row["prompt"]):
                if not re.search(rule.completion_pattern(match), row["completion"], re.IGNORECASE):
                    return False
        return True

    kept = split.filter(complete, load_from_cache_file=False)
    if not len(kept):
        raise EdgeftError(f"data.require_in_completion: none of the {len(split)} training rows says all it must")
    return kept


def repeat_rows(split, rules):
    """The training rows, each whose prompt matches a rule's `when` repeated `times` (the first matching rule)."""
    compiled = [(re.compile(rule.when), rule.times) for rule in rules]
    indices = []
    for index, prompt in enumerate(split["prompt"]):
        indices += [index] * next((times for when, times in compiled if when.search(prompt)), 1)
    return split.select(indices)


def substitute_values(split, groups: list[list[str]], rate: float, seed: int):
    """Training rows with, per group, the one value their prompt names replaced by another of the group in prompt and
    completion (at `rate` of the rows whose completion names it too, the replacement drawn uniformly).

    The prompt must name exactly one value of a group (`Indian` inside `Raja Indian Cuisine` next to `Chinese` is
    ambiguous: left alone). In the completion, matches are found regardless of case and keep their case style
    (`Coffee shop` -> `Pub`), an English article before them follows the new value (`a` / `an`), and a word the new
    value ends with is not doubled (`English food` -> `Fast food`, not `Fast food food`).
    """
    rng = np.random.default_rng(seed)
    patterns = [{value: re.compile(rf"(?<!\w){re.escape(value)}(?!\w)") for value in dict.fromkeys(group)}
                for group in groups]

    def substitute(row):
        prompt, completion = row["prompt"], row["completion"]
        for group in patterns:
            named = [value for value, pattern in group.items() if pattern.search(prompt)]
            draw, pick = rng.random(), rng.integers(len(group) - 1)  # drawn for every row: reproducible per row
            if len(named) != 1 or draw >= rate:
                continue
            value = named[0]
            other = [candidate for candidate in group if candidate != value][pick]
            last = other.split()[-1]
            in_completion = re.compile(rf"(?:(?<!\w)(an?)\s+)?(?<!\w)({re.escape(value)})(?:\s+({re.escape(last)}))?"
                                       r"(?!\w)", re.IGNORECASE)
            if not in_completion.search(completion):
                continue
            prompt = group[value].sub(other, prompt)
            completion = in_completion.sub(lambda match: _replaced(match, value, other), completion)
        return {"prompt": prompt, "completion": completion}

    return split.map(substitute, load_from_cache_file=False)


def _replaced(match, value: str, other: str) -> str:
    """`other` in place of a completion's (article,) value (, the word `other` ends with), in the found case style."""
    article, found, _ = match.groups()  # the third group, a word `other` ends with, is absorbed into it
    if found == value:
        text = other
    elif found == found.lower():
        text = other.lower()
    elif found[0].isupper():
        text = other[0].upper() + other[1:]
    else:
        text = other
    if article:
        new = "an" if text[0].lower() in "aeiou" else "a"
        text = f"{new[0].upper() + new[1:] if article[0].isupper() else new} {text}"
    return text


def _trainer_class():
    from transformers import Trainer

    class CausalLMTrainer(Trainer):
        """The stock Trainer: peft checkpoints are saved as adapters, so the best one reloads at the end. Given
        `bleu_examples` ((prompt, references) pairs) and their tokenizer, every evaluation also reports `eval_bleu`
        of greedy generations for them, so checkpoints and early stopping can choose on it."""

        def __init__(self, *args, head_learning_rate: float | None = None, bleu_examples=None, bleu_tokenizer=None,
                     prompt_format: str = PROMPT, max_new_tokens: int = DEFAULT_NEW_TOKENS, **kwargs):
            super().__init__(*args, **kwargs)  # no new head: one learning rate
            self.bleu_examples, self.bleu_tokenizer = bleu_examples, bleu_tokenizer
            self.prompt_format, self.max_new_tokens = prompt_format, max_new_tokens

        def evaluation_loop(self, *args, metric_key_prefix: str = "eval", **kwargs):
            output = super().evaluation_loop(*args, metric_key_prefix=metric_key_prefix, **kwargs)
            if self.bleu_examples:
                scores, _ = greedy_scores(self.model, self.bleu_tokenizer, self.bleu_examples, self.prompt_format,
                                          self.max_new_tokens)
                output.metrics[f"{metric_key_prefix}_bleu"] = scores["bleu"]
            return output

    return CausalLMTrainer


def generation_spec(recipe):
    """The recipe's `generation` section, or its defaults."""
    from edgeft.recipe import GenerationSpec

    return recipe.generation or GenerationSpec()


def build_prompt_format(tokenizer, spec) -> str:
    """The model's input text around a prompt, `{prompt}` marking it: the recipe's template, optionally rendered
    once into the chat template as the user turn (so the device needs no template engine)."""
    if not spec.chat_template:
        return spec.prompt_template
    if not getattr(tokenizer, "chat_template", None):
        raise EdgeftError("generation.chat_template: this model's tokenizer has no chat template")
    marker = "\x00PROMPT\x00"
    text = tokenizer.apply_chat_template([{"role": "user", "content": spec.prompt_template.replace(PROMPT, marker)}],
                                         tokenize=False, add_generation_prompt=True)
    return text.replace(marker, PROMPT)


def save_merged(model, tokenizer, folder: Path, prompt_format: str, spec, max_length: int) -> Path:
    """A plain HF folder (safetensors, tokenizer) plus `generation.json`: how prompts are formatted and scored."""
    import json

    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    (folder / "tokenizer.model").unlink(missing_ok=True)  # a GGUF-built tokenizer copies the whole GGUF here
    settings = {"task": "causal-lm", "prompt_format": prompt_format, "max_new_tokens": spec.max_new_tokens,
                "max_length": max_length}
    (folder / GENERATION_FILE).write_text(json.dumps(settings, indent=2))
    return folder


def generate_torch(model, tokenizer, prompts: list[str], prompt_format: str, max_new_tokens: int,
                   batch_size: int = GENERATION_BATCH, progress=None, label: str = "generating") -> list[str]:
    """Greedy generations in PyTorch, batched with left padding (the attention mask hides the padding); a line per
    batch on the `progress` stream."""
    import torch

    eos = tokenizer.eos_token_id
    texts = [prompt_format.replace(PROMPT, prompt) for prompt in prompts]
    outputs = []
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = tokenizer(texts[start : start + batch_size], return_tensors="pt", padding=True,
                                  add_special_tokens=False).to(model.device)
                out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                     max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                                     pad_token_id=tokenizer.pad_token_id)
                outputs += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
                if progress:
                    print(f"{label}: {len(outputs)}/{len(texts)} prompts", file=progress, flush=True)
    finally:
        tokenizer.padding_side = side
    return [text.strip() for text in outputs]


def greedy_scores(model, tokenizer, examples: list[tuple[str, list[str]]], prompt_format: str,
                  max_new_tokens: int, progress=None, label: str = "generating") -> tuple[dict, list[str]]:
    """BLEU / ROUGE-L of PyTorch greedy generations for (prompt, references) examples, and the generations."""
    from edgeft.metrics import generation_metrics

    outputs = generate_torch(model, tokenizer, [prompt for prompt, _ in examples], prompt_format, max_new_tokens,
                             progress=progress, label=label)
    return generation_metrics(outputs, [refs for _, refs in examples]), outputs


def perplexity(model, tokenized, collator, batch_size: int = 16) -> float:
    """exp of the mean negative log-likelihood per completion token (token-weighted, not batch-weighted). Rows go
    in length order, so a batch pads to a near neighbour's length rather than to the longest of a random 16."""
    import torch

    lengths = [len(ids) for ids in tokenized["input_ids"]]
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = [tokenized[i] for i in order[start : start + batch_size]]
            batch = {key: value.to(model.device) for key, value in collator(rows).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
            targets = batch["labels"][:, 1:]
            losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2).float(), targets, ignore_index=IGNORE,
                                                       reduction="sum")
            total += float(losses)
            count += int((targets != IGNORE).sum())
    return round(math.exp(total / max(count, 1)), 4)


def _logits(model, rows, collator) -> np.ndarray:
    """Logits of the real (unpadded) positions of a few tokenized rows, flattened: the merge-drift reference."""
    import torch

    batch = {key: value.to(model.device) for key, value in collator([rows[i] for i in range(len(rows))]).items()}
    with torch.inference_mode():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return logits[batch["attention_mask"].bool()].float().cpu().numpy()


TASK = CausalLM()
