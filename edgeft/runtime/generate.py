"""Generate text on the device from a causal-LM bundle: numpy, `tokenizers` and one backend, with a KV cache.

The bundle's graph takes `input_ids`, `attention_mask`, `position_ids` and the past keys/values of every layer and
returns logits and the present keys/values (optimum's decoder-with-past layout; a TFLite bundle's prefill/decode
signatures are wrapped to the same step). The loop below feeds the prompt
once (prefill), then one token per step with the cache: greedy (temperature 0) or nucleus sampling.

    >>> generator = edgeft.runtime.load("runs/e2e/bundles/onnx-int4")
    >>> for piece in generator.stream("name[The Eagle], food[French]", max_new_tokens=40):
    ...     print(piece, end="", flush=True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from edgeft.errors import missing_extra
from edgeft.runtime.bundle import TOKENIZER, BundleError, read_checked

# step(input_ids, attention_mask, position_ids, past) -> (logits (1, n, vocab), present), past/present by layer
Step = Callable[[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]], tuple[np.ndarray, list[np.ndarray]]]
PROMPT = "{prompt}"


class PromptTooLong(BundleError):
    """A prompt that does not fit the bundle's context (bad input, exit code 2)."""


def load_onnx_decoder(folder: Path, manifest: dict, threads: int | None) -> tuple[Step, dict]:
    """ONNX Runtime on CPU; the cache goes in and out as numpy arrays."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise missing_extra("Running an ONNX bundle", "onnx") from None
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    decoder = manifest["decoder"]
    past_names, outputs = decoder["past_names"], ["logits", *decoder["present_names"]]
    accepted = {item.name for item in session.get_inputs()}

    def step(input_ids, attention_mask, position_ids, past):
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}
        feeds = {name: value for name, value in feeds.items() if name in accepted}
        results = session.run(outputs, {**feeds, **dict(zip(past_names, past))})
        return results[0], results[1:]

    return step, {"onnxruntime": ort.__version__}


def load_openvino_decoder(folder: Path, manifest: dict, threads: int | None) -> tuple[Step, dict]:
    """OpenVINO on CPU with the manifest's compile properties (fp32 bundles pin f32: this CPU defaults to bf16)."""
    try:
        import openvino as ov
    except ImportError:
        raise missing_extra("Running an OpenVINO bundle", "openvino") from None
    config = dict(manifest.get("runtime_config", {}))
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(str(folder / "model.xml"), "CPU", config)
    request = compiled.create_infer_request()
    decoder = manifest["decoder"]
    past_names, present_names = decoder["past_names"], decoder["present_names"]
    accepted = {name for port in compiled.inputs for name in port.get_names()}

    def step(input_ids, attention_mask, position_ids, past):
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}
        feeds = {name: value for name, value in feeds.items() if name in accepted}
        result = request.infer({**feeds, **dict(zip(past_names, past))})
        # The request reuses its output buffers between calls: copy what the next step feeds back.
        logits = np.array(result[compiled.output("logits")], copy=True)
        return logits, [np.array(result[compiled.output(name)], copy=True) for name in present_names]

    return step, {"openvino": ov.get_version()}


def load_tflite_decoder(folder: Path, manifest: dict, threads: int | None) -> tuple[Step, dict]:
    """LiteRT with the bundle's `prefill_<n>` and `decode` signatures over a fixed-size cache (positions are written
    in place). A prompt is prefilled in chunks of n tokens: a short one padded (padded positions lie after every
    real one, so causal masking hides them until decoding overwrites them), the last of a long one moved back to
    end at the prompt's end (its overlap recomputes the same keys and values)."""
    from edgeft.runtime.backends import tflite_interpreter, tflite_runners

    Interpreter, versions = tflite_interpreter()
    decoder = manifest["decoder"]
    names, chunk = decoder["past_names"], int(decoder["prefill_tokens"])
    runners = tflite_runners(Interpreter, folder, threads, [decoder["prefill_signature"], decoder["decode_signature"]])
    prefill, decode = runners[decoder["prefill_signature"]], runners[decoder["decode_signature"]]

    def step(input_ids, attention_mask, position_ids, past):
        ids, positions = input_ids[0].astype(np.int32), position_ids[0].astype(np.int32)
        cache = dict(zip(names, past))
        if len(ids) == 1:
            out = decode(tokens=ids[None], input_pos=positions, **cache)
            return np.array(out["logits"], copy=True), [np.array(out[name], copy=True) for name in names]
        pieces, done = [], 0
        while done < len(ids):
            start = done if len(ids) - done >= chunk or len(ids) < chunk else len(ids) - chunk
            tokens = np.zeros((1, chunk), dtype=np.int32)
            piece = ids[start : start + chunk]
            tokens[0, : len(piece)] = piece
            out = prefill(tokens=tokens, input_pos=np.arange(positions[start], positions[start] + chunk,
                                                             dtype=np.int32), **cache)
            cache = {name: np.array(out[name], copy=True) for name in names}
            pieces.append(np.array(out["logits"][0, done - start : len(piece)], copy=True))
            done = start + len(piece)
        return np.concatenate(pieces)[None], [cache[name] for name in names]

    return step, versions


