#!/usr/bin/env bash
# The checks that need a machine with a GPU and cores to spare, in one pass, each bounded in time:
#   1. the gpu-marked tests (Translator, training with AMP and resume, the service, on CUDA);
#   2. bench/load.py against a CPU server pinned to 2 cores (--server-cpus 0-1), the load
#      generator on other cores: the issue-4 floors without the load generator on the same cores;
#   3. bench/decode.py on CUDA (the float model, greedy and beam 5, batch 1 and batched);
#   4. bench/load.py against a server on CUDA: batching on vs off, greedy and beam 5.
# Usage: bash bench/gpu_checks.sh DATA_DIR LOG_DIR  (DATA_DIR holds test_2016_flickr.en.gz)
# Run from the repository root with the package and its serve extra installed (`make setup`, or
# `pip install -e .[serve]`; on a machine without a package registry, wheels brought along:
# `pip install --no-index --no-deps --target DIR *.whl`, PYTHONPATH=DIR, then
# `pip install --no-index --no-deps --no-build-isolation -e .`). STEP names in SKIP are skipped.
set -u
data=${1:?DATA_DIR}
logs=${2:?LOG_DIR}
py=${PYTHON:-python3}
sentences=$data/test_2016_flickr.en.gz
model=models/en-de-multi30k
export PYTHONUNBUFFERED=1
mkdir -p "$logs"

step() {  # step NAME SECONDS COMMAND...: run it, log it, and go on whatever it returns
    local name=$1 seconds=$2
    shift 2
    [[ " ${SKIP:-} " == *" $name "* ]] && return  # SKIP="decode_cuda ...": steps already done
    echo "== $name ($(date -u +%H:%M:%S))"
    timeout "$seconds" "$@" 2>&1 | tee "$logs/$name.log" | tail -n 40
    echo "== $name: exit ${PIPESTATUS[0]}"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
$py -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'

step gpu_tests 180 $py -m pytest -q -m gpu -p no:cacheprovider \
    tests/model/test_cuda.py tests/training/test_cuda.py tests/integration/test_service_real_model.py

load=($py bench/load.py --sentences "$sentences" --serve --offline $model --clients 32)
OMP_NUM_THREADS=2 step load_cpu_pinned 180 "${load[@]}" --duration 15 --beam 1 \
    --server-cpus 0-1 --run default:NMT_DEVICE=cpu --run nobatch:NMT_DEVICE=cpu,NMT_MAX_BATCH_SIZE=1 \
    --run default:NMT_DEVICE=cpu --run nobatch:NMT_DEVICE=cpu,NMT_MAX_BATCH_SIZE=1

step decode_cuda 90 $py bench/decode.py --model $model --src "$sentences" --device cuda \
    --precisions fp32 --repeats 3 --batch1-limit 50 --batch-tokens 8192

cuda_runs=(--run cuda:NMT_DEVICE=cuda --run cuda_nobatch:NMT_DEVICE=cuda,NMT_MAX_BATCH_SIZE=1)
step load_cuda_greedy 110 "${load[@]}" --duration 10 --beam 1 "${cuda_runs[@]}"
step load_cuda_beam5 110 "${load[@]}" --duration 10 --beam 5 "${cuda_runs[@]}"

