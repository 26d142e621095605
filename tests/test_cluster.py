"""spkit.cluster, the one k-means: the pretraining targets and the units cluster with it, and moving them
onto it changed no centre and no label (pinned against the code they replaced, written out here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import MiniBatchKMeans

from spkit import cluster
from spkit.cluster import assign, fit_centers
from spkit.features.pretrain import PretrainConfig, make_targets
from spkit.features.spectral import MFCCExtractor
from spkit.units import kmeans as units_kmeans
from spkit.units.kmeans import fit_kmeans

torch.set_num_threads(1)


def _old_pretrain_assign(feats: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """features.pretrain.assign as it was before spkit.cluster."""
    d = (feats * feats).sum(1, keepdim=True) - 2 * feats @ centers.T + (centers * centers).sum(1)[None]
    return d.argmin(dim=1)


def _old_pretrain_fit(frames: np.ndarray, num_clusters: int, seed: int, n_init: int) -> np.ndarray:
    """features.pretrain.fit_kmeans as it was before spkit.cluster (GSLM's MiniBatchKMeans settings)."""
    km = MiniBatchKMeans(n_clusters=num_clusters, init="k-means++", max_iter=150, batch_size=10000,
                         tol=0.0, max_no_improvement=100, n_init=n_init, reassignment_ratio=0.5,
                         random_state=seed)
    km.fit(frames)
    return km.cluster_centers_.astype(np.float32)


@pytest.mark.parametrize("max_frames", [150, 10_000])  # a sample of the frames, all of them
def test_pretraining_targets_are_bit_identical_to_gslm_minibatch_kmeans(max_frames: int) -> None:
    g = torch.Generator().manual_seed(0)
    waves = [torch.randn(int(n), generator=g) * 0.1 for n in (8000, 12000, 5000, 16000, 30000)]
    config = PretrainConfig(num_clusters=8, kmeans_max_frames=max_frames, seed=5, kmeans_n_init=2)
    labels, centers = make_targets(waves, config, progress=False)

    feats = [MFCCExtractor(cmvn=True).extract(w) for w in waves]  # iteration 1's target features
    allf = torch.cat(feats).numpy()
    total = allf.shape[0]
    rng = np.random.default_rng(config.seed)
    pick = np.sort(rng.choice(total, max_frames, replace=False)) if total > max_frames else np.arange(total)
    want_centers = torch.from_numpy(_old_pretrain_fit(allf[pick], 8, config.seed, 2))
    assert centers.dtype == torch.float32 and torch.equal(centers, want_centers)
    assert len(labels) == len(waves)
    for got, f in zip(labels, feats):
        assert torch.equal(got, _old_pretrain_assign(f, want_centers))


def test_full_distance_assign_keeps_the_old_pretraining_argmin_on_ties_and_near_ties() -> None:
    g = torch.Generator().manual_seed(1)
    centers = torch.randn(16, 6, generator=g)
    centers[5] = centers[2]  # an exact tie: the lower index wins
    x = torch.cat([torch.randn(3000, 6, generator=g) * 2,
                   (centers[:8] + centers[8:]) / 2,  # equidistant from two centres, up to rounding
                   centers[2:3] + 1e-7])
    want = _old_pretrain_assign(x, centers)
    for chunk in (None, 16384, 7):
        got, dist = assign(x, centers, chunk=chunk, full_distance=True)
        assert torch.equal(got, want) and got.dtype == torch.int64
        assert (dist >= 0).all() and dist.shape == (x.shape[0],)
    assert not (want == 5).any()
    # where the two arithmetics part: ||x||^2 = 1e6 swallows a 0.01 difference, so the full distance ties
    # (lowest index) while the plain one sees centre 1 as nearer
    far, pair = torch.tensor([[1000.0, 0.0]]), torch.tensor([[0.0, 0.0], [5e-6, 0.0]])
    assert _old_pretrain_assign(far, pair).tolist() == [0]
    assert assign(far, pair, full_distance=True)[0].tolist() == [0] and assign(far, pair)[0].tolist() == [1]
    # the default (||x||^2 left out of the argmin, in the centres' dtype) agrees wherever there is no near-tie
    plain, d = assign(x.double(), centers.double())
    assert (plain != want).float().mean() < 0.01
    torch.testing.assert_close(d, ((x.double()[:, None] - centers.double()[None]) ** 2).sum(-1).min(1).values)


@pytest.mark.parametrize("backend", ["torch", "sklearn"])
def test_unit_kmeans_is_the_cluster_fit(backend: str) -> None:
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(1500, 5)) + 4 * rng.integers(0, 5, size=(1500, 1))).astype(np.float32)
    fit = fit_centers(x, 6, backend=backend, seed=4, n_init=2)
    km = fit_kmeans(x, 6, backend=backend, seed=4, n_init=2)
    np.testing.assert_array_equal(km.centers, fit.centers.astype(np.float64))
    assert km.estimator.inertia_ == pytest.approx(fit.inertia)
    if backend == "sklearn":  # GSLM's estimator itself, as fitted by sklearn directly
        want = MiniBatchKMeans(n_clusters=6, random_state=4, **dict(cluster.FAST_PRESET, n_init=2)).fit(x)
        np.testing.assert_array_equal(fit.centers, want.cluster_centers_)
        assert isinstance(km.estimator, MiniBatchKMeans)  # saved as sklearn fitted it
    else:
        assert fit.estimator is None and fit.labels is not None
        np.testing.assert_array_equal(km.predict(x).numpy(), fit.labels)
    # the presets have one home; spkit.units re-exports them
    assert units_kmeans.GSLM_PRESET is cluster.GSLM_PRESET and units_kmeans.PRESETS is cluster.PRESETS


def test_fit_centers_refuses_bad_input() -> None:
    x = np.zeros((5, 3), np.float32)
    with pytest.raises(ValueError, match="cannot fit 8 clusters on 5 frames"):
        fit_centers(x, 8)
    with pytest.raises(ValueError, match="unknown k-means preset"):
        fit_centers(x, 2, preset="huge")
    with pytest.raises(ValueError, match="unknown k-means backend"):
        fit_centers(x, 2, backend="faiss")
    with pytest.raises(ValueError, match="shape"):
        fit_centers(np.zeros(5, np.float32), 2)
