"""Prediction inputs: bad texts, batch sizes, --top-k, stdin bytes and control characters give clear errors."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from tiny_bundle import LABELS, make_bundle

from edgeft.cli import main
from edgeft.runtime import load
from edgeft.runtime.display import escape


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("inputs"))


@pytest.fixture(scope="module")
def predictor(bundle):
    return load(bundle)


@pytest.mark.parametrize("texts", [{"a": 1}, None, 42, ["ok", None], ["ok", b"bytes"]])
def test_api_refuses_what_is_not_text(predictor, texts):
    with pytest.raises(TypeError, match="texts"):
        predictor.predict(texts)


@pytest.mark.parametrize("batch_size", [-1, 0, 1.5, True])
def test_api_refuses_a_bad_batch_size(predictor, batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        predictor.predict(["hello"], batch_size=batch_size)


def test_tuple_and_empty_inputs_work(predictor):
    assert len(predictor.predict(("a", "b"))) == 2 and predictor.predict([]) == []


@pytest.mark.parametrize("args,stdin,words", [
    (["-"], b"fine\n\xff\xfe broken\n", "stdin: line 2: not UTF-8"),
    (["-"], b"", "stdin: no texts"),
    (["-"], b"\n  \n", "stdin: no texts"),
    (["hello", "--top-k", "-3"], b"", "--top-k"),
    (["hello", "--threads", "0"], b"", "--threads"),
])
def test_cli_bad_input_exits_2_without_traceback(bundle, args, stdin, words):
    result = CliRunner().invoke(main, ["predict", str(bundle), *args], input=stdin)
    module = subprocess.run([sys.executable, "-m", "edgeft.runtime", str(bundle), *args], input=stdin,
                            capture_output=True)

    assert result.exit_code == 2 and words in result.output and "Traceback" not in result.output
    assert module.returncode == 2 and words in module.stderr.decode() and b"Traceback" not in module.stderr


def test_plain_output_escapes_newlines_and_escape_codes(bundle):
    texts = ["two\nlines", "\x1b[2Jclear screen", "back\\slash"]

    result = CliRunner().invoke(main, ["predict", str(bundle), *texts, "--top-k", "9"])

    lines = result.output.splitlines()
    assert result.exit_code == 0 and len(lines) == 3
    assert lines[0].endswith("two\\nlines" + lines[0].partition("two\\nlines")[2])
    assert "\x1b" not in result.output and "\\x1b[2Jclear screen" in lines[1]
    assert lines[0].count("(") == len(LABELS) - 1  # --top-k above the label count shows every label once
    assert escape("a\\nb") == "a\\\\nb"  # a literal backslash-n stays distinguishable from a newline


def test_json_output_round_trips_control_characters(bundle):
    result = CliRunner().invoke(main, ["predict", str(bundle), "tab\there", "--json"])

    assert json.loads(result.output)["text"] == "tab\there"
