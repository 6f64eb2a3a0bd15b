"""`edgeft package`: a wheel that carries one bundle and depends on the light runtime with its backend.

On the device: `pip install edgeft_bundle_x-0.1.0-py3-none-any.whl`, then `import edgeft_bundle_x; edgeft_bundle_x.load()`
or `python -m edgeft_bundle_x "some text"`. The wheel is built by setuptools (through `pip wheel`) from a generated
project, so it is a plain, standard wheel.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import edgeft
from edgeft.errors import EdgeftError
from edgeft.runtime.bundle import MANIFEST, read_checked
from edgeft.runtime.signing import SIGNATURE, load_private_key, sign_bundle

# The extra of edgeft that brings the one backend a format needs on the device.
RUNTIME_EXTRAS = {"onnx": "onnx", "openvino": "openvino", "tflite": "tflite-runtime"}

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "{version}"
description = "{description}"
requires-python = ">=3.10"
dependencies = ["edgeft[{extra}]>={edgeft_version}"]

[tool.setuptools]
packages = ["{module}"]

[tool.setuptools.package-data]
{module} = ["bundle/*"]
"""

INIT = '''\
"""{description}. `load()` returns an `edgeft.runtime.Predictor` for the bundle inside this package."""

from pathlib import Path

BUNDLE = Path(__file__).parent / "bundle"


def load(threads=None, self_check=True, trusted_keys=None):
    """Check and load the packaged bundle (signature with trusted keys, sha256 of every file, self-check)."""
    from edgeft.runtime import load as load_bundle

    return load_bundle(BUNDLE, threads=threads, self_check=self_check, trusted_keys=trusted_keys)
'''

MAIN = '''\
import sys

from edgeft.runtime.__main__ import main

from . import BUNDLE

sys.exit(main(["predict", str(BUNDLE), *sys.argv[1:]]))
'''


def package(
    bundle: str | Path, output: str | Path = "dist", name: str | None = None, version: str = "0.1.0",
    sign_key: str | Path | None = None,
) -> Path:
    """Build the wheel for a bundle into `output`.

    Args:
        bundle: a bundle folder; it is checked (hashes, refusals) before anything is built.
        output: the folder the wheel is written to.
        name: distribution name; default `edgeft-bundle-<run>-<format>-<precision>`.
        version: the wheel's version.
        sign_key: an Ed25519 private key file; the packaged manifest is signed with it (the wheel then also
            depends on `edgeft[sign]`, which the device needs to verify).

    Returns:
        The wheel file.

    Raises:
        EdgeftError: a bundle that does not pass its checks, a bad name, or a failed build.
    """
    if sign_key:
        load_private_key(sign_key)
    folder, manifest = read_checked(bundle)
    name = name or _default_name(manifest)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]*", name):
        raise EdgeftError(f"--name: {name!r} is not a valid distribution name (letters, digits, . _ -)")
    module = re.sub(r"[^A-Za-z0-9]+", "_", name).lower()
    description = f"edgeft bundle: {manifest['format']} {manifest.get('precision', '')} classifier"
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgeft-package-") as tmp:
        project = Path(tmp) / "project"
        package_dir = project / module
        shutil.copytree(folder, package_dir / "bundle", ignore=_only(manifest))
        if sign_key:
            sign_bundle(package_dir / "bundle", sign_key)
        signed = (package_dir / "bundle" / SIGNATURE).is_file()
        (project / "pyproject.toml").write_text(
            PYPROJECT.format(
                name=name,
                version=version,
                description=description,
                extra=RUNTIME_EXTRAS[manifest["format"]] + (",sign" if signed else ""),
                edgeft_version=edgeft.__version__,
                module=module,
            )
        )
        (package_dir / "__init__.py").write_text(INIT.format(description=description))
        (package_dir / "__main__.py").write_text(MAIN)
        built = Path(tmp) / "wheel"
        # No build isolation: setuptools comes from this environment, so packaging works offline.
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(built)]
        result = subprocess.run([*command, str(project)], capture_output=True, text=True)
        if result.returncode != 0:
            raise EdgeftError(f"building the wheel failed:\n{result.stderr.strip()}", exit_code=1)
        wheel = next(built.glob("*.whl"))
        target = output / wheel.name
        shutil.move(str(wheel), target)
    return target


def _default_name(manifest: dict) -> str:
    run = Path(manifest.get("source", {}).get("run_dir") or "model").name
    return re.sub(r"[^A-Za-z0-9]+", "-", f"edgeft-bundle-{run}-{manifest['format']}-{manifest['precision']}").lower()


def _only(manifest: dict):
    """copytree filter: the listed files and the manifest, nothing else that may lie in the folder."""
    keep = {*manifest["files"], MANIFEST, SIGNATURE}

    def ignore(directory, names):
        return [name for name in names if name not in keep]

    return ignore
