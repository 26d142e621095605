"""K-means over speech features: frame sampling, fitting, GSLM's ``km.bin`` format, GPU prediction.

GSLM quantizes HuBERT-Base layer-6 features with an sklearn ``MiniBatchKMeans`` (K=100) and ships it
as ``km.bin``, a ``joblib.dump`` of the fitted estimator. :class:`KMeansModel` loads such a file
unchanged (only ``cluster_centers_`` is needed), writes the same format, and predicts with a torch
argmin over the centres (CPU or GPU) that agrees with sklearn's ``predict``.

The clustering itself (fitting centres, nearest-centre assignment, the presets) is
:mod:`spkit.cluster`'s, shared with the HuBERT pretraining targets; this module wraps it for units.
Two ways to fit:

* ``backend="torch"`` (default): k-means++ seeding + full-batch Lloyd iterations in torch, best of
  ``n_init`` restarts; runs on GPU too. Saved as a fitted sklearn ``KMeans`` so GSLM's own scripts
  can ``joblib.load(...).predict`` it.
* ``backend="sklearn"``: sklearn ``MiniBatchKMeans`` with a preset (``"gslm"``: GSLM's exact setting,
  ``"fast"``: n_init=3), saved as it is.

``joblib.load`` unpickles arbitrary objects: load ``km.bin`` files from trusted sources only.
"""

from __future__ import annotations

import hashlib
import logging
import os
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
from spkit.cluster import FAST_PRESET, GSLM_PRESET, PRESETS, assign, fit_centers
from spkit.data.corpus import load_utterance
from spkit.errors import UserError
from spkit.io import atomic_path

log = logging.getLogger(__name__)

__all__ = ["FAST_PRESET", "GSLM_PRESET", "PRESETS", "KMeansError", "KMeansModel", "fit_kmeans",
           "fit_kmeans_on_corpus", "iter_features", "sample_frames", "sklearn_estimator"]


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

def fit_kmeans(frames: np.ndarray | torch.Tensor, n_clusters: int, *, backend: str = "torch",
               preset: str = "fast", n_init: int | None = None, max_iter: int | None = None,
               tol: float = 1e-4, seed: int = 0, device: str = "cpu", verbose: bool = False
               ) -> KMeansModel:
    """Fit K-means on ``frames`` ``(n, dim)`` (e.g. from :func:`sample_frames`; GSLM's K: 50, 100 or 200) as a
    :class:`KMeansModel`; the arguments are :func:`spkit.cluster.fit_centers`'s.

    The model keeps the estimator ``save`` writes: sklearn's own ``MiniBatchKMeans``, or for the torch
    backend a fitted-looking ``KMeans`` (:func:`sklearn_estimator`).
    """
    fit = fit_centers(frames, n_clusters, backend=backend, preset=preset, n_init=n_init, max_iter=max_iter,
                      tol=tol, seed=seed, device=device, verbose=verbose)
    est = fit.estimator
    if est is None:
        est = sklearn_estimator(fit.centers, labels=fit.labels, inertia=fit.inertia, n_iter=fit.n_iter,
                                seed=seed)
    return KMeansModel(fit.centers, estimator=est)


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
