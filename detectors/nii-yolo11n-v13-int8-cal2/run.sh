#!/usr/bin/env bash
# Reproduction of nii-yolo11n-v13-int8-cal2 (nii's default detector since 2026-11-27): the committed
# float32 nii-yolo11n-v13 quantised to int8, with its operating point calibrated on 1,542 negative
# scans and tiles that overlap by at least 32 px (the same two steps that made v6-int8-cal2).
#
# 1. `nii quantize` of detectors/nii-yolo11n-v13 (200 calibration tiles, seed 2026; needs the
#    `train` extra), thresholds from the 694 negatives of datasets/det-v2d/val. ~4 min.
#    Since 2026-11-27 (session 21) it also rewrites the int8 graph to take the uint8 tiles and
#    compute its Softmax on the last axis (`nii optimize`; outputs bit-identical), as committed.
#    (`bash detectors/nii-yolo11n-v13/run.sh` redoes the float32 network from training.)
# 2. `nii calibrate thresholds --add --overlap 32`: those 694 negatives plus the 848 of the 1,500
#    further validation-like scans of base seed 3031 (datasets/det-cal; no scene in common with
#    training, validation or test), per-class rule, 1 % default FAR; evaluated on the 1,400 test
#    scans. ~4 min (+ ~8 min to build det-cal).
# Environment: .venv with nii installed (the `train` extra for step 1). Nothing is downloaded.
set -euo pipefail
cd "$(dirname "$0")/../.."
NII=${NII:-.venv/bin/nii}
DATA=${DATA:-datasets/det-v2d}   # val/test scans (git-ignored: generated, never committed)
CAL=${CAL:-datasets/det-cal}     # the extra calibration scans (git-ignored)
SRC=${SRC:-detectors/nii-yolo11n-v13}
OUT=${OUT:-detectors/nii-yolo11n-v13-int8-cal2}

[ -f "$DATA/dataset.json" ] || "$NII" -v dataset build --out "$DATA" --seed 2026 --n-train 0 --n-val 1200 --n-test 1400 \
    --pitch-mm 3.0 --tile 320 --overlap 64 --held-out timber --kinds 0.7,0.15,0.15 \
    --train-targets 1,3 --target-crops 1 --workers 2
[ -f "$CAL/dataset.json" ] || "$NII" -v dataset build --out "$CAL" --seed 3031 --n-train 0 --n-val 1500 --n-test 0 \
    --pitch-mm 3.0 --tile 320 --overlap 64 --held-out timber --kinds 0.7,0.15,0.15 \
    --train-targets 1,3 --target-crops 1 --workers 2

if [ -e "$OUT" ]; then
    echo "$OUT exists (the committed folder?): move it aside, or set OUT=detectors/<new name>, to rebuild it" >&2
    exit 1
fi
rm -rf "$SRC-int8"
"$NII" -v quantize "$SRC" --data "$DATA" --out "$SRC-int8" --n-calibration 200 --seed 2026
"$NII" -v calibrate thresholds "$SRC-int8" --data "$CAL/val" --add --overlap 32 --out "$OUT" --test "$DATA/test" --set-default
rm -rf "$SRC-int8"
