"""The runtime under load: every format shared by 8 threads equals serial; 10,000 predictions keep RSS flat."""

import json
import subprocess
import sys
import threading

import numpy as np
import pytest
from tiny_bundle import TEXTS, make_bundle

from edgeft.runtime import load

FORMATS = ["onnx", "openvino", "tflite"]
THREADS = 8
# Texts of many lengths (1 to max_length tokens and beyond), so backends see many input shapes.
WORDS = "card lost transfer money balance please help my account abroad euro fee".split()
LOAD_TEXTS = [" ".join(WORDS[j % len(WORDS)] for j in range(i % 40 + 1)) for i in range(100)] + TEXTS[:8] * 12 + [
    "line one\nline two", "tab\tseparated", "\x1b[31mred\x1b[0m", "", "émoji 🙂 ünïcode"]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("load")
    return {fmt: make_bundle(folder, fmt) for fmt in FORMATS}


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_predictor_shared_by_8_threads_equals_serial(bundles, fmt):
    # setup
    predictor = load(bundles[fmt], threads=1)
    serial = np.concatenate([predictor.logits([text]) for text in LOAD_TEXTS])
    results, errors = [None] * THREADS, []

    def work(index):
        order = np.random.default_rng(index).permutation(len(LOAD_TEXTS))
        got = np.zeros_like(serial)
        try:
            for position in order:
                got[position] = predictor.logits([LOAD_TEXTS[position]])[0]
            results[index] = got
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(repr(error))

    # execute
    workers = [threading.Thread(target=work, args=(index,)) for index in range(THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    # assert
    assert not errors, errors[:2]
    wrong = [index for index, got in enumerate(results) if not np.allclose(got, serial, atol=1e-5)]
    assert not wrong, f"{len(wrong)} of {THREADS} threads got results different from serial"
    assert np.isfinite(serial).all()


def test_openvino_sees_a_bounded_number_of_input_shapes(bundles):
    # Each new sequence length costs OpenVINO's CPU plugin memory for good: lengths are padded to multiples of 8.
    predictor = load(bundles["openvino"])
    lengths = {predictor.encode([text])["input_ids"].shape[1] for text in LOAD_TEXTS}
    max_length = predictor.manifest["tokenizer"]["max_length"]

    assert lengths <= set(range(8, max_length + 1, 8)) | {max_length}
    np.testing.assert_allclose(predictor.logits(LOAD_TEXTS[:20]),
                               np.concatenate([predictor.logits([t]) for t in LOAD_TEXTS[:20]]), atol=1e-5)


SOAK = """
import json, sys
import edgeft.runtime as runtime
def rss():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) / 1024
texts = json.loads(sys.argv[2])
predictor = runtime.load(sys.argv[1])
for i in range(1000):
    predictor.predict(texts[i % len(texts)])
warm = rss()
for i in range(10000):
    predictor.predict(texts[(i * 7) % len(texts)])
print(json.dumps({"warm_mb": warm, "end_mb": rss()}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_10000_predictions_keep_memory_flat(bundles, fmt):
    # A fresh process holding only the light runtime, so the RSS is the runtime's own.
    result = subprocess.run([sys.executable, "-c", SOAK, str(bundles[fmt]), json.dumps(LOAD_TEXTS)],
                            capture_output=True, text=True, check=True, timeout=300)
    rss = json.loads(result.stdout.strip().splitlines()[-1])

    growth = rss["end_mb"] / rss["warm_mb"] - 1
    print(f"\n{fmt}: RSS {rss['warm_mb']:.1f} MB after 1,000 warm-up predictions, {rss['end_mb']:.1f} MB after "
          f"10,000 more ({growth:+.1%})")
    assert growth < 0.05
