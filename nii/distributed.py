"""Scale-out of ``nii scan`` over a Dask distributed cluster (the ``dask`` extra).

``nii scan INPUT... -o OUT --dask ADDRESS`` (or ``--dask local`` / ``--dask local:N`` for a
:class:`~distributed.LocalCluster` of N worker processes) runs the same job as a local
``nii scan``: every worker builds one warmed-up :class:`~nii.pipeline.Pipeline` (a worker
plugin, so workers that join later get one too), processes scans and writes their outputs into a
private staging folder under ``OUT``; the client then gives each result its final file stem *in
input order*, exactly as the local run does, and moves the files into ``OUT`` (JSON report last).
The outputs are therefore the same files with the same content as a local run, apart from the
processing time stamps and stage timings.

Workers must see the input files and ``OUT`` under the same paths as the client (a shared
filesystem); with a remote scheduler, inputs are passed as absolute paths.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker

from .errors import InvalidParameterError, NiiError
from .pipeline import Pipeline, Result, result_record

__all__ = ["DaskScan", "open_client", "parse_address", "scan_files", "worker_peak_rss"]

logger = logging.getLogger(__name__)

_PLUGIN = "nii-pipeline"


def parse_address(address: str) -> tuple[str, int | None]:
    """``"local"`` → ``("local", None)``, ``"local:4"`` → ``("local", 4)``, else ``(address, None)``."""
    a = address.strip()
    if a == "local":
        return "local", None
    if a.startswith("local:"):
        try:
            n = int(a.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise InvalidParameterError(f"--dask {address!r}: local:N needs a positive number of workers")
        return "local", n
    if not a:
        raise InvalidParameterError("--dask: empty scheduler address")
    return a, None


def open_client(address: str, *, memory_limit: str | None = "auto") -> tuple[Client, LocalCluster | None]:
    """Connect to a scheduler, or start a local cluster of worker processes (one thread each)."""
    kind, n = parse_address(address)
    if kind == "local":
        n = n or max(1, (os.cpu_count() or 1))
        cluster = LocalCluster(
            # loopback only, any free ports (a fixed dashboard port would clash with other clusters)
            n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0",
            memory_limit=memory_limit, silence_logs=logging.WARNING,
        )
        return Client(cluster), cluster
    try:
        return Client(kind, timeout="20s"), None
    except (OSError, TimeoutError) as exc:
        raise InvalidParameterError(f"--dask {address}: cannot reach the scheduler: {exc}") from exc


class PipelinePlugin(WorkerPlugin):
    """Builds one warmed-up :class:`Pipeline` per worker process."""

    name = _PLUGIN

    def __init__(self, settings: dict[str, Any], *, malloc: dict[str, int] | None = None) -> None:
        self.settings = dict(settings)
        self.malloc = None if malloc is None else dict(malloc)
        self.pipeline: Pipeline | None = None

    def setup(self, worker: Any) -> None:
        if self.malloc is not None:  # the client's process runs with it (nii --malloc tuned)
            from ._malloc import tune_allocator

            tune_allocator(**self.malloc)
        self.pipeline = Pipeline(**self.settings)

    def teardown(self, worker: Any) -> None:
        self.pipeline = None


def _worker_pipeline() -> Pipeline:
    plugin = get_worker().plugins[_PLUGIN]
    if plugin.pipeline is None:  # pragma: no cover - setup failed; Dask logged why
        raise NiiError("the nii pipeline could not be built on this worker (see the worker log)")
    return plugin.pipeline


def _process_task(index: int, path: str, display: str, stage: str, formats: tuple[str, ...], stem: str | None) -> dict[str, Any]:
    """Worker side: process one scan and write its outputs into ``stage/<index>``."""
    import time

    from .outputs import output_stem, write_outputs

    t0 = time.perf_counter()
    res = _worker_pipeline().process_safe(path)
    if path != display:
        res = dataclasses.replace(res, source=display)
        if not res.ok and res.error:
            res = dataclasses.replace(res, error=res.error.replace(path, display))
    rec: dict[str, Any]
    if res.ok:
        base = stem or output_stem(res)
        folder = Path(stage) / str(index)
        try:
            written = write_outputs(res, folder, formats=formats, stem=base)
        except (NiiError, OSError) as exc:
            res = Result(source=res.source, scan_id=res.scan_id, status="error", error=f"cannot write outputs: {exc}")
            rec = result_record(res)
        else:
            rec = result_record(res, written)
            rec["stem"] = base
            rec["staged"] = {k: Path(v).name for k, v in written.items()}
    else:
        rec = result_record(res)
    rec["index"] = index
    rec["worker"] = get_worker().address
    rec["task_ms"] = (time.perf_counter() - t0) * 1e3  # process + write on the worker
    return rec


def worker_peak_rss(client: Client) -> dict[str, int]:
    """Peak resident memory (bytes) of each worker process."""

    def _peak() -> int:
        # VmHWM is this process's own high-water mark; ru_maxrss may carry the parent's across exec
        try:
            with open("/proc/self/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        import resource
        import sys

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(r if sys.platform == "darwin" else r * 1024)

    return {k: int(v) for k, v in client.run(_peak).items()}


class DaskScan:
    """Run ``nii scan`` jobs on a Dask cluster with one warmed-up pipeline per worker.

    Parameters
    ----------
    client : distributed.Client
    pipeline_settings : dict
        Keyword arguments of :class:`~nii.pipeline.Pipeline` (``profile``, ``calibration``,
        ``model``, ``far``).
    """

    def __init__(self, client: Client, pipeline_settings: dict[str, Any]) -> None:
        self.client = client
        self.settings = dict(pipeline_settings)
        from . import _malloc

        # workers get the client process's malloc settings (nii/_malloc.py), if it has any
        client.register_plugin(PipelinePlugin(self.settings, malloc=_malloc._state), name=_PLUGIN)

    def run(
        self,
        files: Sequence[str | os.PathLike],
        out: str | os.PathLike,
        *,
        formats: Sequence[str],
        on_record: Callable[[dict[str, Any]], None] | None = None,
        absolute: bool = False,
    ) -> list[dict[str, Any]]:
        """Process ``files``; return one record per file in input order (see :func:`result_record`).

        ``on_record`` is called in input order as each record is final (for progress and
        ``--json`` lines).
        """
        from .outputs import output_stem

        out = Path(out)
        formats = tuple(formats)
        stage = out / f".nii-dask-{uuid.uuid4().hex[:12]}"
        stage.mkdir(parents=True, exist_ok=True)
        shown = [os.fspath(f) for f in files]
        paths = [os.path.abspath(s) if absolute else s for s in shown]
        try:
            futures = {
                self.client.submit(_process_task, i, p, s, str(stage), formats, None, key=f"nii-scan-{uuid.uuid4().hex}", pure=False): i
                for i, (p, s) in enumerate(zip(paths, shown))
            }
            done: dict[int, dict[str, Any]] = {}
            records: list[dict[str, Any]] = []
            used: set[str] = set()
            ac = as_completed(list(futures))
            for fut in ac:
                rec = fut.result()
                i = rec["index"]
                done[i] = rec
                while len(records) in done:
                    j = len(records)
                    r = done[j]
                    if r["ok"]:
                        stem = output_stem(_StemView(r["scan_id"], r["source"]), used)
                        if stem != r["stem"]:
                            # another scan earlier in the batch has this id: write again under the unique stem
                            shutil.rmtree(stage / str(j), ignore_errors=True)
                            redo = self.client.submit(_process_task, j, paths[j], shown[j], str(stage), formats, stem,
                                                      key=f"nii-scan-{uuid.uuid4().hex}", pure=False)
                            r = redo.result()
                            done[j] = r
                            if not r["ok"]:
                                records.append(self._final(r, on_record))
                                continue
                        r = self._move(r, stage / str(j), out)
                    records.append(self._final(r, on_record))
            return records
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    @staticmethod
    def _final(rec: dict[str, Any], cb: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
        if cb is not None:
            cb(rec)
        return rec

    @staticmethod
    def _move(rec: dict[str, Any], folder: Path, out: Path) -> dict[str, Any]:
        """Move staged outputs into ``out`` (the JSON report last) and point the record at them."""
        staged: dict[str, str] = rec["staged"]
        final: dict[str, str] = {}
        order = [k for k in staged if k != "json"] + (["json"] if "json" in staged else [])
        for k in order:
            dest = out / staged[k]
            os.replace(folder / staged[k], dest)
            final[k] = str(dest)
        rec = dict(rec)
        rec["outputs"] = final
        j = dict(rec["json"])
        j["notes"] = [n for n in j["notes"] if not n.startswith("wrote ")] + [f"wrote {p}" for p in final.values()]
        rec["json"] = j
        return rec


@dataclasses.dataclass(frozen=True)
class _StemView:
    scan_id: str
    source: str | None


def scan_files(
    files: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    address: str,
    formats: Sequence[str],
    pipeline_settings: dict[str, Any],
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One ``nii scan --dask`` job: open the cluster, run, close. Returns ``(records, info)``."""
    kind, _ = parse_address(address)
    client, cluster = open_client(address)
    try:
        info = {"address": address, "workers": len(client.scheduler_info().get("workers", {})), "dashboard": client.dashboard_link}
        job = DaskScan(client, pipeline_settings)
        records = job.run(files, out, formats=formats, on_record=on_record, absolute=kind != "local")
        info["peak_rss_bytes"] = worker_peak_rss(client)
        return records, info
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
