"""Running a chain of passes with a cache: every output is keyed by its input's key, the pass and its config.

The teacher's key is a fingerprint of its weight files. A pass output lives in `cache/<pass>-<key>/` and is built
once: a second trial (or target, or worker process) asking for the same key waits on a file lock and reuses it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from edgeft.atomic import promote
from edgeft.compress.passes import PASSES

KEY_LENGTH = 16


def model_key(model_dir: Path) -> str:
    """Identifies a model folder's weights without hashing them: names, sizes and modification times."""
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in Path(model_dir).glob("*.safetensors"))
    return _digest(["model", files])


def output_key(input_key: str, name: str, config) -> str:
    """The key of `name` run with `config` on the model keyed `input_key`."""
    return _digest([input_key, name, config.model_dump(mode="json")])


def cached(cache: Path, input_key: str, name: str, config) -> Path | None:
    """The cached output of a pass, or None when it has not been built."""
    folder = cache / f"{name}-{output_key(input_key, name, config)}"
    return folder if folder.is_dir() else None


def apply(name: str, model_dir: Path, input_key: str, config, cache: Path, context) -> tuple[str, Path, float]:
    """Run pass `name` on `model_dir` unless cached; returns (output key, output folder, seconds spent building)."""
    key = output_key(input_key, name, config)
    folder = cache / f"{name}-{key}"
    cache.mkdir(parents=True, exist_ok=True)
    with _lock(cache / f".{folder.name}.lock"):
        if folder.is_dir():
            return key, folder, 0.0
        staged = cache / f".{folder.name}.partial"
        shutil.rmtree(staged, ignore_errors=True)
        started = time.perf_counter()
        built = PASSES[name].run(Path(model_dir), config, staged, context)
        promote(Path(built), folder)
        return key, folder, time.perf_counter() - started


@contextmanager
def _lock(path: Path):
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _digest(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:KEY_LENGTH]
