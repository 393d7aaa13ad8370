# Every target builds on `setup`, which makes .venv and installs the pinned CPU torch first:
# an unpinned torch would pull gigabytes of CUDA packages.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0
STAMP   := $(VENV)/.installed

.PHONY: setup fmt lint type test test-fast test-slow train-tiny default-model serve bench docker docker-smoke clean

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
	$(BIN)/mypy model service training

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

# The shipped default model, models/en-de-multi30k: a 256-wide student trained on the large
# model's beam-5 translations of the training set (sequence-level knowledge distillation, Kim &
# Rush 2016): half the parameters, 1.6-1.9x the speed, 1.0 BLEU less with beam 5 (0.3 more greedy).
# About an hour on 2 cores.
MULTI30K := ../shared/data/multi30k
default-model: setup
	rm -rf runs/student && mkdir -p runs/distill
	$(BIN)/nmt data multi30k --dest data/multi30k --from $(MULTI30K)
	zcat $(MULTI30K)/train.en.gz > runs/distill/train.en
	$(BIN)/nmt translate --model models/en-de-multi30k-large --beam 5 --quantize none \
		--batch-tokens 8192 -i runs/distill/train.en -o runs/distill/train.de
	$(BIN)/nmt train configs/multi30k_en_de.yaml --set run_dir=runs/student \
		--set data.train_tgt=$(abspath runs/distill/train.de) --set model.hidden_size=256 \
		--set model.dropout=0.2 --set loop.max_minutes=50 --set loop.valid_every=250 \
		--set loop.save_every=250
	$(BIN)/nmt export runs/student --out models/en-de-multi30k --average-last 3 --dtype fp16 \
		--model-id en-de-multi30k

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
