#!/usr/bin/env bash
# The prepared GPU check (bench/README.md): on one CUDA machine without network, from carried wheels, sized to end
# within 8 minutes on one H200 (its steps are cut at 100, 100 and 270 s):
#   1. the CUDA tests (tests/test_speed_paths.py, tests/test_kernels.py, tests/test_batched_evaluation.py),
#   2. a short run.py run of Dsqn T=64 with the default options (CUDA graphs, --backend auto, 30 evaluation games
#      played at once), its config.json and run.log kept,
#   3. the benchmark with the original code timed beside ours (bench/run.py --original).
# Everything it writes goes into OUT (default gpu_check_out/): at most 8 files.
#
#   bench/gpu_check.sh [OUT]                 # on the GPU machine, from the repository's root
#   GPU_CHECK_DRY_RUN=1 bench/gpu_check.sh   # print the commands, run nothing
#   GPU_CHECK_REHEARSAL=1 bench/gpu_check.sh # the same steps on this machine's CPU at tiny sizes (minutes)
#
# Environment: PYTHON (default python3), WHEELS (default .whl: ours, installed into /tmp/gpu_check_site without
# network; none there: the interpreter's own packages), ORIGINAL (default .original: a folder holding the original
# code's agent/, neural_network/, replay_memory/; absent: the original is not timed), WHEELS_ORIGINAL (default
# .whl_original: its SpikingJelly 0.0.0.0.8), BUDGET_S (default 190: the benchmark's --budget_s; the parts not
# started by then are skipped and the networks part stops building variants).
set -uo pipefail

OUT=${1:-gpu_check_out}
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
ORIGINAL=${ORIGINAL:-.original}
WHEELS_ORIGINAL=${WHEELS_ORIGINAL:-.whl_original}
BUDGET_S=${BUDGET_S:-190}
DRY=${GPU_CHECK_DRY_RUN:-0}
REHEARSAL=${GPU_CHECK_REHEARSAL:-0}
export PYTHONUNBUFFERED=1 CUBLAS_WORKSPACE_CONFIG=${CUBLAS_WORKSPACE_CONFIG:-:4096:8}

run() {  # run (or with GPU_CHECK_DRY_RUN=1 print) one step; its status is recorded, the check goes on
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*" >&2
    if [ "$DRY" = 1 ]; then
        return 0
    fi
    local started=$SECONDS
    timeout "$limit" "$@"
    local status=$?
    echo "$name: exit $status in $((SECONDS - started)) s" >>"$OUT/machine.txt"
    return $status
}

mkdir -p "$OUT"
: >"$OUT/machine.txt"
if [ "$DRY" != 1 ] && [ -d "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/gpu_check_site "$WHEELS"/*.whl || exit 1
    export PYTHONPATH=/tmp/gpu_check_site:$PWD
else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi

if [ "$REHEARSAL" = 1 ]; then
    DEVICE=cpu
    TESTS=(tests/test_kernels.py tests/test_speed_paths.py)
    RUN_ARGS=(--T 4 --timestep_num 40 --replay_start_size 32 --eval_freq 20 --eval_episode_num 3
              --max_episode_step 30 --replay_memory_size 500 --device cpu)
    BENCH_ARGS=(--tiny --threads 1 --device cpu --parts end_to_end,evaluation)
    PYTEST_WORKERS=0
else
    DEVICE=cuda
    TESTS=(tests/test_speed_paths.py tests/test_kernels.py tests/test_batched_evaluation.py)
    RUN_ARGS=(--T 64 --timestep_num 6000 --replay_start_size 1000 --eval_freq 5000 --eval_episode_num 30
              --max_episode_step 2000 --replay_memory_size 10000 --device cuda)
    BENCH_ARGS=(--device cuda --budget_s "$BUDGET_S")
    PYTEST_WORKERS=4
fi
if [ -d "$ORIGINAL" ]; then
    BENCH_ARGS+=(--original "$ORIGINAL")
    if [ -d "$WHEELS_ORIGINAL" ]; then
        BENCH_ARGS+=(--original_wheels "$WHEELS_ORIGINAL")
    fi
fi

if [ "$DRY" != 1 ]; then
    {
        date -u
        nvidia-smi 2>/dev/null || echo "no nvidia-smi"
        "$PYTHON" -c "import sys, torch; from importlib.metadata import version as v; print('python', \
sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'spikingjelly', v('spikingjelly'), \
'numpy', v('numpy'), 'gymnasium', v('gymnasium'), 'ale-py', v('ale-py'))"
    } >>"$OUT/machine.txt" 2>&1
fi

# 1. the CUDA tests
run pytest 100 "$PYTHON" -m pytest -q -p no:cacheprovider -n "$PYTEST_WORKERS" "${TESTS[@]}" \
    > >(tee "$OUT/pytest.txt") 2>&1

# 2. a short run with the defaults
RUNS=$(mktemp -d /tmp/gpu_check_runs.XXXXXX)
run runpy 100 "$PYTHON" run.py --model Dsqn --env_id BreakoutNoFrameskip-v4 "${RUN_ARGS[@]}" --output_dir "$RUNS" \
    --run_name gpu_check > >(tee "$OUT/runpy.txt") 2>&1
if [ "$DRY" != 1 ]; then
    cp "$RUNS/gpu_check/config.json" "$OUT/run_config.json" 2>/dev/null
    cp "$RUNS/gpu_check/run.log" "$OUT/run.log" 2>/dev/null
fi
rm -rf "$RUNS"

# 3. the benchmark, the original beside ours (its report: <machine>.md and .json)
run bench 270 "$PYTHON" bench/run.py "${BENCH_ARGS[@]}" --output "$OUT" > >(tee "$OUT/bench_progress.txt") 2>&1

[ "$DRY" = 1 ] || cat "$OUT/machine.txt" >&2
