"""K-means primitives: fitting centres (torch or sklearn) and nearest-centre assignment.

The one k-means of the package, below both of its users: the HuBERT pretraining targets
(:mod:`spkit.features.pretrain`) and the unit quantizer (:mod:`spkit.units.kmeans`, which wraps a fit
in a :class:`~spkit.units.kmeans.KMeansModel` and GSLM's ``km.bin``).

Two ways to fit (:func:`fit_centers`):

* ``backend="torch"``: k-means++ seeding (greedy, like sklearn) + full-batch Lloyd iterations in
  torch, best of ``n_init`` restarts; runs on GPU too.
* ``backend="sklearn"``: sklearn ``MiniBatchKMeans`` with a preset; ``preset="gslm"`` is GSLM's exact
  setting (n_init=20: 785 s for 20k x 768 frames on 2 cores here), ``preset="fast"`` uses n_init=3.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.cluster import MiniBatchKMeans

log = logging.getLogger(__name__)

GSLM_PRESET: dict[str, Any] = dict(init="k-means++", max_iter=150, batch_size=10000, tol=0.0,
                                   max_no_improvement=100, n_init=20, reassignment_ratio=0.5)
"""sklearn ``MiniBatchKMeans`` keyword arguments GSLM's ``cluster_kmeans.py`` uses (plus n_clusters)."""

FAST_PRESET: dict[str, Any] = dict(GSLM_PRESET, n_init=3)
"""GSLM's settings with 3 restarts instead of 20 (about 7x faster, for small corpora)."""

PRESETS: dict[str, dict[str, Any]] = {"gslm": GSLM_PRESET, "fast": FAST_PRESET}


# --------------------------------------------------------------------------------------------
# Assignment
# --------------------------------------------------------------------------------------------

def _sq_dists(x: torch.Tensor, centers: torch.Tensor, c_sq: torch.Tensor) -> torch.Tensor:
    """``||x - c||^2 - ||x||^2`` for ``x`` ``(n, dim)`` and ``centers`` ``(K, dim)`` -> ``(n, K)``.

    ``||x||^2`` is the same for every centre, so it is left out of the argmin (sklearn does the same).
    """
    return c_sq.unsqueeze(0) - 2.0 * (x @ centers.T)


