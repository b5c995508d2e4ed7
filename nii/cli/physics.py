"""``nii physics build|show``: regenerate or inspect the physics tables and scanner profiles.

``nii physics build [--out DIR]`` recomputes ``calibration/physics`` from xraydb and spekpy (the
``physics`` extra; offline). ``nii physics show`` lists materials (density, Zeff, mu at a few
energies) and scanner profiles (mean detected energy per channel, energy bins, binning error).
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("physics", help="build or show the X-ray physics tables and scanner profiles")
    psub = p.add_subparsers(dest="physics_command", metavar="ACTION")

    b = psub.add_parser("build", help="regenerate calibration/physics (needs the [physics] extra: xraydb, spekpy)")
    b.add_argument("--out", metavar="DIR", default=None, help="output folder (default: calibration/physics)")
    b.add_argument("--profiles", metavar="DIR", default=None, help="scanner-profile folder (default: calibration/profiles)")
    b.add_argument("--json", action="store_true", help="print the summary as JSON")
    b.set_defaults(handler=run_build)

    s = psub.add_parser("show", help="list materials and scanner profiles")
    s.add_argument("--material", action="append", metavar="NAME", help="only these materials (repeatable)")
    s.add_argument("--profile", action="append", metavar="ID", help="only these profiles (repeatable)")
    s.add_argument("--energies", default="30,60,100,150", help="keV at which to print mu/rho (default 30,60,100,150)")
    s.add_argument("--json", action="store_true", help="print JSON instead of tables")
    s.set_defaults(handler=run_show)

    def _help(_args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(handler=_help)


def run_build(args: argparse.Namespace) -> int:
    from ..physics.build import build_tables
    from ._common import emit_json, stdout_console

    summary = build_tables(args.out, profiles_dir=args.profiles)
    if args.json:
        emit_json(summary)
        return 0
    con = stdout_console()
    con.print(f"[bold]physics tables[/] written to {summary['out']}")
    for name, digest in summary["sha256"].items():
        con.print(f"  {name}  sha256 {digest}", soft_wrap=True)
    v = summary["versions"]
    con.print(f"  {summary['materials']} materials, {len(summary['spectra'])} tube spectra; xraydb {v['xraydb']}, spekpy {v['spekpy']}")
    return 0


def _show_data(args: argparse.Namespace) -> dict:
    import numpy as np

    from ..errors import InvalidParameterError
    from ..physics.tables import load_tables
    from ..profiles import list_profiles, load_profile
    from ..sim.imaging import spectral_bins

    tables = load_tables()
    try:
        kevs = [float(x) for x in str(args.energies).split(",") if x.strip()]
    except ValueError as exc:
        raise InvalidParameterError(f"--energies must be comma-separated keV values, got {args.energies!r}") from exc
    mats = args.material or list(tables.materials)
    materials = []
    for m in mats:
        mu = tables.mu_rho(m)
        materials.append(
            {
                "name": m,
                "category": tables.composition(m)["category"],
                "density": tables.density(m),
                "zeff": round(tables.zeff(m), 2),
                "mu_rho": {f"{k:g}": round(float(mu[tables.energy_index(k)]), 5) for k in kevs},
            }
        )
    profiles = []
    for pid in args.profile or list_profiles():
        p = load_profile(pid)
        w = p.effective_spectra(tables)
        bins = spectral_bins(p, tables)
        d = p.describe()
        d["mean_detected_kev"] = [round(float(x), 1) for x in (w * tables.energies_kev).sum(axis=1)]
        d["energy_bins"] = list(bins.n_bins)
        d["binning_max_rel_error"] = float(f"{bins.max_rel_error:.2e}")
        d["swank"] = [round(float(x), 3) for x in np.asarray(bins.swank)]
        profiles.append(d)
    return {"tables_sha256": tables.sha256, "folder": str(tables.folder), "materials": materials, "profiles": profiles}


def run_show(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ._common import emit_json, stdout_console

    data = _show_data(args)
    if args.json:
        emit_json(data)
        return 0
    con = stdout_console()
    t = Table(title=f"materials ({data['folder']}, id {data['tables_sha256'][:12]})")
    for col in ("material", "category", "ρ g/cm³", "Zeff"):
        t.add_column(col)
    kevs = list(data["materials"][0]["mu_rho"]) if data["materials"] else []
    for k in kevs:
        t.add_column(f"μ/ρ {k} keV", justify="right")
    for m in data["materials"]:
        t.add_row(m["name"], m["category"], f"{m['density']:g}", f"{m['zeff']:.2f}", *[f"{v:.4g}" for v in m["mu_rho"].values()])
    con.print(t)
    p = Table(title="scanner profiles")
    for col in ("id", "kind", "energies", "mean detected keV", "bins", "bin error", "pitch mm", "ADC bits", "quanta/px"):
        p.add_column(col)
    for d in data["profiles"]:
        p.add_row(
            d["id"], d["kind"], ", ".join(d["energies"]), " / ".join(map(str, d["mean_detected_kev"])),
            " / ".join(map(str, d["energy_bins"])), f"{d['binning_max_rel_error']:.1e}",
            "x".join(f"{x:g}" for x in d["pitch_mm"]), str(d["adc_bits"]), " / ".join(f"{q:g}" for q in d["quanta_per_pixel"]),
        )
    con.print(p)
    return 0
