"""Screenshot a run report's first screen (``RUN/index.html``: the headline figure, the verdict and the
warnings) in Debian's Chromium: how ``docs/report.png`` is made.

    .venv/bin/python scripts/report_screenshot.py runs/default docs/report.png

(``make run`` writes ``runs/default``; any run folder with an ``index.html`` works, e.g. a smoke run:
``.venv/bin/python -m spkit run --preset smoke --out runs/smoke``.) Needs ``/usr/bin/chromium``
(``scripts/ensure_chromium.sh``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from spkit.report import screenshot_report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="run folder holding index.html")
    p.add_argument("out", type=Path, nargs="?", default=Path("docs/report.png"), help="PNG to write")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=1000)
    p.add_argument("--full-page", action="store_true", help="the whole page, not the first screen")
    args = p.parse_args()
    print(screenshot_report(args.run, args.out, args.width, args.height, args.full_page))


if __name__ == "__main__":
    main()
