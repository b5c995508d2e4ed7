"""``nii evaluate``: detection metrics of a model on a labelled folder of scans (or YOLO tiles).

Examples::

    nii evaluate --data data/det-v1/test --json
    nii evaluate --data data/det-v1/test --model detectors/demo-tiny --far 0.5% --plots out/
    nii evaluate --data data/det-v1/val --model detectors/candidate --compare detectors/nii-yolo11n-v13
"""

from __future__ import annotations

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="Pd at image-level FAR, AP50/AP50-95, FROC, PR and confusion plots on labelled scans",
        description="Run the detector on every labelled scan of a folder (nii HDF5 with /truth, directly or under "
        "scans/) or on a YOLO folder (images/ + labels/), and report per-class Pd at 1 %% and 5 %% image-level FAR, "
        "Pd at the operating point, AP50 and AP50-95 (pycocotools), FROC, per input kind and scenario family.",
    )
    p.add_argument("--data", required=True, help="labelled folder")
    p.add_argument("--model", default=None, help="model folder (default: the installed default model)")
    p.add_argument("--backend", choices=("onnx", "ultralytics"), default="onnx")
    p.add_argument("--far", default=None, help="operating point, e.g. 1%% or 0.5%% (default: the model's)")
    p.add_argument("--plots", default=None, help="folder for pr_curve.png and confusion_matrix.png")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N items")
    p.add_argument("--anomalies", action="store_true",
                   help="also measure the material-anomaly cue: share of objects it covers, alone and with the model, "
                   "and its regions on negative scans (scans only)")
    p.add_argument("--compare", default=None, metavar="BASELINE",
                   help="also run the model folder BASELINE on the same scans and report the paired bootstrap "
                   "difference (this model minus BASELINE) of Pd at 1 %% and 5 %% FAR, per class and class mean, "
                   "and of Pd and far_images at each model's operating point")
    p.add_argument("--n-boot", type=int, default=2000, help="resamples of the --compare bootstrap (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --compare bootstrap (default 0)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON document")
    p.set_defaults(handler=_handle)


