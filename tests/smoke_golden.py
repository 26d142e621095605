"""The smoke preset's numbers that a refactor must not change: unit files, k-means and extractor fingerprints,
the uLM's validation loss and every per-seed result in results.json.

``python tests/smoke_golden.py RUN`` writes them from a finished smoke run to ``tests/data/smoke_golden.json``
(do it only for a change meant to alter them, and say so in the commit); tests/test_notebooks.py compares
the suite's smoke run with that file.
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


if __name__ == "__main__":
    numbers = smoke_numbers(Path(sys.argv[1]))
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(numbers, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