def assign(x: torch.Tensor, centers: torch.Tensor, chunk: int | None = 16384, *,
           full_distance: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre and squared distance for each row of ``x`` ``(n, dim)``; ``centers`` ``(K, dim)``.

    Computed in the dtype of ``centers`` (callers pass float64 for exact prediction), in chunks of
    ``chunk`` rows to bound memory (None: all rows at once). Returns ``(labels (n,) int64, squared
    distances (n,))``; ties go to the lowest index, as in sklearn.

    The argmin leaves ``||x||^2`` out (as sklearn does) unless ``full_distance``: then it is taken over
    ``(||x||^2 - 2 x.c) + ||c||^2`` as rounded in that order, the arithmetic the HuBERT pretraining
    targets have always used (kept so that they stay bit-identical; the two can differ on near-ties).
    """
    c_sq = (centers * centers).sum(1)
    step = x.shape[0] if chunk is None else chunk
    labels, dists = [], []
    for start in range(0, x.shape[0], max(1, step)):
        xb = x[start:start + step].to(centers.dtype)
        x_sq = (xb * xb).sum(1)
        if full_distance:
            d = x_sq.unsqueeze(1) - 2 * xb @ centers.T + c_sq.unsqueeze(0)
            idx = d.argmin(dim=1)
            labels.append(idx)
            dists.append(d.gather(1, idx.unsqueeze(1)).squeeze(1).clamp_min(0))
        else:
            m, idx = _sq_dists(xb, centers, c_sq).min(1)
            labels.append(idx)
            dists.append((m + x_sq).clamp_min(0))
    if not labels:
        return (torch.empty(0, dtype=torch.long, device=centers.device),
                torch.empty(0, dtype=centers.dtype, device=centers.device))
    return torch.cat(labels), torch.cat(dists)


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------

@dataclass
class KMeansFit:
    """What :func:`fit_centers` found.

    Attributes:
        centers: ``(K, dim)`` numpy array: float64 from the torch backend, the estimator's
            ``cluster_centers_`` (float32 for float32 frames) from sklearn.
        inertia: sum of squared distances of the frames to their centres.
        labels: ``(n,)`` int32 assignment of the frames (torch backend), or None.
        n_iter: Lloyd iterations of the best restart (torch backend), or the estimator's ``n_iter_``.
        estimator: the fitted sklearn ``MiniBatchKMeans`` (sklearn backend), or None.
    """

    centers: np.ndarray
    inertia: float
    labels: np.ndarray | None = None
    n_iter: int = 0
    estimator: Any = None


def _kmeans_pp(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii; 2 + ln k local trials per centre, as sklearn).

    ``x`` ``(n, dim)`` -> initial centres ``(k, dim)``.
    """
    n = x.shape[0]
    trials = 2 + int(math.log(k))
    first = int(torch.randint(n, (1,), generator=gen, device="cpu"))
    centers = [x[first]]
    x_sq = (x * x).sum(1)
    closest = ((x - x[first]) ** 2).sum(1)
    for _ in range(1, k):
        total = float(closest.sum())
        if total <= 0:  # fewer distinct points than k: any point will do
            cand = torch.randint(n, (trials,), generator=gen, device="cpu").to(x.device)
        else:
            cand = torch.multinomial(closest.cpu().double() / total, trials, replacement=True,
                                     generator=gen).to(x.device)
        # Distances of every point to every candidate: (trials, n).
        d = (x_sq.unsqueeze(0) - 2 * x[cand] @ x.T + x_sq[cand].unsqueeze(1)).clamp_min(0)
        d = torch.minimum(d, closest.unsqueeze(0))
        best = int(d.sum(1).argmin())
        closest = d[best]
        centers.append(x[cand[best]])
    return torch.stack(centers)


def _lloyd(x: torch.Tensor, centers: torch.Tensor, max_iter: int, tol: float
           ) -> tuple[torch.Tensor, torch.Tensor, float, int]:
    """Full-batch Lloyd iterations from ``centers`` until the assignments stop changing or the total
    squared centre shift is at most ``tol`` times the mean feature variance (sklearn's criteria).
    Empty clusters are re-seeded with the points farthest from their centres.
    Returns ``(centers, labels, inertia, n_iter)``."""
    k = centers.shape[0]
    tol_abs = tol * float(x.var(0).mean())
    it = 0
    prev: torch.Tensor | None = None
    for it in range(1, max_iter + 1):  # noqa: B007 (n_iter is returned)
        labels, dist = assign(x, centers)
        if prev is not None and torch.equal(labels, prev):
            break  # strict convergence: the centres are already the means of these assignments
        prev = labels
        counts = torch.bincount(labels, minlength=k)
        sums = torch.zeros_like(centers).index_add_(0, labels, x)
        new = sums / counts.clamp_min(1).unsqueeze(1).to(x.dtype)
        empty = (counts == 0).nonzero().flatten()
        if len(empty):
            far = dist.topk(len(empty)).indices
            new[empty] = x[far]
        shift = float(((new - centers) ** 2).sum())
        centers = new
        if shift <= tol_abs:
            break
    labels, dist = assign(x, centers)
    return centers, labels, float(dist.sum()), it


def fit_centers(frames: np.ndarray | torch.Tensor, n_clusters: int, *, backend: str = "torch",
                preset: str = "fast", n_init: int | None = None, max_iter: int | None = None,
                tol: float = 1e-4, seed: int = 0, device: str = "cpu", verbose: bool = False
                ) -> KMeansFit:
    """Fit K-means on ``frames`` ``(n, dim)`` (cast to float32).

    Args:
        frames: the sample to cluster.
        n_clusters: K.
        backend: ``"torch"`` (k-means++ + Lloyd, CPU/GPU) or ``"sklearn"`` (``MiniBatchKMeans``).
        preset: ``"fast"`` (n_init=3) or ``"gslm"`` (GSLM's settings, n_init=20); for the torch
            backend only ``n_init`` and ``max_iter`` of the preset are used.
        n_init, max_iter: override the preset's.
        tol: torch backend: stop when the squared centre shift is at most ``tol`` x mean feature
            variance (0: only when the assignments stop changing).
        seed: same seed, same data -> same centres (sklearn: ``random_state``).
        device: torch backend only.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown k-means preset {preset!r}; choose from {sorted(PRESETS)}")
    if backend not in ("torch", "sklearn"):
        raise ValueError(f"unknown k-means backend {backend!r}; choose 'torch' or 'sklearn'")
    x_np = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if x_np.ndim != 2:
        raise ValueError(f"expected frames of shape (n, dim), got {x_np.shape}")
    if x_np.shape[0] < n_clusters:
        raise ValueError(f"cannot fit {n_clusters} clusters on {x_np.shape[0]} frames")
    x_np = np.ascontiguousarray(x_np, dtype=np.float32)
    params = dict(PRESETS[preset])
    if n_init is not None:
        params["n_init"] = n_init
    if max_iter is not None:
        params["max_iter"] = max_iter
    t0 = time.perf_counter()
    if backend == "sklearn":
        est = MiniBatchKMeans(n_clusters=n_clusters, random_state=seed, verbose=int(verbose), **params)
        est.fit(x_np)
        fit = KMeansFit(est.cluster_centers_, float(est.inertia_), n_iter=int(est.n_iter_), estimator=est)
    else:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        x = torch.from_numpy(x_np).to(device)
        best: tuple[float, torch.Tensor, torch.Tensor, int] | None = None
        for _ in range(params["n_init"]):
            init = _kmeans_pp(x, n_clusters, gen)
            centers, labels, inertia, n_iter = _lloyd(x, init, params["max_iter"], tol=tol)
            if verbose:
                log.info("k-means restart: inertia %.6g after %d iterations", inertia, n_iter)
            if best is None or inertia < best[0]:
                best = (inertia, centers, labels, n_iter)
        assert best is not None
        inertia, centers, labels, n_iter = best
        fit = KMeansFit(centers.double().cpu().numpy(), inertia,
                        labels=labels.cpu().numpy().astype(np.int32), n_iter=n_iter)
    log.info("k-means (%s, K=%d, %d x %d frames): inertia %.6g in %.1f s", backend, n_clusters,
             *x_np.shape, fit.inertia, time.perf_counter() - t0)
    return fit
