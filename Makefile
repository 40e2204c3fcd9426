# Two commands for a new user:  make run  (the app)  ·  make test  (the tests)
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: run test install install-dev artifacts recommend-artifacts bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)

# The stamp files make repeated runs skip pip when requirements are unchanged.
$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	# The musicnn wheel only carries the MSD-VGG checkpoint files that the
	# pretrained models are built from. Its code needs TensorFlow 1 and pins
	# numpy < 1.17, so it is installed without dependencies and never imported.
	$(BIN)/pip install -q --no-deps musicnn==0.1.0
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Two malloc arenas, not one per thread: core.serve.SERVER_ENV (the benchmark's server uses the same).
run: install
	MALLOC_ARENA_MAX=2 $(BIN)/streamlit run app.py --server.port $(PORT)

test: install-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q tests

# Retrain every model on every ../shared/data set; choose, calibrate and ship the
# fused and fused_trunks models leave-one-source-out (and measure cnn_msd under that
# protocol); calibrate the others on val, pick the app's default model on LOSO mean
# accuracy, evaluate on test, write the model card.
# DEVICE=cuda trains on a GPU when there is one (default: auto).
DEVICE ?= auto
artifacts: install
	$(BIN)/python -m core train --model cnn --out artifacts --device $(DEVICE)
	$(BIN)/python -m core train --model crnn --full-window --max-minutes 50 --out artifacts --device $(DEVICE)
	# CRNN stage 2: GRU and genre layers on the frozen conv stack's sequences (about 1 min).
	$(BIN)/python -m core train --model crnn --recurrent-only --init-from artifacts/crnn.safetensors \
		--lr 0.0003 --epochs 150 --patience 40 --max-minutes 10 --out artifacts
	$(BIN)/python -m core train --model cnn_msd --out artifacts --device $(DEVICE)
	$(BIN)/python -m core train --model crnn_msd --lr 0.0003 --out artifacts --device $(DEVICE)
	# Every trunk of the musicnn wheel over every clip (one decode, one log-mel; cached per clip).
	$(BIN)/python -m core trunk-features --out .cache/trunk_features --augment-copies 2
	$(BIN)/python -m core loso --artifacts artifacts --cnn-msd-minutes 3 --trunk-features .cache/trunk_features --head-variants
	# The default model's library adaptation, measured leave-one-source-out; its replay of the training rows ships.
	$(BIN)/python -m core adapt --ship --trunk-features .cache/trunk_features --artifacts artifacts
	$(BIN)/python -m core baseline --artifacts artifacts
	$(BIN)/python -m core calibrate --split val --artifacts artifacts
	$(BIN)/python -m core evaluate --split test --json artifacts/metrics.json
	# Every model on degraded copies of the test clips (MP3 64 kbit/s, telephone band, noise, reverb, quiet).
	$(BIN)/python -m core robustness --split test --json artifacts/robustness.json
	$(BIN)/python -m core model-card --artifacts artifacts

# The recommender's offline figures and the facet measurements (an index of the shared data first).
# Method 2's defaults (request.RecommendConfig) are the leave-one-source-out choice; --loso adds
# its folds to the JSON (core.recommend.loso).
recommend-artifacts: install
	$(BIN)/python -m core index --out .cache/index_eval
	# The LOSO folds use the default model's fold heads (fused_trunks: its trunk features
	# come from `make artifacts`, which writes .cache/trunk_features).
	$(BIN)/python -m core recommend-eval --index .cache/index_eval --split test --loso \
		--loso-model fused_trunks --loso-features .cache/trunk_features \
		--json artifacts/recommend_eval.json
	$(BIN)/python -m core facets-eval --index .cache/index_eval --json artifacts/facets_eval.json

bench: install
	$(BIN)/python -m core bench --json bench_out/bench.json

clean:
	rm -rf .cache bench_out
