"""How results are named and ordered wherever they are shown (``results.md``, the verdict, the report's
figures): task column headers, method row order, parameter counts. Kept apart from :mod:`spkit.prompt.results`
so that the verdict (:mod:`spkit.prompt.verdict`), which ``results.md`` opens with, needs nothing from it."""

from __future__ import annotations

# Column order and headers of the combined table (the paper's Table: KWS | IC | LID | ASR).
TASK_COLUMNS: dict[str, str] = {"kws": "KWS", "intent": "IC", "lid": "LID", "asr": "ASR", "sf": "SF"}
# Row order: prompt methods first, then their control, then the baselines.
METHOD_ORDER: tuple[str, ...] = ("input_prompt", "deep_prompt", "deep_prompt_tied", "prefix_prompt",
                                 "deep_prompt_random_lm", "downstream", "finetune")


def format_params(n: int) -> str:
    """Human-readable parameter count: 151.2M, 24.6K, 980."""
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 1_000:
        return f"{n / 1e3:.1f}K"
    return str(n)
