"""The README's Python quickstart runs as written: its one ```python block under "Python quickstart" is
executed in a fresh interpreter (in a scratch folder holding a link to the shipped models), so the README
cannot drift from the API."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEADING = "## Python quickstart"


def quickstart_code(readme: str) -> str:
    """The code of the first ```python block after :data:`HEADING` (and before the next ``## `` heading)."""
    start = readme.index(HEADING) + len(HEADING)
    end = readme.find("\n## ", start)
    section = readme[start:end if end >= 0 else len(readme)]
    blocks = re.findall(r"^```python\n(.*?)^```$", section, flags=re.S | re.M)
    assert len(blocks) == 1, f"README's {HEADING!r} holds {len(blocks)} python blocks, not one"
    return blocks[0]


def test_the_quickstart_extractor_reads_one_block():
    text = ("# x\n## Python quickstart\nwords\n```python\nprint(1)\n```\n```bash\nls\n```\n"
            "## Next\n```python\nx\n```\n")
    assert quickstart_code(text) == "print(1)\n"
    with pytest.raises(AssertionError, match="2 python blocks"):
        quickstart_code(text.replace("```bash", "```python"))


@pytest.mark.slow
def test_readme_quickstart_runs(tmp_path):
    code = quickstart_code((REPO / "README.md").read_text(encoding="utf-8"))
    assert 8 <= len(code.splitlines()) <= 25, "the quickstart is meant to be about 15 lines"
    (tmp_path / "models").symlink_to(REPO / "models", target_is_directory=True)
    (tmp_path / "quickstart.py").write_text(code, encoding="utf-8")
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "quickstart.py"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    words = proc.stdout.split()
    assert words and words[0] in ("yes", "no"), proc.stdout  # a keyword of the toy task, predicted
    assert list(tmp_path.glob("*.wav")), "the quickstart reads its units from WAV files it wrote"
