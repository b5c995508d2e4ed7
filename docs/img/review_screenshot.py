"""Regenerate ``docs/img/review.png``: the review viewer showing a flagged tusk.

Run from the repository root::

    .venv/bin/python docs/img/review_screenshot.py --out docs/img/review.png

What it does, and what is real in the picture:

1. simulates a dual-energy luggage scan (``nii.sim``, profile ``dual_kvp_80_140``, scenario
   ``luggage_clothes``) and keeps the first one whose ground truth holds an ``ivory`` tusk;
2. normalises it with :func:`nii.normalization.normalize` (shipped calibration of the profile);
3. runs the default detector on it (``nii.Detector.load().detect``): every box in the picture,
   model flags and material anomalies, is real output, whatever the model finds or misses (with
   ``nii-yolo11n-v6-int8`` and ``nii-yolo11n-v6-int8-cal2``, seed 12: the tusk flagged as ivory, 0.80;
   with ``nii-yolo11n-v13-int8-cal2``: ivory, 0.64; with ``nii-yolo11n-v13-int8-2s``: ivory, 0.69; with
   ``nii-yolo11n-v13-int8-2s2``: ivory, 0.79, the picture committed in session 17);
4. writes all outputs with :func:`nii.outputs.write_outputs`, serves the folder with the review
   app on 127.0.0.1 and takes a screenshot of the viewer in headless Debian chromium.

If the normaliser cannot run (no material calibration for the profile), it falls back to the
hand-drawn tusk scene of ``tests/outputs/fakes.py`` and says so on stderr.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def simulated_result(work: Path):
    from nii.containers import Scan
    from nii.detect import Detector
    from nii.io import read
    from nii.normalization import normalize
    from nii.pipeline import Result
    from nii.sim.run import generate

    for seed in range(12, 40):
        recs = generate(profile="dual_kvp_80_140", scenario="luggage_clothes", count=6, seed=seed, out_dir=work / f"sim{seed}", workers=1)
        for rec in recs:
            if "ivory" in rec.classes:
                raw = read(work / f"sim{seed}" / rec.file_name)
                scan: Scan = normalize(raw)
                det = Detector.load(None)
                dets = det.detect(scan)
                # the provenance step the pipeline adds: the viewer's header names the model from it
                scan = scan.with_step("detect", det.describe(), model_hash=det.model_hash)
                return Result(source=str(work / rec.file_name), scan_id=raw.scan_id, status="ok", scan=scan, raw=raw,
                              detections=tuple(dets), timings_ms={"total": 0.0}), f"simulated seed {seed}, {rec.file_name}"
    raise RuntimeError("no simulated scan with an ivory tusk found")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "img" / "review.png"))
    ap.add_argument("--width", type=int, default=1600)
    ap.add_argument("--height", type=int, default=900)
    args = ap.parse_args()

    from nii.errors import NiiError
    from nii.outputs import write_outputs
    from nii.review.app import create_app
    from tests.review.browser import browser_page, serve

    with tempfile.TemporaryDirectory(prefix="nii-shot-") as d:
        work = Path(d)
        try:
            result, how = simulated_result(work)
        except (NiiError, ImportError) as exc:
            from tests.outputs.fakes import tusk_result

            print(f"simulation/normalisation unavailable ({exc}); using the hand-drawn tusk scene", file=sys.stderr)
            result, how = tusk_result(320, 900, scan_id="tusk-demo"), "hand-drawn scene (tests/outputs/fakes.py)"
        out = work / "results"
        write_outputs(result, out)
        with serve(create_app(out)) as url, browser_page((args.width, args.height)) as page:
            page.goto(url + "/")
            page.wait_for_selector("#queue li")
            page.fill("#operator", "operator-1")
            page.dispatch_event("#operator", "change")
            page.locator("#queue li").first.click()
            page.wait_for_selector("#overlay rect.det")
            page.wait_for_timeout(600)
            page.locator("#detlist li.det").nth(0).locator("button[data-act=confirm]").click()
            page.wait_for_selector("#detlist li.det:nth-child(1) .state.confirm")
            page.locator("#detlist li.det").nth(0).locator("strong.cls").click()
            page.wait_for_timeout(2600)  # let the toast fade
            page.screenshot(path=args.out)
    print(f"wrote {args.out} from {how}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
