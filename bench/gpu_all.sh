#!/bin/bash
# Every GPU check and benchmark in one go, within a time budget, on a machine with one CUDA GPU:
# the CUDA tests, bench/gpu_embed.py, bench/train.py --device cuda, `faceforge embed` on the GPU
# against the same machine's CPU cores (1k and 10k photos), then the re-id rows side by side
# and each finished row's evaluation. Each result is copied to COPY_TO (if given) as soon as
# it exists, so a run cut short still leaves what it finished.
#
#   bash bench/gpu_all.sh [COPY_TO] [SECONDS] [PARTS]   # default budget 570 s, every part:
#   PARTS is a quoted list of: tests embed train pipeline reid (the re-id rows want the most time)
set -u
COPY_TO=${1:-}
BUDGET=${2:-570}
PARTS=" ${3:-tests embed train pipeline reid} "
has() { [[ "$PARTS" == *" $1 "* ]]; }
[ -n "$COPY_TO" ] && mkdir -p "$COPY_TO"
T0=$(date +%s)
left() { echo $(( $1 - ($(date +%s) - T0) )); }
LOG=${COPY_TO:-bench/results}/gpu_all.log
say() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$LOG"; }
keep() { [ -n "$COPY_TO" ] && cp "$@" "$COPY_TO/" 2>/dev/null; true; }
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >> "$LOG" 2>&1
$PY -c "import sys, torch, cv2; print(sys.version.split()[0], torch.__version__, cv2.__version__)" >> "$LOG" 2>&1

if has tests; then
  say "CUDA tests"
  timeout 100 $PY -m pytest -q -rs -p no:cacheprovider tests/models/test_sface_port.py tests/models/test_embedders.py \
    tests/train/test_trainer_contract.py -k "cuda or half_precision" >> "$LOG" 2>&1
  say "tests: exit $?"
fi
if has embed; then
  say "gpu_embed"
  timeout 80 $PY bench/gpu_embed.py >> "$LOG" 2>&1; say "exit $?"
  keep bench/results/gpu_embed.json
fi
if has train; then
  say "train speed"
  timeout 50 $PY bench/train.py --device cuda --batch-size 256 --steps 15 >> "$LOG" 2>&1; say "exit $?"
  keep bench/results/train_speed_cuda.json
fi
if has pipeline; then  # each row is written as soon as it is measured
  say "faceforge embed on the GPU"
  timeout 150 $PY bench/pipeline.py --rows embed:sface@cuda embed:sface@cpu --baseline embed:sface@cpu \
    --sizes 1000 10000 --cores "$(nproc)" --no-extras --result bench/results/pipeline_gpu.json >> "$LOG" 2>&1
  say "exit $?"
  keep bench/results/pipeline_gpu.json
fi
has reid || { say "done"; exit 0; }

ROWS="r50_adacos osnet_adacos osnet_adacos_triplet r50_softmax r50_arcface r50_adacos_fixed effb1_adacos effb1_adacos_balanced"
T=$(left $(( BUDGET - 120 ))); say "re-id training, ${T} s"
if [ "$T" -gt 30 ]; then  # on its time limit bench/reid.py stops the runs it started
  timeout "$T" $PY bench/reid.py --stage train --jobs 8 --num-workers 1 --rows $ROWS >> "$LOG" 2>&1
  say "exit $?"; sleep 2
fi
for r in $ROWS; do
  [ -f "bench/results/runs_reid/$r/train.json" ] || continue
  T=$(left $(( BUDGET - 5 ))); [ "$T" -gt 20 ] || break
  timeout "$T" $PY bench/reid.py --stage eval --eval-device cuda --rows "$r" >> "$LOG" 2>&1; say "eval $r: exit $?"
  keep bench/results/reid.json bench/results/reid_cmc.png bench/results/reid_retrieval.png
done
if [ -n "$COPY_TO" ]; then
  tar czf "$COPY_TO/reid_runs.tgz" --exclude='*.pt' --exclude='*.safetensors' bench/results/runs_reid 2>/dev/null
fi
say "done"
