#!/usr/bin/env bash
# The prepared GPU check (issue 18), sized for one 10-minute device command:
#   1. installs what the device image lacks (cp312 wheels in .whl/, if there) and records the machine;
#   2. starts CUDA MPS; scripts/bench_training.py at the paper budget: engine vs bare loop and
#      aggregate img/s of packed processes (cuDNN autotuned), engine vs bare with determinism on;
#   3. the cross_stain paper sweep under MPS (H1/H2 models + floors, 3 sources, $SEEDS seeds), with
#      resume, stopped at the deadline so the report still runs on the jobs that finished;
#   4. report + hypotheses, and everything packed into $OUT (at most 8 files come back).
#
#   OUT=/some/folder scripts/gpu_check.sh              # on the GPU machine (data: WBC_DATA_MIRROR or .gpu_data/)
#   OUT=/tmp/check scripts/gpu_check.sh --dry-run      # on a CPU: smoke budget, 1 seed, seconds-long bench
#
# Settings (environment): SEEDS (10), DEADLINE_S (total seconds this script may take, 560),
# SKIP_BENCH=1 (a resumed call: sweep only), BENCH_ON=0 (skip the determinism-on bench), KS (packed
# process counts, 8,16), CUDA_DETERMINISM (the sweep's, on), REPORT_S (seconds kept for the reports,
# 100), RESULTS (results/cross_stain_paper), PYTHON (python3).
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-build/gpu_check}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
SEEDS=${SEEDS:-10}
DEADLINE_S=${DEADLINE_S:-560}
[ $DRY = 1 ] && RESULTS=${RESULTS:-$OUT/results_dry}
RESULTS=${RESULTS:-results/cross_stain_paper}
MODELS=sg_cldff,sg_cldff_no_align,sg_cldff_no_cldff
T0=$(date +%s)
left() { echo $(( DEADLINE_S - ($(date +%s) - T0) )); }
log() { echo "[gpu_check +$(( $(date +%s) - T0 ))s] $*" | tee -a "$OUT/log.txt"; }
run() {  # run CMD..., its output appended to the log, bounded by a timeout in seconds
    local limit=$1; shift
    log "\$ $*  (limit ${limit}s)"
    timeout --signal=INT --kill-after=20 "$limit" "$@" 2>&1 | tee -a "$OUT/log.txt"
    local rc=${PIPESTATUS[0]}
    log "exit $rc"
    return "$rc"
}

# 1. Packages and data. The project runs from this folder (PYTHONPATH), not installed.
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site || log "wheel install failed"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if [ -z "${WBC_DATA_MIRROR:-}" ]; then
    if [ -d .gpu_data ]; then export WBC_DATA_MIRROR="$PWD/.gpu_data"; else export WBC_DATA_MIRROR="$(cd ../shared/datasets && pwd)"; fi
fi
[ $DRY = 1 ] && export WBC_DATA_DIR=${WBC_DATA_DIR:-$PWD/data}
export WBC_DATA_DIR=${WBC_DATA_DIR:-/tmp/wbc_data}
{
    date -u +"%Y-%m-%dT%H:%M:%SZ"; uname -a; nproc
    nvidia-smi 2>&1 || echo "no nvidia-smi"
    $PYTHON -c "import torch, timm; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'timm', timm.__version__); print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no cuda')"
    git rev-parse HEAD 2>/dev/null; git status --short 2>/dev/null | head -20
} > "$OUT/env.txt" 2>&1
log "machine: $(grep -m1 -E 'NVIDIA H|no cuda' "$OUT/env.txt" || true); mirror $WBC_DATA_MIRROR"

if [ $DRY = 1 ]; then
    BUDGET=smoke; DEVICE=cpu; SEEDS=1; BENCH_ARGS=(--budget smoke --models sg_cldff --steps 2 --seconds 2); KS=${KS:-2}
else
    BUDGET=paper; DEVICE=cuda; BENCH_ARGS=(--budget paper --models sg_cldff --steps 20 --seconds 6); KS=${KS:-8,16}
fi

# 2. CUDA MPS first (packed processes run at once instead of taking turns), then the benchmark:
#    the engine vs the bare loop and packed processes with cuDNN autotuning (determinism off), and
#    the engine vs the bare loop with the determinism switches on (what they cost).
if [ $DRY = 0 ] && command -v nvidia-cuda-mps-control >/dev/null; then
    if nvidia-cuda-mps-control -d 2>&1 | tee -a "$OUT/log.txt"; then log "MPS control daemon started"; else log "MPS did not start: packed jobs time-slice"; fi
    sleep 1
fi
if [ "${SKIP_BENCH:-0}" != 1 ]; then
    # packed measurements start k fresh processes each (torch import, CUDA context): ~60 s for k = 16
    run 200 $PYTHON scripts/bench_training.py "${BENCH_ARGS[@]}" --device $DEVICE --determinism off --jobs $KS >> "$OUT/bench.txt"
    [ "${BENCH_ON:-1}" = 1 ] && run 45 $PYTHON scripts/bench_training.py "${BENCH_ARGS[@]}" --device $DEVICE --determinism on >> "$OUT/bench.txt"
fi

# 3. The sweep, resumed if a folder is there, stopped REPORT_S (100) s before the deadline (a stopped
#    job leaves nothing: the next call redoes it), which leaves the reports their time.
SWEEP_S=$(( $(left) - ${REPORT_S:-100} ))
if [ "$SWEEP_S" -gt 30 ]; then
    run "$SWEEP_S" $PYTHON -m benchmark run --protocol cross_stain --budget $BUDGET --models $MODELS \
        --seeds "$SEEDS" --device $DEVICE --cuda-determinism "${CUDA_DETERMINISM:-on}" --out "$RESULTS"
else
    log "no time left for the sweep"
fi

# 4. Reports on the finished jobs, and the folder packed (weights stay behind: 8 MB a job).
run 70 $PYTHON -m benchmark report --out "$RESULTS"
run 20 $PYTHON -m benchmark hypotheses --out "$RESULTS"
if [ -d "$RESULTS" ]; then
    tar czf "$OUT/results.tgz" --exclude='weights.safetensors' --exclude='predictions.jsonl.gz' \
        --exclude='explain_examples.npz' "$RESULTS"
    # per-sample predictions in three parts by seed, the full model's explanation panels: each
    # file must stay under the 16 MiB a device call brings back (one that does not is dropped, and said so)
    for part in a:0-3 b:4-6 c:7-9; do
        (cd "$RESULTS" && find jobs -name 'predictions.jsonl.gz' -path "*__seed[${part#*:}]__*" -print0 \
            | tar czf "$OUT/predictions_${part%%:*}.tgz" --null -T -)
    done
    (cd "$RESULTS" && find jobs -name 'explain_examples.npz' -path 'jobs/sg_cldff__*' -print0 | tar czf "$OUT/explain.tgz" --null -T -)
    for f in "$OUT"/*.tgz; do
        if [ "$(stat -c %s "$f")" -gt 16000000 ]; then log "dropped $f: $(stat -c %s "$f") bytes"; rm -f "$f"; fi
    done
    log "packed: $(ls -la "$OUT" | tail -n +2 | awk '{print $5, $9}' | tr '\n' ' ')"
fi
log "done; $(find "$RESULTS/jobs" -name done 2>/dev/null | wc -l) finished job(s) in $RESULTS"
