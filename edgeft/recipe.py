"""The tuning recipe: a YAML file validated by these pydantic models. The schema is the documentation.

Every problem in a recipe is collected and reported at once, as `file: field.path: what is wrong (got value)`.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from edgeft.errors import EdgeftError
from edgeft.tasks import DEFAULT_TASK, TASKS

METHODS = ("lora", "dora", "ia3", "prefix", "ptuning-v2", "full", "head-only")


class Strict(BaseModel):
    # inf and nan are never meant (`epochs: .inf`, `1e400`): refuse them everywhere.
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)


class ModelSpec(Strict):
    name: str = "minilm"
    """`minilm` (the offline all-MiniLM-L6-v2), `tiny-bert` (random 2-layer BERT for tests), a local HF folder,
    or a hub id (needs network)."""
    task: str = DEFAULT_TASK
    """What the model is tuned for (`edgeft.tasks.TASKS`): `sequence-classification` (one label per text) or
    `token-classification` (one BIO tag per word: named entities)."""
    pooling: Literal["auto", "mean", "cls"] = "auto"
    """Sentence classification: how token states become one vector; `auto` uses the model's own
    (sentence-transformers folders say mean)."""
    normalize: bool = True
    """Sentence classification: L2-normalise the pooled vector before the head (a cosine classifier)."""
    logit_scale: PositiveFloat = 20.0
    """Sentence classification: fixed scale applied after normalisation, so the softmax can be sharp."""

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str) -> str:
        if task not in TASKS:
            raise ValueError(f"must be one of {', '.join(TASKS)}")
        return task


GROUP_REFERENCE = re.compile(r"\\(\d)")


class CompletionRule(Strict):
    """Something a training completion must say when its prompt gives it."""

    when: str
    """Regular expression searched in the prompt; each match is one thing the completion must say."""
    require: str
    """Regular expression the completion must contain (case-insensitive); `\\1`, `\\2`, ... stand for that match's
    groups, taken literally."""

    @model_validator(mode="after")
    def _compiles(self):
        groups = _compiled_when(self.when).groups
        wanted = max((int(ref) for ref in GROUP_REFERENCE.findall(self.require)), default=0)
        if wanted > groups:
            raise ValueError(f"require: names group {wanted} but `when` has {groups}: {self.require!r}")
        try:
            re.compile(GROUP_REFERENCE.sub("x", self.require))
        except re.error as error:
            raise ValueError(f"require: not a regular expression ({error}): {self.require!r}") from None
        return self

    def completion_pattern(self, match: re.Match) -> str:
        """`require` with the prompt match's groups in place of `\\1`, `\\2`, ..., escaped."""
        return GROUP_REFERENCE.sub(lambda ref: re.escape(match.group(int(ref.group(1))) or ""), self.require)


class RepeatRule(Strict):
    """Training rows shown more than once per epoch."""

    when: str
    """Regular expression searched in the prompt."""
    times: int = Field(ge=2, le=100)
    """How many times each training row whose prompt matches appears per epoch."""

    @model_validator(mode="after")
    def _compiles(self):
        _compiled_when(self.when)
        return self


