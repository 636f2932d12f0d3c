#!/usr/bin/env bash
# The GPU path in one go, on a CUDA machine, in under 8 minutes (the steps' limits add up to 7.5); prints one
# summary at the end.
#
#   1. the gpu-marked tests (tests/test_gpu.py: eval and a search training candidates on CUDA)
#   2. a short search with --device cuda: every evaluation must report device cuda
#   3. a LoRA fine-tuning round of a local model (a tiny Llama built here, no download) on CUDA
#   4. the sandbox's per-candidate overhead with CUDA candidates (zygote fork vs fresh process)
#
#   bash bench/gpu_check.sh            (from the repository root, with .venv installed)
#
# Without CUDA it stops at once with exit status 2. Each step has its own time limit; a step that fails
# or times out is reported as such and the others still run; the exit status is 1 if any failed.
# UNPROVEN: written without a GPU to run it on (no GPU machine has been lent to this project yet).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1
START=$SECONDS
declare -a SUMMARY=()
FAILED=0

if ! CUDA=$("$PY" -c '
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__}, built for CUDA {torch.version.cuda}, sees no GPU")
print(torch.cuda.get_device_name(0), "| torch", torch.__version__, "| CUDA", torch.version.cuda, "|", torch.cuda.device_count(), "GPU(s)")
' 2>&1); then
    echo "gpu_check: no CUDA device visible (${CUDA##*$'\n'}; CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}): this check needs a CUDA machine" >&2
    exit 2
fi
WORK=$(mktemp -d /tmp/llmnas-gpu-check-XXXXXX)
echo "gpu_check: $CUDA"

# step NAME LIMIT_S COMMAND...: run it with a time limit, keep its output, record one summary line.
step() {
    local name=$1 limit=$2 t0=$SECONDS status
    shift 2
    echo "=== $name (limit ${limit}s)"
    timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.log" 2>&1
    status=$?
    tail -n 15 "$WORK/$name.log"
    if [ $status -eq 0 ]; then
        SUMMARY+=("PASS  $name  ($((SECONDS - t0)) s)  $(grep -E "$SUMMARY_PATTERN" "$WORK/$name.log" | tail -n 1)")
    else
        FAILED=1
        local why="exit $status"
        [ $status -eq 124 ] || [ $status -eq 137 ] && why="timed out"
        SUMMARY+=("FAIL  $name  ($why after $((SECONDS - t0)) s; log: $WORK/$name.log)")
    fi
}

SUMMARY_PATTERN='passed|failed'
step gpu-tests 150 "$PY" -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider
if grep -q skipped "$WORK/gpu-tests.log"; then  # a skipped GPU test proves nothing
    FAILED=1
    SUMMARY[${#SUMMARY[@]}-1]="FAIL  gpu-tests  (some skipped: $(grep -E 'skipped' "$WORK/gpu-tests.log" | tail -n 1))"
fi

SUMMARY_PATTERN='"evaluations"'
step search-cuda 120 "$PY" -m llmnas.cli search "classify 8x8 digits; under 20k parameters" --data digits \
    --device cuda --budget 4 --workers 2 --steps 300 --out "$WORK/search" --json
[ -f "$WORK/search/events.jsonl" ] && DEVICES=$("$PY" -c '
import json, sys
events = [json.loads(line) for line in open(sys.argv[1])]
done = [e for e in events if e["type"] == "evaluation"]
on, ok = sum(e["device"] == "cuda" for e in done), sum(e["ok"] for e in done)
print(f"{on} of {len(done)} evaluations on cuda, {ok} passed")
sys.exit(0 if done and on == len(done) else 1)
' "$WORK/search/events.jsonl" 2>&1)
if [ $? -eq 0 ]; then SUMMARY+=("PASS  search-devices  $DEVICES"); else FAILED=1; SUMMARY+=("FAIL  search-devices  ${DEVICES:-no events.jsonl}"); fi

SUMMARY_PATTERN='^fine-tuned on|^total'
step lora-cuda 120 "$PY" bench/finetune_demo.py --proxy --device cuda --steps 100 --samples 8 --proposals 2 --out "$WORK/finetune"

SUMMARY_PATTERN='^zygote fork'
step sandbox-overhead-cuda 60 "$PY" bench/sandbox_overhead.py --n 10 --device cuda

echo
echo "gpu_check summary ($CUDA; $((SECONDS - START)) s in all; logs in $WORK)"
printf '  %s\n' "${SUMMARY[@]}"
exit $FAILED
