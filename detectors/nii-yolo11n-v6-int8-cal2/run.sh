#!/usr/bin/env bash
# Reproduction of nii-yolo11n-v6-int8-cal2 (nii's default detector): nii-yolo11n-v6-int8's network
# with its operating point calibrated on 1,542 negative scans instead of 694, and tiles that overlap
# by at least 32 px instead of 64.
#
# 1. nii-yolo11n-v6-int8 (in git history before this folder): `nii quantize` of the committed
#    float32 nii-yolo11n-v6 (200 calibration tiles, seed 2026; needs the `train` extra), with
#    thresholds from the 694 negatives of datasets/det-v2d/val. Skipped while it is there.
#    (`bash detectors/nii-yolo11n-v6/run.sh` redoes the whole chain from training.)
# 2. 1,500 further validation-like scans from another base seed (3031: no scene in common with
#    training, validation or test; timber held out as in training), 848 of them negative. ~8 min
#    on 2 cores.
# 3. `nii calibrate thresholds --add`: v6-int8's 694 negatives plus the 848 new ones, per-class
#    rule, 1 % default FAR; evaluated on the 1,400 test scans. ~8 min. `--overlap 32` lowers the
#    minimum tile overlap from 64 px: a full 2000 x 8000 container needs 144 tiles instead of 182
#    (p50 0.78-0.90 s against 0.94-1.08 s over four interleaved pairs of runs; 17-20 % less in
#    each pair); baggage and air-cargo scans (all of validation and
#    test) tile exactly as before, and on 400 simulated 960 x 4000 cargo scans with 242 objects
#    the hits at the operating point were 107 either way (4 lost, 4 gained).
#
# Why: with 694 negatives the 1 % FAR per-class thresholds (a quarter of the budget each) rest on
# the one or two loudest negatives of each class; v6-int8 alarmed on 1.3 % of the test negatives.
# Environment: .venv with nii installed (the `train` extra only for step 1). Nothing is downloaded.
set -euo pipefail
cd "$(dirname "$0")/../.."
NII=${NII:-.venv/bin/nii}
DATA=${DATA:-datasets/det-v2d}   # val/test scans of v6 (git-ignored: generated, never committed)
CAL=${CAL:-datasets/det-cal}     # the extra calibration scans (git-ignored)
SRC=${SRC:-detectors/nii-yolo11n-v6-int8}
OUT=${OUT:-detectors/nii-yolo11n-v6-int8-cal2}

[ -f "$DATA/dataset.json" ] || "$NII" -v dataset build --out "$DATA" --seed 2026 --n-train 0 --n-val 1200 --n-test 1400 \
    --pitch-mm 3.0 --tile 320 --overlap 64 --held-out timber --kinds 0.7,0.15,0.15 \
    --train-targets 1,3 --target-crops 1 --workers 2
[ -f "$CAL/dataset.json" ] || "$NII" -v dataset build --out "$CAL" --seed 3031 --n-train 0 --n-val 1500 --n-test 0 \
    --pitch-mm 3.0 --tile 320 --overlap 64 --held-out timber --kinds 0.7,0.15,0.15 \
    --train-targets 1,3 --target-crops 1 --workers 2
[ -f "$SRC/model.onnx" ] || "$NII" -v quantize detectors/nii-yolo11n-v6 --data "$DATA" --out "$SRC" \
    --n-calibration 200 --seed 2026

if [ -e "$OUT" ]; then
    echo "$OUT exists (the committed folder?): move it aside, or set OUT=detectors/<new name>, to rebuild it" >&2
    exit 1
fi
"$NII" -v calibrate thresholds "$SRC" --data "$CAL/val" --add --overlap 32 --out "$OUT" --test "$DATA/test" --set-default