def _compiled_when(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ValueError(f"when: not a regular expression ({error}): {pattern!r}") from None


class DataSpec(Strict):
    train: str
    """Training data: a .csv, .json, .jsonl or .parquet file, or a datasets hub id."""
    test: str | None = None
    """Test data (same formats). Without it, metrics are reported on validation only."""
    validation: str | float = 0.1
    """A file, or the fraction of train held out, stratified by label."""
    validation_seed: int | None = Field(None, ge=0, lt=1 << 32)
    """Seed of the held-out fraction (default: `training.seed`). Fix it to compare training seeds on the same
    validation rows, and to train each on the same rows."""
    text_column: str | None = None
    """Column holding the input: the text (default `text`), for token classification in JSONL the list of words
    (default `tokens`), for causal-lm the prompt (default `text`)."""
    label_column: str | None = None
    """Column holding the truth: the class name or id (default `label`), for token classification in JSONL the list
    of BIO tags (default `tags`; CoNLL files need no columns), for causal-lm the completion (default `label`; a
    prompt may repeat once per reference completion)."""
    max_length: PositiveInt = Field(128, le=1 << 16)
    """Tokens per input; longer texts are truncated (at most the model's positions, checked when it loads)."""
    substitutions: list[list[str]] = []
    """Causal LM: groups of interchangeable values, e.g. the values one attribute of a data-to-text domain takes
    (`[coffee shop, pub, restaurant]`). A training row whose prompt names one value of a group, and whose completion
    names it too, has it replaced in both by another value of the group at `substitution_rate`, so the model learns
    to copy the prompt's value instead of the training data's few. Validation and test rows stay as read."""
    substitution_rate: float = Field(0.5, ge=0.0, le=1.0)
    """Causal LM: the share of eligible training rows whose value is replaced, per group."""
    require_in_completion: list[CompletionRule] = []
    """Causal LM: training rows are kept only when their completion says, for every match of each rule's `when` in
    the prompt, the rule's `require` (the cleaning of a data-to-text set whose references leave values out, so the
    model learns to mention them all). Validation and test rows stay as read."""
    repeat: list[RepeatRule] = []
    """Causal LM: training rows whose prompt matches a rule's `when` appear `times` per epoch (the first rule that
    matches counts; after `require_in_completion`, before `substitutions`, so each copy draws its own
    substitution), so a kind of input rarer in the training data than in use weighs more. Validation and test rows
    stay as read."""

    def held_out_seed(self, training_seed: int) -> int:
        """The seed that draws the held-out validation fraction."""
        return training_seed if self.validation_seed is None else self.validation_seed

    @model_validator(mode="after")
    def _fraction_in_range(self):
        if isinstance(self.validation, float) and not 0.0 < self.validation < 0.5:
            raise ValueError(f"data.validation: a fraction must be in (0, 0.5) (got {self.validation})")
        if isinstance(self.validation, str) and _is_number(self.validation):
            raise ValueError(f"data.validation: {self.validation!r} is quoted: write {self.validation.strip()} "
                             "without quotes for a fraction, or give a file")
        for index, group in enumerate(self.substitutions):
            if len(set(group)) < 2 or not all(value.strip() for value in group):
                raise ValueError(f"data.substitutions[{index}]: a group needs two or more distinct, non-empty values "
                                 f"(got {group})")
        if self.text_column is not None and self.text_column == self.label_column:
            raise ValueError(f"data.label_column: the same column as data.text_column ({self.text_column!r})")
        return self


class MethodSpec(Strict):
    kind: Literal["lora", "dora", "ia3", "prefix", "ptuning-v2", "full", "head-only"] = "lora"
    """`lora`/`dora`/`ia3` (mergeable adapters), `prefix`/`ptuning-v2` (trained virtual tokens, not mergeable),
    `full` (every weight) or `head-only` (frozen encoder: the before-tuning baseline)."""
    r: PositiveInt = Field(16, le=4096)
    """LoRA/DoRA rank; higher fits more and costs more."""
    alpha: PositiveFloat = 32
    """LoRA/DoRA scaling numerator (the update is scaled by alpha / r)."""
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    """Dropout on the adapter input."""
    target_modules: str | list[str] = "auto"
    """Module names to adapt; `auto` picks per architecture (all attention and FFN projections for BERT)."""
    num_virtual_tokens: PositiveInt = Field(16, le=4096)
    """Virtual tokens for `prefix` and `ptuning-v2`."""
    adapter: str | None = None
    """Continue training a saved adapter (a run's `adapter/` folder) instead of a fresh one: `lora`/`dora` only, its
    rank and alpha must be `r` and `alpha`; a classifier's head comes from the same folder. None: a fresh adapter."""

    @model_validator(mode="after")
    def _adapter_is_lora(self) -> MethodSpec:
        if self.adapter is not None and self.kind not in ("lora", "dora"):
            raise ValueError(f"method.adapter: continuing a saved adapter needs kind lora or dora (got {self.kind!r})")
        return self


class TrainingSpec(Strict):
    learning_rate: PositiveFloat = 5.0e-4
    """Peak learning rate for the tuned encoder weights (adapters, or all weights for `full`)."""
    head_learning_rate: PositiveFloat | None = 5.0e-3
    """Learning rate of the new classification head; a fresh head learns faster than adapters. None: same."""
    batch_size: PositiveInt = Field(32, le=1 << 16)
    """Examples per step per device."""
    epochs: PositiveFloat = Field(3, le=10_000)
    """Passes over the training data."""
    warmup_ratio: float = Field(0.06, ge=0.0, lt=1.0)
    """Fraction of steps with linear warm-up."""
    weight_decay: float = Field(0.01, ge=0.0)
    """AdamW weight decay."""
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    """Causal LM: share of each next-token target's probability spread over the vocabulary in the training loss (the
    Trainer's `label_smoothing_factor`; the validation loss that chooses checkpoints is smoothed alike; reported
    perplexity is not)."""
    neftune_alpha: PositiveFloat | None = Field(None, le=1_000)
    """Causal LM: NEFTune (Jain et al., 2023), uniform noise of this scale over sqrt(length x width) added to the
    input embeddings while training only (the Trainer's `neftune_noise_alpha`; the paper used 5-15). None: off."""
    seed: int = Field(42, ge=0, lt=1 << 32)
    """Seed for initialisation, shuffling and (unless `data.validation_seed` is set) the held-out split."""
    checkpoint_metric: Literal["loss", "bleu"] | None = None
    """Causal LM: the validation figure that keeps the best checkpoint and stops early: `loss` (the default) or
    `bleu`, corpus BLEU of greedy generations for the validation prompts at the scoring length, generated at every
    evaluation (the figure the run is judged by, at the cost of a generation pass per evaluation)."""
    average_checkpoints: PositiveInt = Field(1, le=1_000)
    """Causal LM with LoRA or full tuning: keep the mean of the weights of the last N checkpoints (one per evaluation,
    plus the final step) instead of the best one; 1 keeps the best. LoRA adapters are combined exactly, by
    concatenation (peft's `cat`: the kept adapter's rank is N x r, the merged model's size does not change)."""
    early_stopping_patience: PositiveInt | None = Field(2, le=1_000_000)
    """Stop after this many evaluations without validation-accuracy gain. None disables."""
    eval_steps: PositiveInt | None = Field(None, le=1 << 40)
    """Evaluate and checkpoint every N steps; None: once per epoch."""
    max_steps: PositiveInt | None = Field(None, le=1 << 40)
    """Hard cap on optimizer steps (overrides epochs); for smoke tests."""
    group_by_length: bool = False
    """Batch rows of similar length together (less padding, less compute when lengths vary a lot; the batches
    are still shuffled)."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """Training arithmetic: `auto` is bfloat16 mixed precision on a GPU that supports it and float32 elsewhere;
    `fp32` always float32; `bf16` bfloat16 mixed precision on such a GPU or on a CPU with native bfloat16
    (AVX512-BF16 or AMX), an error elsewhere."""


class GenerationSpec(Strict):
    """How a causal LM (`model.task: causal-lm`) sees its prompts and how its generations are scored."""

    prompt_template: str = "{prompt}\n"
    """The text around each prompt; `{prompt}` marks where the data's prompt goes."""
    chat_template: bool = False
    """Wrap the templated prompt as the user turn of the model's chat template (for instruction-tuned models)."""
    max_new_tokens: PositiveInt = 64
    """Greedy tokens generated per prompt for BLEU / ROUGE-L (and the export's greedy check)."""
    eval_prompts: PositiveInt | None = None
    """Score at most this many distinct prompts per split (None: all of them)."""
    samples: int = Field(5, ge=0)
    """Sample generations shown in the model card."""

    @model_validator(mode="after")
    def _has_placeholder(self):
        if "{prompt}" not in self.prompt_template:
            raise ValueError(f"generation.prompt_template: must contain {{prompt}} (got {self.prompt_template!r})")
        return self


class Recipe(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    """Run name; also the default output folder `runs/<name>`."""
    model: ModelSpec = ModelSpec()
    """The pretrained model and its classification head."""
    data: DataSpec
    """Where the examples are and which columns hold text and label."""
    method: MethodSpec = MethodSpec()
    """How the model is tuned."""
    training: TrainingSpec = TrainingSpec()
    """Optimisation settings."""
    generation: GenerationSpec | None = None
    """Causal LMs only: prompt format and generation settings for scoring (None: the defaults)."""
    output: str | None = None
    """Run folder; default `runs/<name>`."""
    compress: dict[str, Any] | None = None
    """Settings for `edgeft compress` (validated there)."""

    @model_validator(mode="after")
    def _causal_lm_only_options(self):
        # Label smoothing too: a classifier returns bare logits without labels, which the Trainer's smoother
        # cannot read; NEFTune: the Trainer finds the input embeddings of transformers and peft models only, and a
        # classifier is edgeft's own module.
        for section, field in (("data", "substitutions"), ("data", "require_in_completion"), ("data", "repeat"),
                               ("training", "label_smoothing"), ("training", "checkpoint_metric"),
                               ("training", "neftune_alpha")):
            if getattr(getattr(self, section), field) and not TASKS[self.model.task].generates:
                raise ValueError(f"{section}.{field}: only a causal LM takes it "
                                 f"(model.task is {self.model.task})")
        if self.training.average_checkpoints > 1:
            if not TASKS[self.model.task].generates:
                raise ValueError(f"training.average_checkpoints: only a causal LM takes it (model.task is "
                                 f"{self.model.task})")
            if self.method.kind not in ("lora", "full"):
                raise ValueError(f"training.average_checkpoints: averages LoRA or full tuning, not "
                                 f"{self.method.kind} (DoRA's magnitudes do not average exactly)")
        return self

    @property
    def output_dir(self) -> Path:
        return Path(self.output or f"runs/{self.name}")


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, override (`key.path=value`, the value parsed as YAML) and validate a recipe.

    Raises:
        EdgeftError: listing every problem at once.
    """
    path = Path(path)
    raw = read_yaml_mapping(path, "recipe")
    problems = [problem for item in overrides for problem in _apply_override(raw, item)]
    if problems:
        raise EdgeftError([f"--set {problem}" for problem in problems])
    return validate_recipe(raw, source=str(path))


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last one silently:
    a second `method:` section would replace the first)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark)
            if isinstance(key, (str, int, float, bool)):
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, where: str):
    """Safe-load YAML text with duplicate keys refused; EdgeftError naming `where` and the line otherwise."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise EdgeftError(f"{where}: not valid YAML: {' '.join(str(error).split())}") from None
    except RecursionError:
        raise EdgeftError(f"{where}: not valid YAML: nested too deeply") from None


def read_yaml_mapping(path: Path, kind: str) -> dict:
    """A YAML file that must hold a mapping (a recipe, a device profile), with clear errors otherwise."""
    if not path.is_file():
        raise EdgeftError(f"{path}: no such {kind} file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise EdgeftError(f"{path}: line {line}: not UTF-8 (byte {data[error.start]:#04x} at offset {error.start}); "
                          "save the file as UTF-8") from None
    raw = parse_yaml(text, str(path))
    if not isinstance(raw, dict):
        raise EdgeftError(f"{path}: a {kind} is a mapping of fields (got {type(raw).__name__})")
    return raw


def validate_recipe(raw: dict, source: str = "recipe") -> Recipe:
    """Validate a recipe mapping, turning pydantic's errors into one line per field."""
    try:
        return Recipe.model_validate(raw)
    except ValidationError as error:
        raise EdgeftError([f"{source}: {line}" for line in describe_errors(error)]) from None


def _apply_override(raw: dict, item: str) -> list[str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        return [f"{item!r}: expected key.path=value"]
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            return [f"{key}: {part} is not a section"]
    try:
        node[parts[-1]] = parse_yaml(value, f"{key}={value}") if value else None
    except EdgeftError as error:
        return error.problems
    return []


def _shown(part) -> str:
    """A field name as typed, or quoted when it is empty, padded or holds characters a terminal hides."""
    text = str(part)
    return text if text and text.isprintable() and text.strip() == text else repr(text)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def describe_errors(error: ValidationError, root: type[BaseModel] | None = None) -> list[str]:
    """One `field.path: problem (got value)` line per pydantic error, with a suggestion for unknown fields."""
    lines = []
    for item in error.errors():
        where = ".".join(_shown(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown field{_suggestion(item['loc'], root or Recipe)}")
        elif item["type"] == "missing":
            lines.append(f"{where}: required field is missing")
        else:
            message = item["msg"].removeprefix("Value error, ")
            shown = item.get("input")
            lines.append(f"{where}: {message}" + ("" if isinstance(shown, dict) else f" (got {shown!r})"))
    return lines


def _suggestion(location: tuple, model: type[BaseModel]) -> str:
    for part in location[:-1]:
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
    key = str(location[-1])
    close = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.5)
    close = close or sorted((f for f in model.model_fields if _abbreviates(key, f)), key=len)[:1]
    prefix = ".".join(str(part) for part in location[:-1])
    allowed = ", ".join(model.model_fields)
    if close:
        return f"; did you mean {prefix + '.' if prefix else ''}{close[0]}?"
    return f"; allowed: {allowed}"


def _abbreviates(short: str, name: str) -> bool:
    """`lr` abbreviates `learning_rate`: same first letter, the rest in order."""
    rest = iter(name)
    return bool(short) and short[0] == name[0] and all(char in rest for char in short)


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML, every default spelled out."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
