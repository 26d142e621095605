"""Quantization throughput: spkit's path vs GSLM's speech2unit path, same HuBERT weights, same km.bin.

Reference (re-created from GSLM's documented speech2unit behaviour; its code is not in the fairseq
pip package): per file, ``soundfile.read`` -> float tensor -> fairseq ``HubertModel.extract_features(
source, padding_mask=None, mask=False, output_layer=6)`` under ``no_grad`` -> numpy; all features are
collected first, then a ``joblib``-loaded sklearn k-means ``.predict`` per utterance, then
``name|units`` lines.

spkit: ``quantize_corpus`` with ``HubertExtractor`` (torchaudio model, weights converted from the
same fairseq checkpoint) and ``KMeansModel`` (torch float64 argmin over the same km.bin), clips of
equal length batched (no padding), audio read in a background thread.

The model is a randomly initialised HuBERT-Base-sized fairseq model (12 layers, 768 dims; layer 6
used); the corpus is synthetic speech-like noise in 16 kHz WAVs, KWS-like (most clips exactly 1 s).
Model loading is not timed (done once per job in both paths). Writes
``bench/results/quantize_throughput.json``.

    python bench/quantize_throughput.py [--clips 48] [--threads 1] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

RESULTS = Path(__file__).resolve().parent / "results" / "quantize_throughput.json"


def make_corpus(root: Path, n: int, seed: int) -> list[Path]:
    """``n`` WAVs at 16 kHz: 3 of 4 exactly 1 s (as Speech Commands), the rest 0.6-1.6 s."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        sec = 1.0 if i % 4 else rng.uniform(0.6, 1.6)
        m = int(sec * 16000)
        t = np.arange(m) / 16000
        # Amplitude-modulated noise plus a gliding tone: enough structure for distinct units.
        wave = (0.1 * rng.normal(size=m) * (1 + np.sin(2 * np.pi * 3 * t))
                + 0.2 * np.sin(2 * np.pi * (150 + 300 * t) * t))
        p = root / f"clip{i:04d}.wav"
        sf.write(p, wave.astype(np.float32), 16000, subtype="PCM_16")
        paths.append(p)
    return paths


def build_fairseq_hubert(path: Path, seed: int) -> torch.nn.Module:
    """A random HuBERT-Base fairseq model, saved at ``path`` in fairseq's checkpoint layout."""
    from omegaconf import OmegaConf

    from spkit.fairseq_compat import import_fairseq

    import_fairseq()
    from fairseq.data import Dictionary
    from fairseq.models.hubert.hubert import HubertConfig, HubertModel
    from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig

    torch.manual_seed(seed)
    cfg = HubertConfig(label_rate=50)  # defaults: Base (12 x 768, conv front end as released)
    task_cfg = HubertPretrainingConfig(data="/nonexistent", labels=["km"], label_rate=50)
    dictionary = Dictionary()
    for i in range(500):
        dictionary.add_symbol(str(i))
    model = HubertModel(cfg, task_cfg, [dictionary]).eval()
    model_cfg = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)
    model_cfg["_name"] = "hubert"
    task = OmegaConf.to_container(OmegaConf.structured(task_cfg), resolve=True, enum_to_str=True)
    task["_name"] = "hubert_pretraining"
    torch.save({"args": None, "cfg": {"_name": None, "model": model_cfg, "task": task},
                "model": model.state_dict(), "task_state": {"dictionaries": [dictionary]},
                "extra_state": {}, "last_optimizer_state": None}, path)
    return model


