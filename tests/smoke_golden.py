"""The smoke preset's numbers that a refactor must not change: unit files, k-means and extractor fingerprints,
the uLM's validation loss and every per-seed result in results.json.

Float results differ between CPUs (the kernels torch picks for AVX2 and AVX512 round differently: the same
commit gave other HuBERT weights on two machines), so ``tests/data/smoke_golden.json`` holds one *variant*
per machine kind it was recorded on, and the test requires the run to equal one of them exactly. A change of
the code moves the numbers on every machine, so it matches none.

``python tests/smoke_golden.py RUN [--add]`` writes a finished smoke run's numbers: alone (a change meant to
alter them: say so in the commit), or with ``--add`` as this machine's variant beside the others (a machine
kind not recorded yet, with code whose numbers the other variants already pin).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).resolve().parent / "data" / "smoke_golden.json"


def smoke_numbers(run: Path) -> dict[str, Any]:
    """The numbers of a finished smoke run (see the module docstring)."""
    unit_model = json.loads((run / "units" / "unit_model.json").read_text())
    history = json.loads((run / "ulm" / "history.json").read_text())
    results = json.loads((run / "results.json").read_text())
    return {
        "kmeans_fingerprint": unit_model["kmeans_fingerprint"],
        "extractor_fingerprint": unit_model["extractor_fingerprint"],
        "unit_files": {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
                       for p in sorted((run / "units").glob("*/*.txt"))},
        "ulm_valid_loss": history["summary"]["valid"]["loss"],
        "results": {task: {m: e["seeds"] for m, e in info["methods"].items()}
                    for task, info in results["tasks"].items()},
    }


def machine_label() -> str:
    """What picks the float kernels: the CPU model and torch's CPU capability (e.g. ``AMD EPYC, AVX512``)."""
    import platform

    import torch

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {torch.backends.cpu.get_cpu_capability()}"


def golden_variants() -> dict[str, dict[str, Any]]:
    """``{machine label: numbers}`` from :data:`GOLDEN`."""
    return json.loads(GOLDEN.read_text())["variants"]


if __name__ == "__main__":
    numbers = smoke_numbers(Path(sys.argv[1]))
    variants = golden_variants() if "--add" in sys.argv[2:] and GOLDEN.exists() else {}
    variants[machine_label()] = numbers
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps({"variants": variants}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}: {sorted(variants)}")
