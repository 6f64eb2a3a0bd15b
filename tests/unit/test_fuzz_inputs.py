"""Counted proof: mutated recipes, device profiles and bundle manifests never end in a traceback.

Hypothesis mutates valid inputs (types, keys, ranges, unicode, YAML syntax, duplicate keys, huge values, bytes that
are not UTF-8). Every outcome is either a valid object or an EdgeftError whose lines name the file and, for a
mutated field, that field. Each test prints what it tried, refused and accepted.
"""

import json
import shutil
from collections import Counter

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_bundle import make_bundle

from edgeft.devices import DEVICES_DIR, load_profile
from edgeft.errors import EdgeftError
from edgeft.recipe import load_recipe
from edgeft.runtime import BundleError, load
from edgeft.runtime.bundle import read_checked

EXAMPLES = 1000
PROVENANCE = {"source", "verification", "created", "edgeft_version", "reference_sample"}
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))

RECIPE = {
    "name": "fuzz", "model": {"name": "tiny-bert", "pooling": "mean"},
    "data": {"train": "train.csv", "test": "test.csv", "validation": 0.2, "text_column": "text",
             "label_column": "category", "max_length": 32},
    "method": {"kind": "lora", "r": 4, "alpha": 8, "dropout": 0.1},
    "training": {"epochs": 2, "batch_size": 8, "learning_rate": 5e-3, "seed": 1},
}

VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**18, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["", "0.15", "1e400", ".inf", "-1", "[1", "!!python/object:os.system", "lora", "tiny-bert"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _paths(mapping, prefix=()):
    for key, value in mapping.items():
        yield (*prefix, key)
        if isinstance(value, dict):
            yield from _paths(value, (*prefix, key))


@st.composite
def mutated_mapping(draw, base):
    """A deep copy of `base` with 1-3 mutations; returns (mapping, dotted paths touched)."""
    mapping = json.loads(json.dumps(base))
    touched = []
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(mapping))
        kind = draw(st.sampled_from(["set", "delete", "new"]))
        path = draw(st.sampled_from(paths)) if paths else ("name",)
        parent = mapping
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if kind == "delete":
            parent.pop(path[-1], None)
        elif kind == "new":
            path = (*path[:-1], draw(st.text(min_size=1, max_size=12)))
            parent[path[-1]] = draw(VALUES)
        else:
            parent[path[-1]] = draw(VALUES)
        touched.append(".".join(map(str, path)))
    return mapping, touched


@st.composite
def mutated_text(draw, base):
    """YAML text of a mutated mapping, then maybe broken at the text level."""
    mapping, touched = draw(mutated_mapping(base))
    text = yaml.safe_dump(mapping, allow_unicode=True, sort_keys=False).encode()
    how = draw(st.sampled_from(["none", "none", "duplicate", "truncate", "insert", "bytes"]))
    lines = text.splitlines(keepends=True)
    if how == "duplicate" and lines:
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(lines)))
        text, touched = b"".join(lines), []
    elif how == "truncate":
        text, touched = text[: draw(st.integers(0, len(text)))], []
    elif how == "insert":
        at = draw(st.integers(0, len(text)))
        text, touched = text[:at] + draw(st.text(max_size=8)).encode() + text[at:], []
    elif how == "bytes":
        at = draw(st.integers(0, len(text)))
        text, touched = text[:at] + draw(st.binary(min_size=1, max_size=4)) + text[at:], []
    return text, touched


def _check(error: EdgeftError, source: str, touched: list[str]) -> None:
    assert error.problems and all(source in p or p.startswith("--set") for p in error.problems), error.problems
    parts = {part for path in touched for part in (path, path.split(".")[0])}
    parts |= {next(iter(yaml.safe_load(yaml.safe_dump({part: 0}, allow_unicode=True)))) for part in parts}  # as YAML reads it back
    names = {form for part in parts for form in (str(part), repr(str(part)))}
    if touched and not any(name in problem for name in names for problem in error.problems):
        raise AssertionError(f"no error names {touched}: {error.problems}")


def _run(test, counts: Counter, kind: str, capsys) -> None:
    test()
    with capsys.disabled():
        print(f"\n{kind}: tried {counts['tried']}, refused {counts['refused']} (each naming its file and field), "
              f"accepted {counts['accepted']}" + (f" ({counts['loaded']} loaded and run)" if counts["loaded"] else "")
              + ", tracebacks 0")
    assert counts["tried"] >= EXAMPLES


def test_mutated_recipes(tmp_path, capsys):
    counts = Counter()
    path = tmp_path / "recipe.yaml"

    @FUZZ
    @given(mutated_text(RECIPE), st.lists(st.tuples(st.sampled_from(
        ["training.epochs", "method", "data.validation", "model.name", "x.y", "training..lr"]), VALUES.map(str)),
        max_size=2))
    def fuzz(case, overrides):
        text, touched = case
        path.write_bytes(text)
        counts["tried"] += 1
        try:
            load_recipe(path, [f"{key}={value}" for key, value in overrides])
            counts["accepted"] += 1
        except EdgeftError as error:
            counts["refused"] += 1
            _check(error, str(path), [] if overrides else touched)

    _run(fuzz, counts, "recipes", capsys)


def test_mutated_device_profiles(tmp_path, capsys):
    counts = Counter()
    base = yaml.safe_load((DEVICES_DIR / "rpi4.yaml").read_text())
    path = tmp_path / "device.yaml"

    @FUZZ
    @given(mutated_text(base))
    def fuzz(case):
        text, touched = case
        path.write_bytes(text)
        counts["tried"] += 1
        try:
            load_profile(path)
            counts["accepted"] += 1
        except EdgeftError as error:
            counts["refused"] += 1
            _check(error, str(path), touched)

    _run(fuzz, counts, "device profiles", capsys)


def test_mutated_manifests(tmp_path, capsys):
    counts = Counter()
    bundle = make_bundle(tmp_path / "made")
    base = json.loads((bundle / "manifest.json").read_text())
    folder = shutil.copytree(bundle, tmp_path / "fuzz")

    @FUZZ
    @given(mutated_mapping(base), st.booleans())
    def fuzz(case, as_bytes):
        mapping, _ = case
        text = json.dumps(mapping)
        (folder / "manifest.json").write_bytes(text.encode()[:-1] if as_bytes and len(text) % 7 == 0 else text.encode())
        counts["tried"] += 1
        try:
            read_checked(folder, trusted_keys=[])
            # Provenance fields (source, verification, created) do not reach the backend: load the rest for real.
            if any(mapping.get(key) != base.get(key) for key in (set(base) | set(mapping)) - PROVENANCE):
                load(folder, self_check=True, trusted_keys=[])
                counts["loaded"] += 1
            counts["accepted"] += 1
        except BundleError as error:
            counts["refused"] += 1
            assert error.exit_code == 2 and all(str(folder) in p or "self-check" in p for p in error.problems)

    _run(fuzz, counts, "bundle manifests", capsys)