DECODER_BACKENDS = {"onnx": load_onnx_decoder, "openvino": load_openvino_decoder, "tflite": load_tflite_decoder}


def load_generator(bundle_dir: str | Path, threads: int | None = None, self_check: bool | str = True) -> "Generator":
    """Check a causal-LM bundle (hashes, no pickles) and load it for generation; see `edgeft.runtime.load`."""
    folder, manifest = read_checked(bundle_dir)
    return open_generator(folder, manifest, threads, self_check)


def open_generator(folder: Path, manifest: dict, threads: int | None, self_check: bool | str) -> "Generator":
    """A Generator for a bundle folder whose manifest `read_checked` has accepted; runs its self-check.

    Raises:
        BundleError: a format without a generation backend, or a failed self-check.
    """
    import platform
    import warnings

    if manifest["format"] not in DECODER_BACKENDS:
        raise BundleError(f"{folder}: generation runs on {', '.join(DECODER_BACKENDS)} bundles "
                          f"(got {manifest['format']})")
    step, versions = DECODER_BACKENDS[manifest["format"]](folder, manifest, threads)
    versions = {"python": platform.python_version(), "numpy": np.__version__, **versions}
    generator = Generator(folder, manifest, step, versions)
    if self_check and manifest["decoder"].get("self_check"):
        problem = generator.self_check()
        if problem and self_check == "warn":
            warnings.warn(problem, RuntimeWarning, stacklevel=3)
        elif problem:
            raise BundleError(problem, exit_code=1)
    return generator


