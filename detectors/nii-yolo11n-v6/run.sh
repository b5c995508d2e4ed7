#!/usr/bin/env bash
# Full reproduction of nii-yolo11n-v6 (nii's default detector, int8 variant), in four steps.
#
# 1. Stage one = nii-yolo11n-v4's training (its train_gpu.sh): scenes 0-5,999, yolo11n from
#    scratch, 13 epochs. GPU ~8 min; 2 CPU cores ~30 min dataset + ~2.2 h training. Skipped while
#    detectors/nii-yolo11n-v4/model.pt (those weights, committed) is there: STAGE1=DIR to redo it.
# 2. Stage two (this model): 7,000 *new* training scenes (indices 6,000-12,999: none seen in stage
#    one; validation and test scenes do not depend on the training range), continued from stage
#    one's weights with AdamW at lr0 5e-4, no warm-up, mosaic 0.5 closed for the last 5 epochs;
#    21 epochs in 4.9 min on the lent H200 after a 3.8 min dataset build (16 processes).
#    On 2 CPU cores: ~35 min dataset + ~4 h training (279k image-epochs at 0.052 s).
# 3. Packaging on the CPU box: ONNX export, thresholds calibrated on 1,200 validation scans (694
#    negatives; v2 and v4 used the first 400) and metrics on 1,400 test scans (766 negatives,
#    180-272 objects per class), whose first 400 are v2's and v4's test split: same seed and
#    settings, and scene seeds depend only on the index (`--from-weights` refuses a dataset built
#    with other settings). ~10 min.
# 4. int8 variant (`nii quantize`, 200 calibration tiles, own thresholds and test metrics): the
#    default. ~8 min.
#
# Environment: the `train` extra in .venv (nothing is downloaded). Seeds: dataset 2026, training 2026.
set -euo pipefail
cd "$(dirname "$0")/../.."
NII=${NII:-.venv/bin/nii}
PY=${PY:-.venv/bin/python}
DATA=${DATA:-datasets/det-v2d}           # val/test scans (git-ignored: generated, never committed)
STAGE1=${STAGE1:-detectors/nii-yolo11n-v4}   # stage one's weights are committed there: step 1 is skipped
WEIGHTS=${WEIGHTS:-detectors/.nii-yolo11n-v6-weights}
OUT=${OUT:-detectors/nii-yolo11n-v6}

# On a machine slower or faster than the H200 box, fix the epoch counts the time caps gave there:
#     DEVICE=cpu WORKERS=2 STAGE1_EPOCHS=13 STAGE2_EPOCHS=21 bash detectors/nii-yolo11n-v6/run.sh
[ -f "$STAGE1/model.pt" ] || PY="$PY" OUTW="$STAGE1" EPOCHS="${STAGE1_EPOCHS:-}" bash detectors/nii-yolo11n-v4/train_gpu.sh
[ -f "$WEIGHTS/model.pt" ] || PY="$PY" OUTW="$WEIGHTS" DATA=datasets/det-v6-train FIRST=6000 N_TRAIN=7000 \
    INIT="$STAGE1/model.pt" OPT=AdamW LR0=0.0005 WARMUP=0 MOSAIC=0.5 CLOSE=5 BUDGET_S=540 MARGIN_S=45 \
    EPOCHS="${STAGE2_EPOCHS:-}" bash detectors/nii-yolo11n-v4/train_gpu.sh

[ -f "$DATA/dataset.json" ] || "$NII" -v dataset build --out "$DATA" --seed 2026 --n-train 0 --n-val 1200 --n-test 1400 \
    --pitch-mm 3.0 --tile 320 --overlap 64 --held-out timber --kinds 0.7,0.15,0.15 \
    --train-targets 1,3 --target-crops 1 --workers 2

"$NII" -v train --data "$DATA" --out "$OUT" --from-weights "$WEIGHTS/model.pt"

rm -rf "$OUT-int8"
"$NII" -v quantize "$OUT" --data "$DATA" --out "$OUT-int8" --n-calibration 200 --seed 2026 --set-default