def reference_quantize(model: torch.nn.Module, km_path: Path, files: list[Path], layer: int,
                       out: Path) -> dict[str, list[int]]:
    """GSLM speech2unit's behaviour: features of every file first, then sklearn predict per file."""
    import joblib

    feats = []
    for f in files:
        wav, sr = sf.read(str(f))
        assert sr == 16000 and wav.ndim == 1
        with torch.no_grad():
            x = torch.from_numpy(wav).float().view(1, -1)
            y, _ = model.extract_features(source=x, padding_mask=None, mask=False, output_layer=layer)
        feats.append(y.squeeze(0).cpu().numpy())
    km = joblib.load(km_path)
    units = {}
    with out.open("w") as fout:
        for f, x in zip(files, feats):
            pred = km.predict(x)
            units[f.stem] = pred.tolist()
            fout.write(f"{f.stem}|{' '.join(str(p) for p in pred)}\n")
    return units


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--layer", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per path (best is kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import joblib
    from sklearn.cluster import MiniBatchKMeans

    from spkit.data.base import Utterance
    from spkit.features.hubert import HubertExtractor
    from spkit.units.encoder import SpeechEncoder
    from spkit.units.kmeans import GSLM_PRESET, KMeansModel
    from spkit.units.quantize import quantize_corpus, read_units

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "wav").mkdir()
        files = make_corpus(tmp / "wav", args.clips, args.seed)
        seconds = sum(sf.info(str(f)).duration for f in files)
        model = build_fairseq_hubert(tmp / "hubert.pt", args.seed)

        # km.bin: GSLM's MiniBatchKMeans settings (fewer restarts), fitted on reference features.
        with torch.no_grad():
            sample = np.concatenate([
                model.extract_features(source=torch.from_numpy(sf.read(str(f))[0]).float()[None],
                                       padding_mask=None, mask=False, output_layer=args.layer)[0][0].numpy()
                for f in files[:12]])
        params = dict(GSLM_PRESET, n_init=3)
        est = MiniBatchKMeans(n_clusters=args.clusters, random_state=args.seed, **params).fit(sample)
        joblib.dump(est, tmp / "km.bin")

        ext = HubertExtractor.from_checkpoint(tmp / "hubert.pt", layer=args.layer)
        km = KMeansModel.load(tmp / "km.bin")
        utts = [Utterance(uid=f.stem, path=f, split="train", speaker="s") for f in files]

        ref_times, ours_times = [], []
        for r in range(args.repeats):  # alternate so machine load affects both alike
            t0 = time.perf_counter()
            ref = reference_quantize(model, tmp / "km.bin", files, args.layer, tmp / f"ref{r}.txt")
            ref_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            path = quantize_corpus(utts, SpeechEncoder(ext, km), tmp / f"ours{r}", batch_size=args.batch_size,
                                   progress=False)
            ours_times.append(time.perf_counter() - t0)
        ours = read_units(path)
        same = sum(a == b for u in ref for a, b in zip(ref[u], ours[u]))
        total = sum(len(v) for v in ref.values())
        assert all(len(ref[u]) == len(ours[u]) for u in ref)
        t0 = time.perf_counter()
        quantize_corpus(utts, SpeechEncoder(ext, km), tmp / "unbatched", batch_size=1, progress=False)
        unbatched = time.perf_counter() - t0

    result = {
        "machine": f"{platform.processor() or platform.machine()}, torch threads {args.threads}",
        "device": "cpu", "model": "HuBERT-Base size (12 x 768, random init), layer "
                                  f"{args.layer}", "kmeans_clusters": args.clusters,
        "clips": args.clips, "audio_seconds": round(seconds, 2),
        "reference_seconds": round(min(ref_times), 3), "spkit_seconds": round(min(ours_times), 3),
        "spkit_unbatched_seconds": round(unbatched, 3),
        "reference_rtf_x": round(seconds / min(ref_times), 2),
        "spkit_rtf_x": round(seconds / min(ours_times), 2),
        "spkit_unbatched_rtf_x": round(seconds / unbatched, 2),
        "speedup": round(min(ref_times) / min(ours_times), 2),
        "speedup_unbatched": round(min(ref_times) / unbatched, 2),
        "unit_agreement": round(same / total, 6), "frames": total, "batch_size": args.batch_size,
        "note": "rtf_x = seconds of audio quantized per wall-clock second; model loading not timed",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from spkit.io import write_json

    write_json(args.out, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
