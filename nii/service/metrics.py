"""Prometheus text-format metrics of the HTTP service (exposition format 0.0.4, written by hand).

Thread-safe counters, gauges and histograms; :meth:`Registry.render` produces the ``/metrics`` body.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "Counter", "Gauge", "Histogram", "Registry"]

#: Content type of the Prometheus text exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Latency buckets in seconds (baggage scans take ~0.1-1 s, container scans several seconds).
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(str(v))}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if float(v).is_integer():
        return str(int(v))
    return repr(float(v))


class _Metric:
    kind = ""

    def __init__(self, name: str, doc: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.doc = doc
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {sorted(self.labelnames)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    """A monotonically increasing count (name should end in ``_total``)."""

    kind = "counter"

    def __init__(self, name: str, doc: str, labelnames: Sequence[str] = (), *, initial: Sequence[Sequence[str]] = ()) -> None:
        super().__init__(name, doc, labelnames)
        self._values: dict[tuple[str, ...], float] = {tuple(v): 0.0 for v in initial}
        if not self.labelnames:
            self._values[()] = 0.0

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        k = self._key(labels)
        with self._lock:
            self._values[k] = self._values.get(k, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(self.labelnames, k)} {_num(v)}" for k, v in items]


class Gauge(_Metric):
    """A value read when scraped (from a callable) or set explicitly."""

    kind = "gauge"

    def __init__(self, name: str, doc: str, fn: Callable[[], float] | None = None, *, labels: dict[str, str] | None = None) -> None:
        super().__init__(name, doc, tuple(labels or {}))
        self._fn = fn
        self._label_values = tuple((labels or {}).values())
        self._value = 0.0

    def set(self, v: float) -> None:
        with self._lock:
            self._value = float(v)

    def value(self) -> float:
        if self._fn is not None:
            return float(self._fn())
        with self._lock:
            return self._value

    def render(self) -> list[str]:
        return self.header() + [f"{self.name}{_labels(self.labelnames, self._label_values)} {_num(self.value())}"]


class Histogram(_Metric):
    """Cumulative-bucket histogram with ``_bucket``, ``_sum`` and ``_count`` series."""

    kind = "histogram"

    def __init__(self, name: str, doc: str, labelnames: Sequence[str] = (), *, buckets: Sequence[float] = LATENCY_BUCKETS,
                 initial: Sequence[Sequence[str]] = ()) -> None:
        super().__init__(name, doc, labelnames)
        self.buckets = tuple(sorted(float(b) for b in buckets)) + (math.inf,)
        self._data: dict[tuple[str, ...], list[float]] = {}
        for v in initial if labelnames else [()]:
            self._data[tuple(v)] = [0.0] * (len(self.buckets) + 2)

    def observe(self, v: float, **labels: str) -> None:
        k = self._key(labels)
        with self._lock:
            d = self._data.setdefault(k, [0.0] * (len(self.buckets) + 2))
            for i, b in enumerate(self.buckets):
                if v <= b:
                    d[i] += 1
                    break
            d[-2] += v
            d[-1] += 1

    def count(self, **labels: str) -> int:
        with self._lock:
            d = self._data.get(self._key(labels))
            return int(d[-1]) if d else 0

    def render(self) -> list[str]:
        out = self.header()
        with self._lock:
            items = sorted((k, list(d)) for k, d in self._data.items())
        for k, d in items:
            acc = 0.0
            for i, b in enumerate(self.buckets):
                acc += d[i]
                out.append(f"{self.name}_bucket{_labels(self.labelnames, k, 'le=' + chr(34) + _num(b) + chr(34))} {_num(acc)}")
            out.append(f"{self.name}_sum{_labels(self.labelnames, k)} {_num(d[-2])}")
            out.append(f"{self.name}_count{_labels(self.labelnames, k)} {_num(d[-1])}")
        return out


class Registry:
    """An ordered set of metrics rendered together."""

    def __init__(self) -> None:
        self._metrics: list[_Metric] = []

    def add(self, metric: _Metric) -> _Metric:
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for m in self._metrics:
            lines.extend(m.render())  # type: ignore[attr-defined]
        return "\n".join(lines) + "\n"
