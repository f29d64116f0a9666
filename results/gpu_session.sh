#!/usr/bin/env bash
# One prepared GPU session: recipe sweep on CHASE_DB1 (validation only), the
# test evaluation of the original recipe and of the validation winner, the GPU
# benchmark and the original recipe's wall time. Everything lands in $OUT.
#   DATA=<root holding CHASEDB1/> OUT=<folder> bash results/gpu_session.sh [--tiny]
# The JSON files worth keeping are then copied by hand into the package's
# measured results (retina_lib/measured/, see results/README.md):
#   sweep/sweep.json -> chase_db1/sweep.json, sweep/NAME/history.json ->
#   chase_db1/sweep_NAME/history.json, test_original.json -> chase_db1/test_original_h200.json,
#   test_$BEST.json -> chase_db1/test_course_h200.json;
# then `python results/make_ablation.py` rebuilds retina_lib/measured/ablation.json.
set -u
DATA=${DATA:?set DATA to the data root}
OUT=${OUT:?set OUT to an output folder}
RUNS=${RUNS:-/tmp/gpu_runs}
mkdir -p "$OUT" "$RUNS"
EXTRA=()
ONLY=()
if [ "${1:-}" = "--tiny" ]; then  # a dry run on the CPU: everything tiny
  EXTRA=(--extra --epochs 1 --samples-per-epoch 2); ONLY=(--only original crop512_bce_1e-3)
fi
log() { echo "== $(date +%T) $*" | tee -a "$OUT/session.log"; }
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
log "sweep"
timeout 230 python results/sweep.py --data-dir "$DATA" --device auto --num-workers 8 --out "$RUNS/sweep" \
  "${ONLY[@]}" "${EXTRA[@]}" > "$OUT/sweep.log" 2>&1
log "sweep exit $?"
cp "$RUNS/sweep/sweep.json" "$OUT/" 2>/dev/null
BEST=$(cat "$RUNS/sweep/best.txt" 2>/dev/null || echo crop512_bce_1e-3)
log "best on validation: $BEST"
for run in original "$BEST"; do
  [ -f "$RUNS/sweep/$run/linknet.pth" ] || continue
  timeout 60 python -m retina_lib evaluate --dataset chase_db1 --data-dir "$DATA" \
    --weights "$RUNS/sweep/$run/linknet.pth" --split test --json "$RUNS/test_$run.json" >> "$OUT/evaluate.log" 2>&1
  log "evaluate $run exit $?"
done
timeout 45 python benchmarks/original_recipe_gpu.py --device auto --data-dir "$DATA" --json "$RUNS/original_recipe_gpu.json" \
  > "$OUT/original_recipe_gpu.log" 2>&1
log "original recipe timing exit $?"
timeout 50 python benchmarks/bench.py --device auto --json "$RUNS/bench_gpu.json" > "$OUT/bench_gpu.log" 2>&1
log "bench exit $?"
# Bring back the small files (one archive) and the winner's weights in float16, in two parts.
(cd "$RUNS" && tar czf "$OUT/results.tgz" --exclude='*.pth' --exclude='*.png' . 2>/dev/null; \
 tar czf "$OUT/curves.tgz" sweep/*/curves.png 2>/dev/null)
python - "$RUNS/sweep/$BEST/linknet.pth" "$OUT/best_fp16.pth" <<'PY' && (cd "$OUT" && split -b 12m best_fp16.pth best_fp16.part- && rm best_fp16.pth)
import sys, torch
state = torch.load(sys.argv[1], weights_only=True)
torch.save({k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}, sys.argv[2])
PY
log "done"
ls -la "$OUT"