def _handle(args) -> int:
    from ..detect import Detector
    from ..detect.evaluate import collect, evaluate_anomalies, evaluate_records, write_plots
    from ..errors import InvalidParameterError
    from ._common import emit_json, progress, stdout_console

    det = Detector.load(args.model, backend=args.backend)
    base = Detector.load(args.compare, backend=args.backend) if args.compare else None
    if base is not None and list(base.config.classes) != list(det.config.classes):
        raise InvalidParameterError(f"--compare {args.compare}: its classes {list(base.config.classes)} differ from "
                                    f"the model's {list(det.config.classes)}")
    if base is not None and args.n_boot < 100:
        raise InvalidParameterError(f"--n-boot must be >= 100, got {args.n_boot}")
    with progress(disable=args.json) as bar:
        task = bar.add_task("evaluate", total=None)

        def cb(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        records = collect(det, args.data, limit=args.limit, progress=cb, anomalies=True if args.anomalies else None)
        if base is not None:
            task = bar.add_task("baseline", total=None)
            base_records = collect(base, args.data, limit=args.limit, progress=cb)
    thr = det.thresholds.for_far(args.far)
    metrics = evaluate_records(records, det.config.classes, thresholds=thr)
    if args.anomalies:
        metrics["material_anomaly"] = evaluate_anomalies(records, det.config.classes, thresholds=thr)
    metrics["model"] = str(det.folder)
    metrics["model_sha256"] = det.model_hash
    metrics["operating_far"] = det.thresholds.default_far if args.far is None else args.far
    if base is not None:
        from ..detect.compare import compare_records

        metrics["comparison"] = compare_records(
            base_records, records, det.config.classes, thresholds_a=base.thresholds.for_far(args.far), thresholds_b=thr,
            n_boot=args.n_boot, seed=args.seed, names=(str(base.folder), str(det.folder)),
        )
    if args.plots:
        metrics["plots"] = [str(p) for p in write_plots(records, det.config.classes, args.plots, thresholds=thr)]
    if args.json:
        emit_json(metrics)
        return 0
    from rich.table import Table

    con = stdout_console()

    def with_ci(d: dict, key: str) -> str:
        ci = d.get(key + "_ci95")
        return str(d.get(key)) + (f" [{ci[0]}, {ci[1]}]" if ci else "")

    t = Table(title=f"{det.config.name or det.folder.name} on {args.data}: {metrics['n_images']} images, "
              f"{metrics['n_negative_images']} negative, far_images {with_ci(metrics, 'far_images')}")
    for col in ("class", "objects", "Pd@op", "Pd@1%FAR", "Pd@5%FAR", "AP50", "AP50-95"):
        t.add_column(col)
    for c, d in metrics["classes"].items():
        t.add_row(c, str(d["n_objects"]), with_ci(d, "pd_at_operating_point"), with_ci(d, "pd_at_far_1pct"),
                  *(str(d.get(k)) for k in ("pd_at_far_5pct", "ap50", "ap50_95")))
    con.print(t)
    con.print("in brackets: 95 % Wilson intervals (objects taken as independent)")
    a = metrics.get("material_anomaly")
    if a:
        per = ", ".join(f"{c} {with_ci(d, 'recall')} (with the model {d.get('found_by_model_or_cue')})" for c, d in a["classes"].items())
        con.print(f"material-anomaly cue: objects covered {per}; {a['anomalies_per_negative_scan']} regions per negative scan, "
                  f"{with_ci(a, 'negative_scans_with_anomaly')} of negative scans with any")
    for k, d in sorted(metrics.get("by_object_kind", {}).items(), key=lambda kv: (str(kv[1]["class"]), kv[0])):
        con.print(f"object kind {k} ({d['class']}): {d['n_objects']} objects, Pd@op {d.get('pd_at_operating_point')}, "
                  f"Pd@1%FAR {d.get('pd_at_far_1pct')}, with any candidate {d.get('candidate_rate')}")
    for k, d in metrics.get("by_object_mass", {}).items():
        con.print(f"object mass {k}: {d['n_objects']} objects, Pd@op {d.get('pd_at_operating_point')}, "
                  f"Pd@1%FAR {d.get('pd_at_far_1pct')}, with any candidate {d.get('candidate_rate')}")
    for key in ("by_input_kind", "by_scenario_family"):
        for g, m in metrics.get(key, {}).items():
            pds = ", ".join(f"{c} {d.get('pd_at_operating_point')}" for c, d in m["classes"].items())
            con.print(f"{key[3:]} {g or '-'}: {m['n_images']} images, far {m.get('far_images')}; Pd {pds}")
    if "comparison" in metrics:
        _print_comparison(con, metrics["comparison"])
    return 0


def _print_comparison(con, cmp: dict) -> None:
    from rich.table import Table

    def iv(e: dict) -> str:
        ci = e.get("diff_ci95")
        return f"{e.get('diff')} [{ci[0]}, {ci[1]}]" if ci else str(e.get("diff"))

    for key in ("pd_at_far_1pct", "pd_at_far_5pct", "pd_at_operating_point"):
        if key not in cmp:
            continue
        t = Table(title=f"{key}: {cmp['b']} (B) against {cmp['a']} (A), paired bootstrap over {cmp['n_images']} images "
                  f"({cmp['n_boot']} resamples, seed {cmp['seed']})")
        for col in ("class", "objects", "A", "B", "B - A [95 %]", "resamples B higher", "B lower"):
            t.add_column(col)
        rows = [*cmp[key]["classes"].items(), ("class mean", cmp[key]["class_mean"])]
        for name, e in rows:
            t.add_row(name, str(e.get("n_objects", "")), str(e["a"]), str(e["b"]), iv(e), str(e["share_b_higher"]), str(e["share_b_lower"]))
        con.print(t)
    if "far_images" in cmp:
        e = cmp["far_images"]
        con.print(f"far_images at each model's operating point: A {e['a']}, B {e['b']}, B - A {iv(e)}")
    con.print("the intervals resample whole images (objects of one scan move together) and re-take each "
              "threshold at a FAR on every resample's negatives")
