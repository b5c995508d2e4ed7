"""``nii bench NAME [--json]``: run a benchmark module ``nii/bench/<NAME>.py``.

Benchmark modules are discovered from :data:`_BENCHMARKS`; a name whose module is not installed
is skipped. Each module exposes ``add_arguments(parser)`` and ``run(args) -> dict``, and may expose
``table(result)`` returning a rich renderable. The scripts in ``benchmarks/`` call this command
with ``--json``, so there is one way to run and print a benchmark.
"""

from __future__ import annotations

import argparse

from ..bench import BENCHMARKS as _BENCHMARKS  # a light module: names only


def _available() -> list[str]:
    import importlib.util

    out = []
    for name in _BENCHMARKS:
        try:
            if importlib.util.find_spec(f"nii.bench.{name}") is not None:
                out.append(name)
        except ModuleNotFoundError:  # pragma: no cover - nii.bench itself missing
            pass
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="run a benchmark (JSON or a table)",
                              description="Run a benchmark; --json prints machine-readable results.")
    sub = p.add_subparsers(dest="bench_name", metavar="NAME")
    import importlib

    for name in _available():
        mod = importlib.import_module(f"nii.bench.{name}")
        doc = (mod.__doc__ or name).strip().splitlines()[0]
        b = sub.add_parser(name, help=doc, description=doc)
        mod.add_arguments(b)
        b.add_argument("--json", action="store_true", help="print JSON instead of a table")
        b.set_defaults(handler=_run, bench_module=f"nii.bench.{name}")
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _flatten(d, prefix=""):
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _flatten(v, key + ".")
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for i, item in enumerate(v):
                yield from _flatten(item, f"{key}[{i}].")
        else:
            yield key, v


def _run(args: argparse.Namespace) -> int:
    import importlib
    import json

    mod = importlib.import_module(args.bench_module)
    result = mod.run(args)
    from .._malloc import allocator_state

    result.setdefault("malloc", allocator_state())  # it moves container timings (nii/_malloc.py)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
        return 0
    from rich.console import Console
    from rich.table import Table

    if hasattr(mod, "table"):  # a module may lay its results out itself
        Console().print(mod.table(result))
        return 0
    t = Table(title=f"nii bench {args.bench_name}")
    t.add_column("key")
    t.add_column("value", justify="right")
    for k, v in _flatten(result):
        t.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    Console().print(t)
    return 0