class Generator:
    """A loaded causal-LM bundle: `stream`/`generate` text, `token_stream` ids, `logits` for checks."""

    def __init__(self, folder: Path, manifest: dict, step: Step, runtime_versions: dict):
        from tokenizers import Tokenizer

        self.manifest = manifest
        self.runtime_versions = runtime_versions
        decoder = manifest["decoder"]
        self.context_length = int(decoder["context_length"])
        self.prompt_format: str = decoder["prompt_format"]
        self.eos_ids = set(decoder["eos_ids"])
        # optimum's graphs grow the cache from empty; a TFLite bundle's cache has the fixed shape it was exported with
        self._cache_shape = tuple(decoder.get("cache_shape")
                                  or (1, int(decoder["kv_heads"]), 0, int(decoder["head_dim"])))
        self._cache_tensors = len(decoder["past_names"])
        self._step = step
        self.tokenizer = Tokenizer.from_file(str(folder / TOKENIZER))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()

    def encode(self, prompt: str, raw: bool = False) -> list[int]:
        """Token ids of the prompt in the bundle's prompt format (`raw`: the text as given)."""
        text = prompt if raw else self.prompt_format.replace(PROMPT, prompt)
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def logits(self, ids: list[int]) -> np.ndarray:
        """Teacher-forced logits (len(ids), vocab) of one sequence, in one call with an empty cache."""
        self._check_length(len(ids), 0)
        logits, _ = self._run(np.asarray([ids], dtype=np.int64), 0, self._empty_cache())
        return logits[0]

    def token_stream(self, ids: list[int], max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
                     seed: int | None = None, ignore_eos: bool = False) -> Iterator[int]:
        """New token ids after the prompt `ids`, one per step, until eos, `max_new_tokens` or the context is full
        (`ignore_eos`: go on past eos, as a benchmark of a fixed output length does).

        Raises:
            PromptTooLong: the prompt alone fills the context.
        """
        self._check_length(len(ids), max_new_tokens)
        rng = np.random.default_rng(seed)
        limit = min(max_new_tokens, self.context_length - len(ids))
        logits, cache = self._run(np.asarray([ids], dtype=np.int64), 0, self._empty_cache())
        length = len(ids)
        for _ in range(limit):
            token = pick_token(logits[0, -1], temperature, top_p, rng)
            if token in self.eos_ids and not ignore_eos:
                return
            yield token
            if length + 1 >= self.context_length:
                return
            logits, cache = self._run(np.asarray([[token]], dtype=np.int64), length, cache)
            length += 1

    def stream(self, prompt: str, max_new_tokens: int = 64, temperature: float = 0.0, top_p: float = 1.0,
               stop: list[str] | tuple[str, ...] | str = (), seed: int | None = None, raw: bool = False) -> Iterator[str]:
        """Generated text in pieces as tokens arrive; stops at eos, a `stop` string (not included) or the limit."""
        from tokenizers.decoders import DecodeStream

        stops = [stop] if isinstance(stop, str) else [s for s in stop if s]
        decoder = DecodeStream(skip_special_tokens=True)
        text, emitted = "", 0
        for token in self.token_stream(self.encode(prompt, raw), max_new_tokens, temperature, top_p, seed):
            text += decoder.step(self.tokenizer, token) or ""
            found = [index for index in (text.find(s, max(0, emitted - len(s))) for s in stops) if index >= 0]
            if found:
                if min(found) > emitted:
                    yield text[emitted:min(found)]
                return
            # Hold back a tail that could still become a stop string, so no piece of a stop string is emitted.
            ready = len(text) - _partial_stop(text, stops)
            if ready > emitted:
                yield text[emitted:ready]
                emitted = ready
        if len(text) > emitted:
            yield text[emitted:]

    def generate(self, prompt: str, max_new_tokens: int = 64, temperature: float = 0.0, top_p: float = 1.0,
                 stop: list[str] | tuple[str, ...] | str = (), seed: int | None = None, raw: bool = False) -> str:
        """The whole generated text (see `stream`)."""
        return "".join(self.stream(prompt, max_new_tokens, temperature, top_p, stop, seed, raw))

    def self_check(self) -> str | None:
        """Run the manifest's reference sequence; a message when this runtime disagrees with the export host."""
        check = self.manifest["decoder"]["self_check"]
        logits = self.logits(check["ids"])
        top1 = logits.argmax(axis=-1)
        expected_top1 = np.asarray(check["top1"])
        rows = np.arange(len(expected_top1))
        diff = float(np.abs(logits[rows, expected_top1] - np.asarray(check["top1_logits"])).max())
        agreement = float((top1 == expected_top1).mean())
        if diff <= check["tolerance"] and agreement >= check["min_top1_agreement"]:
            return None
        versions = ", ".join(f"{name} {version}" for name, version in self.runtime_versions.items())
        return (
            f"self-check failed: this runtime ({versions}) gives logits {diff:.3g} away from the expected ones "
            f"(tolerance {check['tolerance']:.3g}) and top-1 agreement {agreement:.0%}; the backend build on this "
            "device is broken or incompatible with this bundle"
        )

    def _run(self, input_ids: np.ndarray, past_length: int, cache: list[np.ndarray]):
        total = past_length + input_ids.shape[1]
        attention_mask = np.ones((1, total), dtype=np.int64)
        position_ids = np.arange(past_length, total, dtype=np.int64)[None, :]
        logits, present = self._step(input_ids, attention_mask, position_ids, cache)
        return np.asarray(logits, dtype=np.float32), present

    def _empty_cache(self) -> list[np.ndarray]:
        return [np.zeros(self._cache_shape, dtype=np.float32) for _ in range(self._cache_tensors)]

    def _check_length(self, prompt_tokens: int, max_new_tokens: int) -> None:
        if prompt_tokens >= self.context_length:
            raise PromptTooLong(
                f"the prompt is {prompt_tokens} tokens; this bundle's context holds {self.context_length} tokens "
                "(prompt and generated text together): shorten the prompt"
            )
        if max_new_tokens < 0:
            raise PromptTooLong(f"max_new_tokens must be at least 0 (got {max_new_tokens})")


def pick_token(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    """Greedy at temperature 0; otherwise sample from the smallest set of tokens whose probability reaches top_p."""
    if temperature <= 0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / temperature
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    order = np.argsort(-probs)
    keep = int(np.searchsorted(np.cumsum(probs[order]), top_p) + 1)
    kept = order[:keep]
    return int(rng.choice(kept, p=probs[kept] / probs[kept].sum()))


def _partial_stop(text: str, stops: list[str]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of a stop string."""
    return max((n for s in stops for n in range(min(len(s) - 1, len(text)), 0, -1) if text.endswith(s[:n])),
               default=0)


def generate_to(write: Callable[[str], object], bundle: str | Path, prompt: str, max_new_tokens: int = 64,
                temperature: float = 0.0, top_p: float = 1.0, stop: list[str] | tuple[str, ...] = (),
                seed: int | None = None, raw: bool = False, threads: int | None = None) -> str:
    """Load a bundle and stream the generation for `prompt` through `write` as it comes (`edgeft generate`).

    Raises:
        BundleError: a bad bundle, or a prompt that does not fit its context.
    """
    generator = load_generator(bundle, threads)
    pieces = []
    for piece in generator.stream(prompt, max_new_tokens, temperature, top_p, stop, seed, raw):
        write(piece)
        pieces.append(piece)
    return "".join(pieces)
