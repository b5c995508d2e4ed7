#!/usr/bin/env bash
# Reproduction of nii-yolo11n-v13-int8-2s (nii's default detector since 2026-11-27, session 16): the
# committed nii-yolo11n-v13-int8-cal2 followed by a second stage, a 0.9 M-parameter CNN that looks
# again at each candidate on a 96 x 96 crop at the scan's own pitch; a flag's confidence is
# sqrt(detector score x CNN probability of the class), and the thresholds are calibrated on it.
#
# 1. `nii rescorer train`: the detector's candidates on 9,500 validation-like scans of three base
#    seeds that no network has trained on and the test never saw (det-cal 3031 x 1,500, det-r1
#    4041 x 4,000, det-r2 5051 x 4,000; 67,479 candidates), 8 epochs, seed 2026; thresholds from
#    the 694 negatives of datasets/det-v2d/val. ~48 min on 2 cores (8 min extraction, 35 min
#    training) + ~25 min to build the scans.
# 2. `nii calibrate thresholds --add`: those 694 negatives plus the negatives of 1,500 further
#    scans (det-r3, base seed 6061), per-class rule, 1 % default FAR; evaluated on the 1,400 test
#    scans. ~12 min (+ ~4 min to build det-r3).
# The scans are git-ignored (generated, never committed; ~2.8 MB each, ~40 GB for all five sets).
# Environment: .venv with nii and the `train` extra (torch). Nothing is downloaded.
set -euo pipefail
cd "$(dirname "$0")/../.."
NII=${NII:-.venv/bin/nii}
DATA=${DATA:-datasets/det-v2d}   # val/test scans of the detector's own recipe
SRC=${SRC:-detectors/nii-yolo11n-v13-int8-cal2}
OUT=${OUT:-detectors/nii-yolo11n-v13-int8-2s}

[ -f "$DATA/dataset.json" ] || "$NII" -v dataset build --out "$DATA" --seed 2026 --n-train 0 --n-val 1200 --n-test 1400 \
    --pitch-mm 3.0 --tile 320 --overlap 64 --held-out timber --kinds 0.7,0.15,0.15 \
    --train-targets 1,3 --target-crops 1 --workers 2
build() {  # folder seed n: validation-like scans (the builder's defaults are det-v2d's recipe)
    [ -f "$1/dataset.json" ] || "$NII" -v dataset build --out "$1" --seed "$2" --n-train 0 --n-val "$3" --n-test 0 --workers 2
}
build datasets/det-cal 3031 1500
build datasets/det-r1 4041 4000
build datasets/det-r2 5051 4000
build datasets/det-r3 6061 1500

if [ -e "$OUT" ]; then
    echo "$OUT exists (the committed folder?): move it aside, or set OUT=detectors/<new name>, to rebuild it" >&2
    exit 1
fi
STAGE="$(dirname "$OUT")/.$(basename "$OUT")-stage1"
rm -rf "$STAGE"
"$NII" -v rescorer train "$SRC" --data datasets/det-cal/val --data datasets/det-r1/val --data datasets/det-r2/val \
    --calibrate "$DATA/val" --test "$DATA/test" --epochs 8 --seed 2026 --workers 2 --threads 2 --out "$STAGE"
"$NII" -v calibrate thresholds "$STAGE" --data datasets/det-r3/val --add --out "$OUT" --test "$DATA/test" --set-default
rm -rf "$STAGE"
