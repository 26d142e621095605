"""K-means over speech features: frame sampling, fitting, GSLM's ``km.bin`` format, GPU prediction.

GSLM quantizes HuBERT-Base layer-6 features with an sklearn ``MiniBatchKMeans`` (K=100) and ships it
as ``km.bin``, a ``joblib.dump`` of the fitted estimator. :class:`KMeansModel` loads such a file
unchanged (only ``cluster_centers_`` is needed), writes the same format, and predicts with a torch
argmin over the centres (CPU or GPU) that agrees with sklearn's ``predict``.

Two ways to fit:

* ``backend="torch"`` (default): k-means++ seeding (greedy, like sklearn) + full-batch Lloyd
  iterations in torch, best of ``n_init`` restarts; runs on GPU too. Saved as a fitted sklearn
  ``KMeans`` so GSLM's own scripts can ``joblib.load(...).predict`` it.
* ``backend="sklearn"``: sklearn ``MiniBatchKMeans`` with a preset; ``preset="gslm"`` is GSLM's exact
  setting (n_init=20: 785 s for 20k x 768 frames on 2 cores here), ``preset="fast"`` uses n_init=3.

``joblib.load`` unpickles arbitrary objects: load ``km.bin`` files from trusted sources only.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
from tqdm.auto import tqdm

from spkit.audio import AudioError
from spkit.data.corpus import load_utterance
from spkit.errors import UserError
from spkit.io import atomic_path

log = logging.getLogger(__name__)

GSLM_PRESET: dict[str, Any] = dict(init="k-means++", max_iter=150, batch_size=10000, tol=0.0,
                                   max_no_improvement=100, n_init=20, reassignment_ratio=0.5)
"""sklearn ``MiniBatchKMeans`` keyword arguments GSLM's ``cluster_kmeans.py`` uses (plus n_clusters)."""

FAST_PRESET: dict[str, Any] = dict(GSLM_PRESET, n_init=3)
"""GSLM's settings with 3 restarts instead of 20 (about 7x faster, for small corpora)."""

PRESETS: dict[str, dict[str, Any]] = {"gslm": GSLM_PRESET, "fast": FAST_PRESET}


class KMeansError(UserError, ValueError):
    """A k-means file that cannot be used, or one that does not fit the features; names the file."""


# --------------------------------------------------------------------------------------------
# Frame sampling
# --------------------------------------------------------------------------------------------

def sample_frames(features: Iterable[torch.Tensor | np.ndarray], max_frames: int,
                  seed: int = 0) -> np.ndarray:
    """Uniform sample of at most ``max_frames`` frames from a stream of ``(frames, dim)`` arrays.

    Reservoir sampling (Vitter's algorithm R, vectorised per utterance): one pass, memory bounded by
    ``max_frames x dim``, every frame of the stream equally likely to be kept whatever the stream's
    length, and the same ``seed`` gives the same sample. Returns ``(n, dim)`` float32 in stream order
    of first arrival into the reservoir slot (order does not matter to k-means).
    """
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    rng = np.random.default_rng(seed)
    reservoir: np.ndarray | None = None
    seen = 0
    for feats in features:
        x = feats.detach().cpu().numpy() if isinstance(feats, torch.Tensor) else np.asarray(feats)
        if x.ndim != 2:
            raise ValueError(f"expected features of shape (frames, dim), got {x.shape}")
        if reservoir is None:
            reservoir = np.empty((max_frames, x.shape[1]), dtype=np.float32)
        elif x.shape[1] != reservoir.shape[1]:
            raise ValueError(f"feature dimension changed within the stream: {reservoir.shape[1]} -> "
                             f"{x.shape[1]}")
        n = x.shape[0]
        fill = min(n, max(0, max_frames - seen))
        if fill:
            reservoir[seen:seen + fill] = x[:fill]
        rest = x[fill:]
        if len(rest):
            # Frame number t (0-based, global) replaces slot j ~ U[0, t] when j < max_frames. Later
            # frames must win over earlier ones drawing the same slot: numpy's fancy assignment keeps
            # the last write, which is the sequential algorithm's result.
            t = np.arange(seen + fill, seen + n)
            j = (rng.random(len(t)) * (t + 1)).astype(np.int64)
            keep = j < max_frames
            reservoir[j[keep]] = rest[keep]
        seen += n
    if reservoir is None or seen == 0:
        raise ValueError("no frames to sample: the feature stream was empty")
    return reservoir[:min(seen, max_frames)].copy()


# --------------------------------------------------------------------------------------------
# Prediction (shared by the model and the torch fitter)
# --------------------------------------------------------------------------------------------

def _sq_dists(x: torch.Tensor, centers: torch.Tensor, c_sq: torch.Tensor) -> torch.Tensor:
    """``||x - c||^2 - ||x||^2`` for ``x`` ``(n, dim)`` and ``centers`` ``(K, dim)`` -> ``(n, K)``.

    ``||x||^2`` is the same for every centre, so it is left out of the argmin (sklearn does the same).
    """
    return c_sq.unsqueeze(0) - 2.0 * (x @ centers.T)


