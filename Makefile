# Two commands for a new user:  make run  (the app)  ·  make test  (the tests)
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: run test install install-dev artifacts bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)

# The stamp files make repeated runs skip pip when requirements are unchanged.
$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/streamlit run app.py --server.port $(PORT)

test: install-dev
	$(BIN)/python -m pytest -q tests

# Retrain both models on every ../shared/data set, evaluate, write the model card.
artifacts: install
	$(BIN)/python -m core train --model crnn --out artifacts
	$(BIN)/python -m core train --model cnn --out artifacts
	$(BIN)/python -m core evaluate --split test --json artifacts/metrics.json
	$(BIN)/python -m core model-card --artifacts artifacts

bench: install
	$(BIN)/python -m core bench --json bench_out/bench.json

clean:
	rm -rf .cache bench_out
