"""Recognise pickle data by content, whatever the file is called (`pytorch_model.bin`, no suffix, in a zip).

Loading a pickle runs code, so a bundle never holds one. The check parses the file's opcodes with `pickletools`
(which only reads, never executes) the way picklescan/fickling do: a stream that starts with a protocol 2-5 header
or imports a callable, and parses cleanly (stack and memo consistent), is a pickle. Zip archives (PyTorch's `torch.save` format) are
opened and each member checked; NumPy `.npy` files can hold pickled objects and are refused outright.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from pathlib import Path

# Opcodes that import a callable: what makes a pickle dangerous (and what protocol 0/1 pickles of code use).
IMPORT_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST"}
# Past this many well-formed opcodes a stream is no accident.
MAX_OPCODES = 10_000
SCAN_BYTES = 1 << 20
MAX_ZIP_MEMBERS = 10_000


def pickle_problem(path: Path) -> str | None:
    """Why `path` is refused as pickle-based data, or None."""
    with open(path, "rb") as handle:
        head = handle.read(SCAN_BYTES)
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy .npy file (it can hold pickled objects): refused"
    if head.startswith(b"PK\x03\x04"):
        member = _pickled_zip_member(path)
        return f"a zip archive holding pickle data ({member}): refused, it can run code when loaded" if member else None
    return "pickle data: refused, it can run code when loaded" if looks_like_pickle(head) else None


def looks_like_pickle(data: bytes) -> bool:
    """True when `data` (a file's first bytes) is a pickle: a protocol 2-5 header or an import, and well-formed."""
    ops: list[tuple[str, object]] = []
    try:
        for opcode, argument, _ in pickletools.genops(io.BytesIO(data)):
            ops.append((opcode.name, argument))
            if opcode.name == "STOP" or len(ops) >= MAX_OPCODES:
                break
    except Exception:  # noqa: BLE001 - any parse error: not a pickle, unless the data ran out
        # A pickle longer than the scanned head runs out of data mid-stream; its header still gives it away.
        return _has_header(ops) and len(ops) >= 3 and len(data) >= SCAN_BYTES
    names = {name for name, _ in ops}
    if not ((_has_header(ops) and len(ops) >= 4) or names & IMPORT_OPCODES):
        return False
    if len(ops) >= MAX_OPCODES:
        return True
    try:  # a real pickle also keeps its stack and memo consistent, which random bytes rarely do
        pickletools.dis(io.BytesIO(data), out=io.StringIO())
    except Exception:  # noqa: BLE001
        return False
    return True


def _has_header(ops: list) -> bool:
    return bool(ops) and ops[0][0] == "PROTO" and ops[0][1] in (2, 3, 4, 5)


def _pickled_zip_member(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist()[:MAX_ZIP_MEMBERS]:
                if info.filename.endswith((".pkl", ".pickle")):
                    return info.filename
                with archive.open(info) as member:
                    if looks_like_pickle(member.read(SCAN_BYTES)):
                        return info.filename
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError):
        return None
    return None
