# Every target builds on `setup`, which makes .venv and installs the pinned CPU torch first:
# an unpinned torch would pull gigabytes of CUDA packages.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0
STAMP   := $(VENV)/.installed

.PHONY: setup fmt lint type test test-fast test-slow train-tiny serve bench docker docker-smoke clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

fmt: setup
	$(BIN)/ruff format model training service tests bench
	$(BIN)/ruff check --fix model training service tests bench

lint: setup
	$(BIN)/ruff check model training service tests bench
	$(BIN)/ruff format --check model training service tests bench
	$(BIN)/lint-imports

type: setup
	$(BIN)/mypy model service

# The README's test command: lint, types, the fast unit suite, then the slow end-to-end tests.
test: lint type
	$(BIN)/pytest -q -m "not slow"
	$(BIN)/pytest -q -m slow

test-fast: setup
	$(BIN)/pytest -q -m "not slow"

test-slow: setup
	$(BIN)/pytest -q -m slow

# The copy task's data (git-ignored) is generated once. Each run starts afresh, because the loop
# refuses to overwrite a run directory that has checkpoints; one thread is fastest for a model
# this small (more only add synchronisation, and stalls on a busy machine).
TINY_DATA := data/tiny_copy/train.src

$(TINY_DATA): | $(STAMP)
	$(BIN)/python -m training.synthetic data/tiny_copy

train-tiny: setup $(TINY_DATA)
	rm -rf runs/tiny_copy
	OMP_NUM_THREADS=1 $(BIN)/nmt train configs/tiny_copy.yaml

serve: setup
	$(BIN)/nmt serve

bench: setup
	$(BIN)/python bench/decode.py --model models/en-de-multi30k --src ../shared/data/multi30k/test_2016_flickr.en.gz

# The Dockerfiles bind-mount wheels/ (a local torch wheel may go there; empty is fine).
docker:
	mkdir -p wheels
	docker build -f docker/Dockerfile -t lstm-nmt:cpu .

# Builds and runs the CPU image with buildah/podman (root); see docker/README.md.
docker-smoke: setup
	bash docker/ci-smoke.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
