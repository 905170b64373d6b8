# Thin aliases onto the `fusion-bench` CLI. `bench` and `test` create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,audio,segmentation,detection
METHOD ?= mean,max,source_a,source_b,laplacian,fusion_cnn
DATASET ?= synthetic-ivif
PRESET ?= smoke
SEEDS ?=
ROOT ?=
OUT ?= runs
LEADERBOARD_DIR ?= leaderboards
DOWNSTREAM ?=

.PHONY: bench test lint leaderboard regress venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[$(EXTRAS)]"
	touch $@

bench: venv
	$(BIN)/fusion-bench bench --method $(METHOD) --dataset $(DATASET) --preset $(PRESET) $(if $(SEEDS),--seeds $(SEEDS),) \
		--out $(OUT) --leaderboard-dir $(LEADERBOARD_DIR) $(if $(DOWNSTREAM),--downstream $(DOWNSTREAM),) $(if $(ROOT),--root $(ROOT),)

test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest
	$(BIN)/fusion-bench regress --suite smoke

lint: venv
	$(BIN)/ruff check .

leaderboard: venv
	$(BIN)/fusion-bench leaderboard --leaderboard-dir $(LEADERBOARD_DIR)

regress: venv
	$(BIN)/fusion-bench regress --suite smoke

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