def assign(x: torch.Tensor, centers: torch.Tensor, chunk: int = 16384) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre and squared distance for each row of ``x`` ``(n, dim)``; ``centers`` ``(K, dim)``.

    Computed in the dtype of ``centers`` (callers pass float64 for exact prediction), in chunks of
    rows to bound memory. Returns ``(labels (n,) int64, squared distances (n,))``; ties go to the
    lowest index, as in sklearn.
    """
    c_sq = (centers * centers).sum(1)
    labels, dists = [], []
    for start in range(0, x.shape[0], chunk):
        xb = x[start:start + chunk].to(centers.dtype)
        d = _sq_dists(xb, centers, c_sq)
        m, idx = d.min(1)
        labels.append(idx)
        dists.append((m + (xb * xb).sum(1)).clamp_min(0))
    if not labels:
        return (torch.empty(0, dtype=torch.long, device=centers.device),
                torch.empty(0, dtype=centers.dtype, device=centers.device))
    return torch.cat(labels), torch.cat(dists)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

@dataclass
class KMeansModel:
    """K cluster centres and the sklearn estimator they came from (kept so ``save`` writes it back).

    Attributes:
        centers: ``(K, dim)`` float64 numpy array, the estimator's ``cluster_centers_``.
        estimator: the fitted sklearn object (``MiniBatchKMeans`` or ``KMeans``), or None.
        path: the ``km.bin`` this came from, named in errors.
    """

    centers: np.ndarray
    estimator: Any = None
    path: Path | None = None

    def __post_init__(self) -> None:
        c = np.asarray(self.centers)
        where = f"{self.path}: " if self.path else ""
        if c.ndim != 2 or c.shape[0] < 1 or c.shape[1] < 1:
            raise KMeansError(f"{where}cluster centres must have shape (K, dim), got {c.shape}")
        if not np.isfinite(c).all():
            raise KMeansError(f"{where}cluster centres contain NaN or infinite values")
        self.centers = c.astype(np.float64)
        self._device_centers: dict[str, torch.Tensor] = {}

    @property
    def n_clusters(self) -> int:
        """K, the number of units."""
        return int(self.centers.shape[0])

    @property
    def dim(self) -> int:
        """The feature dimension the centres live in."""
        return int(self.centers.shape[1])

    @property
    def fingerprint(self) -> str:
        """sha256 (16 hex digits) of the centres' shape and float64 bytes: keys the unit caches."""
        h = hashlib.sha256(f"kmeans:{self.centers.shape}".encode())
        h.update(np.ascontiguousarray(self.centers).tobytes())
        return h.hexdigest()[:16]

    # ---- I/O ----------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike) -> KMeansModel:
        """Load a GSLM/fairseq ``km.bin`` (``joblib.dump`` of a fitted sklearn k-means).

        Full unpickling: trusted files only. sklearn version-mismatch warnings are logged once, not
        raised: only ``cluster_centers_`` is used for prediction here.
        """

        path = Path(path)
        if not path.is_file():
            raise KMeansError(f"{path}: no such k-means file")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                est = joblib.load(path)
        except Exception as e:
            raise KMeansError(f"{path}: not a joblib k-means file ({type(e).__name__}: {e})") from e
        for w in caught:
            log.info("%s: %s", path, w.message)
        centers = getattr(est, "cluster_centers_", None)
        if centers is None:
            raise KMeansError(f"{path}: holds a {type(est).__name__}, not a fitted k-means "
                              "(no cluster_centers_)")
        return cls(np.asarray(centers), estimator=est, path=path)

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``km.bin`` atomically as ``joblib.dump`` of a fitted sklearn estimator (GSLM's format)."""

        est = self.estimator if self.estimator is not None else sklearn_estimator(self.centers)
        path = Path(path)
        with atomic_path(path) as tmp:
            joblib.dump(est, tmp)
        self.path = path
        return path

    # ---- prediction ----------------------------------------------------------------------

    def check_dim(self, dim: int, what: str = "features") -> None:
        """Raise :class:`KMeansError` naming the km.bin file and both dimensions if they differ."""
        if int(dim) != self.dim:
            raise KMeansError(f"{self.path or '<k-means>'}: k-means centres have dimension {self.dim}, "
                              f"but the {what} have dimension {dim}")

    def _centers_on(self, device: str | torch.device) -> torch.Tensor:
        key = str(torch.device(device))
        if key not in self._device_centers:
            self._device_centers[key] = torch.from_numpy(self.centers).to(device)
        return self._device_centers[key]

    def predict(self, features: torch.Tensor | np.ndarray, device: str | torch.device | None = None
                ) -> torch.Tensor:
        """Unit index per frame: ``features`` ``(frames, dim)`` -> ``(frames,)`` int64.

        A torch argmin of squared distances computed in float64 (on ``device``, default the features'
        device), so rounding cannot reorder two centres that sklearn's float32 path keeps apart in
        practice; ties go to the lowest index as in sklearn. Agrees with ``estimator.predict``.
        """
        x = torch.as_tensor(features)
        if x.ndim != 2:
            raise KMeansError(f"{self.path or '<k-means>'}: expected features of shape (frames, dim), "
                              f"got {tuple(x.shape)}")
        self.check_dim(x.shape[1])
        dev = torch.device(device) if device is not None else x.device
        labels, _ = assign(x.to(dev), self._centers_on(dev))
        return labels


def sklearn_estimator(centers: np.ndarray, *, labels: np.ndarray | None = None,
                      inertia: float | None = None, n_iter: int = 0, seed: int = 0,
                      dtype: np.dtype = np.float32) -> Any:
    """A fitted-looking sklearn ``KMeans`` holding ``centers`` ``(K, dim)``, so ``joblib.load(km.bin)
    .predict(X)`` works for GSLM's scripts. ``dtype`` should be that of the features (float32 for
    HuBERT): sklearn's predict keeps the centres' dtype."""

    est = KMeans(n_clusters=int(centers.shape[0]), init="k-means++", n_init=1, random_state=seed)
    est.cluster_centers_ = np.ascontiguousarray(centers, dtype=dtype)
    est.n_features_in_ = int(centers.shape[1])
    est._n_features_out = int(centers.shape[0])
    est._n_threads = _openmp_effective_n_threads()
    est.labels_ = labels if labels is not None else np.zeros(0, dtype=np.int32)
    est.inertia_ = float(inertia) if inertia is not None else float("nan")
    est.n_iter_ = int(n_iter)
    return est


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------

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


def fit_kmeans(frames: np.ndarray | torch.Tensor, n_clusters: int, *, backend: str = "torch",
               preset: str = "fast", n_init: int | None = None, max_iter: int | None = None,
               tol: float = 1e-4, seed: int = 0, device: str = "cpu", verbose: bool = False
               ) -> KMeansModel:
    """Fit K-means on ``frames`` ``(n, dim)``.

    Args:
        frames: the sample to cluster, e.g. from :func:`sample_frames`.
        n_clusters: K (GSLM: 50, 100 or 200).
        backend: ``"torch"`` (k-means++ + Lloyd, CPU/GPU) or ``"sklearn"`` (``MiniBatchKMeans``).
        preset: ``"fast"`` (n_init=3) or ``"gslm"`` (GSLM's settings, n_init=20); for the torch
            backend only ``n_init`` and ``max_iter`` of the preset are used.
        n_init, max_iter: override the preset's.
        tol: torch backend: stop when the squared centre shift is at most ``tol`` x mean feature
            variance (0: only when the assignments stop changing).
        seed: same seed, same data -> same centres.
        device: torch backend only.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown k-means preset {preset!r}; choose from {sorted(PRESETS)}")
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
        from sklearn.cluster import MiniBatchKMeans

        est = MiniBatchKMeans(n_clusters=n_clusters, random_state=seed, verbose=int(verbose), **params)
        est.fit(x_np)
        model = KMeansModel(est.cluster_centers_, estimator=est)
        inertia = float(est.inertia_)
    elif backend == "torch":
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
        c = centers.double().cpu().numpy()
        est = sklearn_estimator(c, labels=labels.cpu().numpy().astype(np.int32), inertia=inertia,
                                n_iter=n_iter, seed=seed)
        model = KMeansModel(c, estimator=est)
    else:
        raise ValueError(f"unknown k-means backend {backend!r}; choose 'torch' or 'sklearn'")
    log.info("k-means (%s, K=%d, %d x %d frames): inertia %.6g in %.1f s", backend, n_clusters,
             *x_np.shape, inertia, time.perf_counter() - t0)
    return model


def iter_features(utterances: Iterable[Any], extractor: Any, *, progress: bool = True,
                  errors: list[tuple[str, str]] | None = None) -> Iterator[torch.Tensor]:
    """Yield ``extractor.extract(load_utterance(u))`` ``(frames, dim)`` per utterance, one at a time.

    Unreadable clips are logged and appended to ``errors`` as ``(path, problem)``, then skipped.
    """


    utterances = list(utterances)
    for u in tqdm(utterances, desc="features", unit="utt", disable=not progress):
        try:
            wave = load_utterance(u)
        except AudioError as e:
            log.warning("skipping %s", e)
            if errors is not None:
                errors.append((str(u.path), e.problem))
            continue
        with torch.inference_mode():
            yield extractor.extract(wave)


def fit_kmeans_on_corpus(utterances: Iterable[Any], extractor: Any, n_clusters: int, *,
                         max_frames: int = 100_000, seed: int = 0, progress: bool = True,
                         **fit_kwargs: Any) -> KMeansModel:
    """Stream ``utterances`` through ``extractor``, reservoir-sample ``max_frames`` frames, fit K-means.

    ``fit_kwargs`` go to :func:`fit_kmeans` (backend, preset, n_init, device...).
    """
    frames = sample_frames(iter_features(utterances, extractor, progress=progress), max_frames, seed)
    if frames.shape[1] != extractor.dim:
        raise ValueError(f"extractor {extractor.name!r} declares dim {extractor.dim} but returned "
                         f"{frames.shape[1]}-dimensional features")
    return fit_kmeans(frames, n_clusters, seed=seed, **fit_kwargs)
