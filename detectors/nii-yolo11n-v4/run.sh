#!/usr/bin/env bash
# Full reproduction of nii-yolo11n-v4 (the default until 2026-11-26; now stage one of nii-yolo11n-v6), in three steps.
#
# 1. Training (train_gpu.sh): 6,000 simulated scenes, yolo11n from scratch, 13 epochs. On a GPU
#    machine ~8 min; on 2 CPU cores ~30 min dataset + ~2.2 h training (DEVICE=cpu WORKERS=2
#    BUDGET_S=9000). Writes $WEIGHTS/model.pt + train_info.json.
# 2. Packaging on the CPU box: ONNX export, thresholds calibrated on the 400 validation scans and
#    metrics on the 400 test scans of v2's dataset, which has the same seed and settings, hence the
#    same held-out val/test scenes (`--from-weights` refuses a dataset built otherwise). ~7 min.
# 3. int8 variant (`nii quantize`, 200 calibration tiles, own thresholds and test metrics). ~7 min.
#
# Environment: the `train` extra in .venv (nothing is downloaded). Seeds: dataset 2026, training 2026.
set -euo pipefail
cd "$(dirname "$0")/../.."
NII=${NII:-.venv/bin/nii}
DATA=${DATA:-datasets/det-v2}            # val/test scans (git-ignored: generated, never committed)
WEIGHTS=${WEIGHTS:-detectors/.nii-yolo11n-v4-weights}
OUT=${OUT:-detectors/nii-yolo11n-v4}

[ -f "$WEIGHTS/model.pt" ] || PY=${PY:-.venv/bin/python} OUTW="$WEIGHTS" bash detectors/nii-yolo11n-v4/train_gpu.sh

# only val/test are needed here (--n-train 0); v2's own command (--n-train 2800) gives the same scenes
[ -f "$DATA/dataset.json" ] || "$NII" -v dataset build --out "$DATA" --seed 2026 --n-train 0 --n-val 400 --n-test 400 \
    --pitch-mm 3.0 --tile 320 --overlap 64 --held-out timber --kinds 0.7,0.15,0.15 \
    --train-targets 1,3 --target-crops 1 --workers 2

"$NII" -v train --data "$DATA" --out "$OUT" --from-weights "$WEIGHTS/model.pt"

rm -rf "$OUT-int8"
"$NII" -v quantize "$OUT" --data "$DATA" --out "$OUT-int8" --n-calibration 200 --seed 2026
