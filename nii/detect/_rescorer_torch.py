"""Training and ONNX export of the second-stage crop network (torch; the ``train`` extra).

Imported only by :mod:`nii.detect.rescore_train`, never at package import.
"""

from __future__ import annotations

import itertools
import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from .rescore import N_SCALARS

logger = logging.getLogger(__name__)

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ModelError("training the second stage needs torch: pip install 'nii[train]'") from exc


def _block(i: int, o: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(i, o, 3, 2, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
        nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
    )


#: Stage widths of the committed second stages.
DEFAULT_WIDTHS = (24, 48, 96, 128, 160)


class CropNet(nn.Module):
    """Five stride-2 stages (24-160 channels), mean and max pooling, then an MLP over the pooled
    features and the scalar inputs; ``forward`` returns logits, :class:`_Export` probabilities."""

    def __init__(self, n_out: int = 5, widths: tuple[int, ...] = DEFAULT_WIDTHS) -> None:
        super().__init__()
        self.widths = tuple(int(w) for w in widths)
        chans = (3,) + self.widths
        self.f = nn.Sequential(*[_block(a, b) for a, b in itertools.pairwise(chans)])
        self.h = nn.Sequential(nn.Linear(2 * widths[-1] + N_SCALARS, 128), nn.ReLU(inplace=True), nn.Dropout(0.2), nn.Linear(128, n_out))

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        z = self.f(x)
        return self.h(torch.cat([z.mean((2, 3)), z.amax((2, 3)), s], 1))


class _Export(nn.Module):
    def __init__(self, net: CropNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, crops: torch.Tensor, scalars: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.net(crops, scalars), 1)


def train_cropnet(
    crops: np.ndarray,
    scalars: np.ndarray,
    labels: np.ndarray,
    *,
    n_out: int,
    epochs: int,
    seed: int,
    batch: int = 128,
    lr: float = 2e-3,
    positive_weight: float = 3.0,
    widths: tuple[int, ...] | None = None,
    device: str | None = None,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[CropNet, list[dict[str, Any]]]:
    """Train :class:`CropNet` on uint8 crops ``(N, S, S, 3)``, scalars ``(N, N_SCALARS)`` and labels
    ``(N,)`` (0 = background, ``c + 1`` = class ``c``).

    Each epoch draws ``N`` samples with replacement, a candidate with an object ``positive_weight``
    times as likely as a background one; random flips, transposition and a +-7 % gain on the
    attenuation channels; AdamW with a one-cycle schedule; cross-entropy with 0.05 label smoothing.

    ``widths`` sets the stride-2 stages' channels (default :data:`DEFAULT_WIDTHS`); ``device`` the torch
    device the network trains on (default ``"cpu"``; e.g. ``"cuda"``). Batches are drawn and
    augmented on the CPU with the same random numbers on any device, and the trained network is
    returned on the CPU.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if threads:
        torch.set_num_threads(int(threads))
    n = int(labels.shape[0])
    if n < 16:
        raise ModelError(f"only {n} candidates to train the second stage on: give more labelled training scans")
    batch = min(int(batch), n)
    steps_per_epoch = n // batch
    dev = resolve_device(device)
    net = CropNet(n_out, DEFAULT_WIDTHS if widths is None else tuple(int(w) for w in widths)).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15)
    w = np.where(labels > 0, float(positive_weight), 1.0)
    w /= w.sum()
    s_all = torch.from_numpy(np.ascontiguousarray(scalars, np.float32))
    y_all = torch.from_numpy(np.ascontiguousarray(labels, np.int64))
    log: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for ep in range(epochs):
        net.train()
        idx = rng.choice(n, size=n, p=w)
        tot = 0.0
        for b in range(steps_per_epoch):
            j = np.sort(idx[b * batch : (b + 1) * batch])
            xb = crops[j]
            if rng.random() < 0.5:
                xb = xb[:, :, ::-1]
            if rng.random() < 0.5:
                xb = xb[:, ::-1]
            if rng.random() < 0.5:
                xb = xb.transpose(0, 2, 1, 3)
            x = torch.from_numpy(np.ascontiguousarray(xb)).permute(0, 3, 1, 2).float() / 255
            g = torch.from_numpy(rng.uniform(0.93, 1.07, (len(j), 1, 1, 1)).astype(np.float32))
            x = torch.cat([(x[:, :1] * g).clamp(0, 1), x[:, 1:2], (x[:, 2:] * g).clamp(0, 1)], 1)
            jt = torch.from_numpy(j)
            loss = F.cross_entropy(net(x.to(dev), s_all[jt].to(dev)), y_all[jt].to(dev), label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(j)
        rec = {"epoch": ep + 1, "loss": round(tot / (steps_per_epoch * batch), 5), "seconds": round(time.perf_counter() - t0, 1)}
        log.append(rec)
        if progress:
            progress(f"second stage epoch {rec['epoch']}/{epochs}: loss {rec['loss']:.4f} ({rec['seconds']:.0f} s)")
    net.eval()
    return net.cpu(), log


def resolve_device(device: str | None) -> torch.device:
    """The torch device named ``device`` (None: the CPU), refused with a clear message when torch
    cannot use it."""
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelError(f"device {device!r} is not a torch device (e.g. cpu, cuda, cuda:0): {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r}: torch sees no CUDA device here; train with --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ModelError(f"device {device!r}: the second stage trains on cpu or cuda")
    return dev


def predict(net: CropNet, crops: np.ndarray, scalars: np.ndarray, *, batch: int = 256) -> np.ndarray:
    """Class probabilities ``(N, n_out)`` (torch; the tests compare them with the ONNX export)."""
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, crops.shape[0], batch):
            x = torch.from_numpy(np.ascontiguousarray(crops[i : i + batch])).permute(0, 3, 1, 2).float() / 255
            out.append(F.softmax(net(x, torch.from_numpy(np.ascontiguousarray(scalars[i : i + batch], np.float32))), 1).numpy())
    return np.concatenate(out) if out else np.zeros((0, net.h[-1].out_features), np.float32)


def export_onnx(net: CropNet, path: str | Path, *, crop: int) -> Path:
    """Write ``net`` as ONNX: inputs ``crops (N, 3, crop, crop)`` and ``scalars (N, N_SCALARS)``,
    output ``probs (N, n_out)``; dynamic batch."""
    path = Path(path)
    net.eval()
    x = torch.zeros(2, 3, crop, crop)
    s = torch.zeros(2, N_SCALARS)
    # the TorchScript exporter: the torch.export-based one needs onnxscript, which the train extra
    # does not install; the deprecation notices torch raises inside it are not ours to fail on
    # (as in the Ultralytics adapter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(
            _Export(net), (x, s), str(path), input_names=["crops", "scalars"], output_names=["probs"],
            dynamic_axes={"crops": {0: "n"}, "scalars": {0: "n"}, "probs": {0: "n"}}, opset_version=17, dynamo=False,
        )
    return path
