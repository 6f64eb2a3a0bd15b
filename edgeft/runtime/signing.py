"""Ed25519 signatures over a bundle's manifest (with the `cryptography` package), like signify/minisign.

The signature covers the exact bytes of `manifest.json`; the manifest lists the sha256 of every other file, so a
valid signature authenticates the whole bundle: model, tokenizer, labels and self-check references. It lives beside
the manifest in `manifest.sig` (JSON: algorithm, key id, base64 signature). Keys are PEM files made by
`edgeft keygen`: `NAME.key` (private, mode 0600) signs on the build host, `NAME.pub` verifies on the device.

Trusted keys come from `load(..., trusted_keys=[...])` or the `EDGEFT_TRUSTED_KEYS` environment variable (public key
files or folders of `*.pub`, separated by the OS path separator). When any are configured, an unsigned bundle or
one signed by another key is refused; without them, signatures are not checked.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from edgeft.errors import EdgeftError, missing_extra

SIGNATURE = "manifest.sig"
TRUSTED_KEYS_ENV = "EDGEFT_TRUSTED_KEYS"
ALGORITHM = "ed25519"
MAX_SIGNATURE_BYTES = 4096


def _serialization():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise missing_extra("Signing or verifying bundles", "sign") from None
    return serialization, ed25519


def keygen(stem: str | Path, overwrite: bool = False) -> tuple[Path, Path]:
    """Write a new key pair `STEM.key` (private, 0600) and `STEM.pub`; returns both paths."""
    serialization, ed25519 = _serialization()
    private_path, public_path = Path(f"{stem}.key"), Path(f"{stem}.pub")
    existing = [str(path) for path in (private_path, public_path) if path.exists()]
    if existing and not overwrite:
        raise EdgeftError(f"{', '.join(existing)} already exists; pass --overwrite to replace the key pair")
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    private_path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private_pem)
    public_path.write_bytes(public_pem)
    return private_path, public_path


def load_private_key(key_file: str | Path):
    """An Ed25519 private key from a PEM file, with a clear error for anything else (checked before long work)."""
    serialization, ed25519 = _serialization()
    key_file = Path(key_file)
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise EdgeftError(f"--sign: {key_file}: not a readable, unencrypted PEM private key ({error})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise EdgeftError(f"--sign: {key_file}: not an Ed25519 key (make one with `edgeft keygen`)")
    return key


def sign_bundle(folder: Path, key_file: str | Path) -> Path:
    """Sign `folder/manifest.json` with a private key file; writes `folder/manifest.sig`."""
    serialization, _ = _serialization()
    key = load_private_key(key_file)
    manifest = (folder / "manifest.json").read_bytes()
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    record = {"algorithm": ALGORITHM, "key_id": key_id(public),
              "signature": base64.b64encode(key.sign(manifest)).decode()}
    path = folder / SIGNATURE
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def key_id(raw_public_key: bytes) -> str:
    """A short fingerprint naming a key in messages: the first 16 hex digits of its sha256."""
    return hashlib.sha256(raw_public_key).hexdigest()[:16]


def trusted_keys_from(keys=None) -> list:
    """Public keys from `keys` (paths, PEM bytes/str or key objects), else from EDGEFT_TRUSTED_KEYS; [] if none."""
    if keys is None:
        setting = os.environ.get(TRUSTED_KEYS_ENV, "").strip()
        keys = [part for part in setting.split(os.pathsep) if part.strip()]
    if isinstance(keys, (str, bytes, Path)):
        keys = [keys]
    if not keys:
        return []
    serialization, ed25519 = _serialization()
    loaded = []
    for item in keys:
        if isinstance(item, ed25519.Ed25519PublicKey):
            loaded.append(item)
            continue
        for source, pem in _pem_sources(item):
            try:
                key = serialization.load_pem_public_key(pem)
            except ValueError as error:
                raise EdgeftError(f"trusted key {source}: not a PEM public key ({error})") from None
            if not isinstance(key, ed25519.Ed25519PublicKey):
                raise EdgeftError(f"trusted key {source}: not an Ed25519 public key")
            loaded.append(key)
    return loaded


def _pem_sources(item) -> list[tuple[str, bytes]]:
    if isinstance(item, bytes) or (isinstance(item, str) and item.lstrip().startswith("-----BEGIN")):
        return [("(given as text)", item.encode() if isinstance(item, str) else item)]
    path = Path(item).expanduser()
    files = sorted(path.glob("*.pub")) if path.is_dir() else [path]
    if not files or not all(file.is_file() for file in files):
        raise EdgeftError(f"trusted key {path}: no such public key file (or folder of *.pub)")
    return [(str(file), file.read_bytes()) for file in files]


def verify_bundle(folder: Path, manifest_bytes: bytes, keys: list) -> str | None:
    """None when `manifest_bytes` carry a valid signature by one of `keys`, else what is wrong."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization

    path = folder / SIGNATURE
    if not path.is_file() or path.is_symlink():
        return f"unsigned: no {SIGNATURE}, and trusted keys are configured"
    try:
        if path.stat().st_size > MAX_SIGNATURE_BYTES:
            raise ValueError("too large")
        record = json.loads(path.read_bytes())
        if record.get("algorithm") != ALGORITHM:
            raise ValueError(f"algorithm {record.get('algorithm')!r} is not {ALGORITHM}")
        signature = base64.b64decode(record["signature"], validate=True)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
        return f"{SIGNATURE}: unreadable ({type(error).__name__}: {str(error)[:100]})"
    for key in keys:
        try:
            key.verify(signature, manifest_bytes)
            return None
        except InvalidSignature:
            continue
    named = ", ".join(key_id(k.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
                      for k in keys)
    return (f"{SIGNATURE}: the signature does not verify with any trusted key ({named}): the manifest was modified "
            "after signing, or it was signed by another key")
