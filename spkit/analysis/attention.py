"""Attention of a prompted uLM (notebook 05): where the separator and label positions look -- at the deep
prompt, at the speech units, or at the BOS / separator -- per layer and head, aligned with the clip's audio.

The capture needs nothing beyond :class:`spkit.ulm.model.UnitLM`: ``forward(..., return_attn=True)``
returns per layer the probabilities (B, H, P+T, K) whose keys are ordered ``[prefix_kv, deep prompts,
input prompts, tokens]`` -- the deep prompt's L key/value prefixes *are* in K (SpeechPrompt form: the
frozen k/v projections of the prompt vectors). So a clip's keys split into consecutive segments
(:func:`key_segments`)::

    prompt (L deep-prompt prefixes, or P input prompts) | bos (</s>) | speech (n units) | sep | label (k)

followed by pads in a batch (never attended by real queries). Queries are the token positions ``<sep>``
(which predicts the first label token) and the label tokens (teacher-forced with the clip's true label,
as in training).

Time alignment: a unit record (``units/<corpus>/<split>.jsonl``) holds the deduplicated units and their
durations in 20 ms frames, so input token i spans ``[sum(d[:i]), sum(d[:i+1])) / 50`` seconds
(:func:`token_time_spans`); truncated inputs keep the first units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from spkit.analysis.verbalizer import AnalysisError
from spkit.audio import load_audio
from spkit.features.base import num_frames
from spkit.prompt.prompts import InputPrompt
from spkit.viz import spectrogram_db

FRAME_RATE = 50  # units per second (20 ms frames)
SEGMENTS: tuple[str, ...] = ("prompt", "bos", "speech", "sep", "label")


def token_time_spans(durations: Sequence[int], frame_rate: int = FRAME_RATE) -> np.ndarray:
    """(n, 2) start and end times in seconds of deduplicated units with ``durations`` (frames each)."""
    d = np.asarray(durations, dtype=np.int64)
    if d.ndim != 1 or (d < 1).any():
        raise ValueError("token_time_spans: durations must be a 1-D list of positive frame counts")
    ends = np.cumsum(d)
    return np.stack([ends - d, ends], axis=1) / float(frame_rate)


def frame_weights(weights: np.ndarray, durations: Sequence[int]) -> np.ndarray:
    """Spread per-token values (..., n) over frames: (..., sum(durations)), each frame taking its token's
    value (a step function on the 20 ms frame grid, for drawing under a waveform)."""
    w = np.asarray(weights)
    d = np.asarray(durations, dtype=np.int64)
    if w.shape[-1] != d.size:
        raise ValueError(f"frame_weights: {w.shape[-1]} token weights but {d.size} durations")
    return np.repeat(w, d, axis=-1)


def key_segments(n_prompt: int, n_units: int, n_label: int) -> dict[str, slice]:
    """The key ranges of one clip: ``prompt | bos | speech | sep | label`` (in this order, contiguous)."""
    if min(n_prompt, n_units, n_label) < 0:
        raise ValueError("key_segments: negative length")
    bounds = np.cumsum([0, n_prompt, 1, n_units, 1, n_label])
    return {name: slice(int(a), int(b)) for name, a, b in zip(SEGMENTS, bounds[:-1], bounds[1:])}


def segment_mass(attn: np.ndarray | torch.Tensor, segments: Mapping[str, slice]) -> dict[str, np.ndarray]:
    """Attention summed over each key segment: ``{name: attn[..., seg].sum(-1)}`` (shape ``attn.shape[:-1]``).

    The segments of :func:`key_segments` cover every real key, so for a real query the masses sum to 1.
    """
    a = attn.detach().float().cpu().numpy() if isinstance(attn, torch.Tensor) else np.asarray(attn)
    return {name: a[..., s].sum(-1) for name, s in segments.items()}


def _prompt_keys(model: Any) -> int:
    """Keys before ``</s>`` that belong to the prompt: deep-prompt prefixes or input-prompt positions."""
    return int(model.prompt.length)


def _query_offset(model: Any) -> int:
    """Query rows before the first token: input prompts are queries too (deep prefixes are not); the
    deep_prompt form has SpeechPrompt's input prompt in its slots."""

    slots = isinstance(model.prompt, InputPrompt) or getattr(model.prompt, "form", None) == "deep_prompt"
    return int(model.prompt.length) if slots else 0


def _live_keys(model: Any, attn: torch.Tensor) -> torch.Tensor:
    """``attn`` (..., K) without the deep_prompt form's input-prompt slot keys, which the deep prompts
    replace (their probability is exactly 0): keys become ``[deep prefixes, tokens]``."""
    if getattr(model.prompt, "form", None) != "deep_prompt":
        return attn
    L = int(model.prompt.length)
    return torch.cat([attn[..., :L], attn[..., 2 * L:]], dim=-1)


def _n_label(batch: Any, b: int, collator: Any) -> int:
    """Label tokens fed after ``<sep>`` (the ``</s>`` after them excluded); 0 for a learnable head."""
    if collator.verbalizer.head is not None:
        return 0
    toks = batch.tokens[b, int(batch.sep_pos[b]) + 1:].tolist()
    return next((i for i, t in enumerate(toks) if t in (1, 2)), len(toks))


@dataclass
class ClipAttention:
    """The attention of one clip's ``<sep>`` and label queries, every layer and head.

    Attributes:
        uid, label: the clip.
        units: (n,) input unit ids (after truncation); durations: (n,) frames per unit.
        attn: (n_layers, H, Q, K) probabilities; Q = ``queries``, K = the clip's keys (:attr:`segments`).
        queries: names of the query positions (``"<sep>"``, ``"label 1"``, ...).
        segments: key ranges, see :func:`key_segments`.
        key_names: (K,) readable key names (``p0``.., ``</s>``, ``u17``.., ``<sep>``, ``l1``..).
    """

    uid: str
    label: str
    units: list[int]
    durations: list[int]
    attn: np.ndarray
    queries: list[str]
    segments: dict[str, slice]
    key_names: list[str]

    @property
    def n_layers(self) -> int:
        return self.attn.shape[0]

    @property
    def n_heads(self) -> int:
        return self.attn.shape[1]

    def spans(self) -> np.ndarray:
        """(n, 2) time span of each input unit in seconds."""
        return token_time_spans(self.durations)

    def mass(self) -> dict[str, np.ndarray]:
        """Per segment, (n_layers, H, Q) attention mass."""
        return segment_mass(self.attn, self.segments)


@torch.no_grad()
def capture_attention(model: Any, example: Any, collator: Any, durations: Sequence[int]) -> ClipAttention:
    """Run ``model`` (a :class:`spkit.prompt.model.PromptedULM`) on one example with its true label
    teacher-forced and keep the attention of the ``<sep>`` and label queries.

    ``durations``: the clip's frames per deduplicated unit (its unit record's ``durations``).
    """
    batch = collator([example])
    n_units = int(batch.input_lengths[0])
    if len(durations) < n_units:
        raise ValueError(f"capture_attention: {example.uid}: {len(durations)} durations for {n_units} units")
    device = next(model.lm.parameters()).device
    batch = batch.to(device)
    model.eval()
    out = model(batch.tokens, batch.padding_mask, return_attn=True)
    sep = int(batch.sep_pos[0])
    n_label = _n_label(batch, 0, collator)
    q0 = _query_offset(model)
    rows = [q0 + sep + i for i in range(n_label + 1)]
    n_prompt = _prompt_keys(model)
    K = n_prompt + sep + 1 + n_label  # keys: prompt, </s>, units (sep - 1 of them), <sep>, labels
    attn = _live_keys(model, torch.stack([a[0, :, rows, :] for a in out.attentions]))  # (n_layers, H, Q, K)
    attn = attn[..., :K].float().cpu().numpy()
    toks = batch.tokens[0].tolist()
    # The collator keeps the first units (truncate="right") or the last ones ("left"); so do the durations.
    keep = slice(0, n_units) if collator.truncate == "right" else slice(len(example.units) - n_units, None)
    units, durs = list(example.units)[keep], list(durations)[keep]
    sym = collator.dictionary.symbols
    key_names = ([f"p{i}" for i in range(n_prompt)] + ["</s>"] + [f"u{u}" for u in units] + ["<sep>"]
                 + [f"l{i + 1}=u{sym[t]}" for i, t in enumerate(toks[sep + 1:sep + 1 + n_label])])
    return ClipAttention(uid=example.uid, label=example.label, units=[int(u) for u in units],
                         durations=[int(d) for d in durs], attn=attn,
                         queries=["<sep>"] + [f"label {i + 1}" for i in range(n_label)],
                         segments=key_segments(n_prompt, n_units, n_label), key_names=key_names)


@torch.no_grad()
def mass_summary(model: Any, examples: Sequence[Any], collator: Any, query: str = "sep",
                 batch_size: int = 16, max_clips: int | None = 200, progress: bool = False) -> dict[str, Any]:
    """Mean attention mass of one query position on each key segment, over clips.

    Args:
        query: ``sep`` (the ``<sep>`` position, which predicts the label) or ``label`` (the first label
            token; token verbalizers only).
        max_clips: the first this many examples (None: all).
    Returns:
        ``{"segments": SEGMENTS, "mass": (n_layers, S) mean over clips and heads, "per_head":
        (n_layers, H, S) mean over clips, "std": (n_layers, S) std over clips of the head-mean,
        "speech_spread": (n_layers,), "n_clips"}``; every row of ``mass`` sums to 1. ``speech_spread`` is the
        entropy of the query's attention *within* the speech units (renormalised over them), divided by
        log(n units): 1 = spread evenly over the clip, 0 = on one unit; mean over heads and the clips with
        at least two units (NaN when there are none).
    """

    if query not in ("sep", "label"):
        raise ValueError(f"mass_summary: query {query!r} is not 'sep' or 'label'")
    if query == "label" and collator.verbalizer.head is not None:
        raise ValueError("mass_summary: the learnable verbalizer feeds no label tokens; use query='sep'")
    chosen = list(examples[:max_clips] if max_clips else examples)
    if not chosen:
        raise ValueError("mass_summary: no examples")
    device = next(model.lm.parameters()).device
    model.eval()
    q0, n_prompt = _query_offset(model), _prompt_keys(model)
    per_clip, spread = [], []  # (n_layers, H, S) and (n_layers,) each
    for i in tqdm(range(0, len(chosen), batch_size), desc="attention mass", disable=not progress):
        batch = collator(chosen[i:i + batch_size]).to(device)
        out = model(batch.tokens, batch.padding_mask, return_attn=True)
        attn = _live_keys(model, torch.stack(out.attentions, dim=1).float().cpu())  # (B, n_layers, H, Q, K)
        for b in range(attn.shape[0]):
            sep = int(batch.sep_pos[b])
            n_label = _n_label(batch, b, collator)
            row = q0 + sep + (1 if query == "label" else 0)
            segs = key_segments(n_prompt, int(batch.input_lengths[b]), n_label)
            m = segment_mass(attn[b, :, :, row], segs)
            per_clip.append(np.stack([m[s] for s in SEGMENTS], axis=-1))
            if segs["speech"].stop - segs["speech"].start >= 2:
                spread.append(speech_spread(attn[b, :, :, row, segs["speech"]].numpy()).mean(-1))
    arr = np.stack(per_clip)  # (N, n_layers, H, S)
    head_mean = arr.mean(2)
    n_layers = arr.shape[1]
    return {"segments": list(SEGMENTS), "query": query, "mass": head_mean.mean(0), "per_head": arr.mean(0),
            "std": head_mean.std(0),
            "speech_spread": np.stack(spread).mean(0) if spread else np.full(n_layers, np.nan),
            "n_clips": len(per_clip)}


def speech_spread(weights: np.ndarray) -> np.ndarray:
    """Normalised entropy of attention ``weights`` (..., n) over n >= 2 speech keys, renormalised over them:
    1 when even, 0 when on one key (a query that gives the speech no attention at all counts as even)."""
    n = weights.shape[-1]
    if n < 2:
        raise ValueError("speech_spread: needs at least two speech keys")
    total = weights.sum(-1, keepdims=True)
    p = np.where(total > 0, weights / np.where(total > 0, total, 1.0), 1.0 / n)
    ent = -(p * np.log(np.where(p > 0, p, 1.0))).sum(-1)
    return ent / np.log(n)


def first_whole_clip(records: Sequence[Mapping[str, Any]], min_units: int = 3) -> Mapping[str, Any]:
    """The first unit record whose audio file is the whole clip (its frame count matches ``n_frames``;
    windows of longer files, like ``_silence_``, are skipped) with at least ``min_units`` units."""

    for r in records:
        if len(r.get("units", [])) < min_units or not r.get("path"):
            continue
        wave = load_audio(r["path"])
        if abs(num_frames(wave.numel()) - int(r.get("n_frames", -10))) <= 1:
            return r
    raise AnalysisError(f"no record among {len(records)} has whole-clip audio and >= {min_units} units")


# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------

SEGMENT_COLORS = {"prompt": "#d62728", "bos": "#7f7f7f", "speech": "#1f77b4", "sep": "#2ca02c",
                  "label": "#9467bd"}


def _select(clip: ClipAttention, layer: int | None, head: int | None, query: int) -> np.ndarray:
    """(K,) attention of one query; ``layer``/``head`` None: the mean over layers/heads."""
    a = clip.attn[..., query, :]  # (n_layers, H, K)
    a = a.mean(0) if layer is None else a[layer]
    return a.mean(0) if head is None else a[head]


def _esc(text: str) -> str:
    """Plotly reads ``<...>`` in labels as HTML tags: ``</s>`` and ``<sep>`` must be escaped to show."""
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _key_colors(clip: ClipAttention) -> list[str]:
    colors = [""] * len(clip.key_names)
    for name, s in clip.segments.items():
        for k in range(s.start, s.stop):
            colors[k] = SEGMENT_COLORS[name]
    return colors


def clip_attention_figure(wave: torch.Tensor, clip: ClipAttention, layer: int | None = None,
                          head: int | None = None, query: int = 0, sample_rate: int = 16_000) -> Any:
    """Waveform, log-mel spectrogram and the attention of one query to every input unit on one time axis
    (bar width = the unit's duration), plus the attention to the prompt positions, BOS, separator and label.

    ``wave``: (samples,) at ``sample_rate``; ``layer``/``head`` None: averaged over layers/heads.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots


    a = _select(clip, layer, head, query)
    spans = clip.spans()
    sp = clip.segments["speech"]
    spec = spectrogram_db(wave, sample_rate)
    step = max(1, wave.numel() // 4000)
    where = f"layer {'mean' if layer is None else layer}, head {'mean' if head is None else head}"
    other = [k for k in range(len(a)) if not sp.start <= k < sp.stop]
    share = {s: float(a[clip.segments[s]].sum()) for s in SEGMENTS}
    fig = make_subplots(rows=4, cols=1, vertical_spacing=0.07, row_heights=[0.2, 0.3, 0.25, 0.25],
                        subplot_titles=("waveform", "log-mel",
                                        f"attention of {_esc(clip.queries[query])} to the speech units "
                                        f"({share['speech']:.2f} of its mass) over time (s)",
                                        "attention to the prompt / &lt;/s&gt; / &lt;sep&gt; / label keys"))
    t = np.arange(wave.numel()) / sample_rate
    fig.add_trace(go.Scatter(x=t[::step], y=wave.numpy()[::step], mode="lines", line={"width": 1},
                             name="waveform", showlegend=False), row=1, col=1)
    fig.add_trace(go.Heatmap(z=spec, x=np.arange(spec.shape[1]) / 100, colorscale="Viridis", showscale=False),
                  row=2, col=1)
    fig.add_trace(go.Bar(x=spans.mean(1), y=a[sp], width=spans[:, 1] - spans[:, 0], showlegend=False,
                         marker_color=SEGMENT_COLORS["speech"], marker_line_width=0.5,
                         hovertext=[f"unit {u}, {s:.2f}-{e:.2f} s" for u, (s, e) in zip(clip.units, spans)],
                         name="speech"), row=3, col=1)
    colors = _key_colors(clip)
    fig.add_trace(go.Bar(x=[_esc(clip.key_names[k]) for k in other], y=a[other], showlegend=False,
                         marker_color=[colors[k] for k in other], name="other keys"), row=4, col=1)
    for r in (2, 3):
        fig.update_xaxes(matches="x", row=r, col=1)
    fig.update_xaxes(type="category", row=4, col=1)
    fig.update_yaxes(title_text="attention", row=3, col=1)
    fig.update_layout(title=f"{clip.uid} ({clip.label}): {where}", height=820,
                      margin={"l": 50, "r": 10, "t": 70, "b": 40}, bargap=0)
    return fig


def head_view_figure(clip: ClipAttention, layer: int, query: int = 0, cols: int = 4) -> Any:
    """Small multiples: one bar chart per head of ``layer``, the query's attention over every key, colored
    by segment (red prompt, grey </s>, blue speech, green <sep>, purple label)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    H = clip.n_heads
    cols = min(cols, H)
    rows = -(-H // cols)
    colors = _key_colors(clip)
    fig = make_subplots(rows=rows, cols=cols, shared_yaxes=True, horizontal_spacing=0.02,
                        vertical_spacing=0.12 / max(rows, 1),
                        subplot_titles=[f"head {h}: prompt {clip.mass()['prompt'][layer, h, query]:.2f}"
                                        for h in range(H)])
    x = list(range(len(clip.key_names)))
    for h in range(H):
        fig.add_trace(go.Bar(x=x, y=clip.attn[layer, h, query], marker_color=colors, showlegend=False,
                             hovertext=[_esc(k) for k in clip.key_names], name=f"head {h}"),
                      row=h // cols + 1, col=h % cols + 1)
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(title=f"{clip.uid}: layer {layer}, query {_esc(clip.queries[query])}, every head "
                            "(red prompt, grey &lt;/s&gt;, blue speech, green &lt;sep&gt;, purple label)",
                      height=200 * rows + 100, bargap=0, margin={"l": 40, "r": 10, "t": 80, "b": 30})
    return fig


def layer_head_figure(clip: ClipAttention, segment: str = "prompt", query: int = 0) -> Any:
    """Heatmap layer x head of the mass the query puts on one key segment of this clip."""
    import plotly.graph_objects as go

    z = clip.mass()[segment][:, :, query]
    fig = go.Figure(go.Heatmap(z=z, x=[f"h{h}" for h in range(clip.n_heads)],
                               y=[f"layer {i}" for i in range(clip.n_layers)], colorscale="Reds",
                               zmin=0, zmax=1,
                               text=np.round(z, 2), texttemplate="%{text}"))
    fig.update_layout(title=f"{clip.uid}: attention mass of {_esc(clip.queries[query])} on the {segment} "
                            "keys",
                      height=max(300, 40 * clip.n_layers + 120), yaxis={"autorange": "reversed"})
    return fig


def mass_figure(summary: Mapping[str, Any], title: str = "") -> Any:
    """Stacked bars per layer: the mean share of attention on prompt / BOS / speech / separator / label."""
    import plotly.graph_objects as go

    mass = np.asarray(summary["mass"])
    layers = [f"layer {i}" for i in range(mass.shape[0])]
    std = np.asarray(summary["std"])
    fig = go.Figure([go.Bar(name=s, x=layers, y=mass[:, j], marker_color=SEGMENT_COLORS[s],
                            hovertext=[f"{s}: {m:.3f} ± {d:.3f} over clips"
                                       for m, d in zip(mass[:, j], std[:, j])])
                     for j, s in enumerate(summary["segments"])])
    fig.update_layout(barmode="stack", yaxis_title="share of attention", yaxis_range=[0, 1], height=380,
                      title=title or f"where the {summary['query']} query looks, mean over "
                                     f"{summary['n_clips']} test clips and all heads")
    return fig


def mass_markdown(summary: Mapping[str, Any]) -> str:
    """A :func:`mass_summary` as a markdown table: one row per layer, one column per key segment."""
    segs = list(summary["segments"])
    lines = [f"**{summary['query']} query**, mean over {summary['n_clips']} clips and all heads", "",
             "| layer | " + " | ".join(segs) + " |", "|---|" + "---:|" * len(segs)]
    for i, row in enumerate(np.asarray(summary["mass"])):
        lines.append(f"| {i} | " + " | ".join(f"{m:.3f}" for m in row) + " |")
    return "\n".join(lines)


def compare_mass_markdown(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """Several :func:`mass_summary` results (``{name: summary}``, same query and layer count) side by side:
    per layer and model the share of attention on the prompt and on the speech, and the speech spread."""
    names = list(summaries)
    if not names:
        raise ValueError("compare_mass_markdown: no summaries")
    first = summaries[names[0]]
    n_layers = np.asarray(first["mass"]).shape[0]
    if any(np.asarray(s["mass"]).shape[0] != n_layers for s in summaries.values()):
        raise ValueError("compare_mass_markdown: the summaries have different layer counts")
    p, sp = SEGMENTS.index("prompt"), SEGMENTS.index("speech")
    head = " | ".join(f"{n}: prompt | {n}: speech | {n}: spread" for n in names)
    lines = [f"**{first['query']} query**, share of attention per layer (mean over clips and heads; spread: "
             "entropy within the speech units / log n)", "", f"| layer | {head} |",
             "|---|" + "---:|" * (3 * len(names))]
    for i in range(n_layers):
        cells = []
        for s in summaries.values():
            mass = np.asarray(s["mass"])
            cells += [f"{mass[i, p]:.3f}", f"{mass[i, sp]:.3f}", f"{np.asarray(s['speech_spread'])[i]:.3f}"]
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_mass_figure(summaries: Mapping[str, Mapping[str, Any]], title: str = "") -> Any:
    """Lines per model: the share of the query's attention on the speech units (solid) and on the prompt
    (dashed), layer by layer."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, s in summaries.items():
        mass = np.asarray(s["mass"])
        layers = list(range(mass.shape[0]))
        for seg, dash in (("speech", "solid"), ("prompt", "dash")):
            fig.add_trace(go.Scatter(x=layers, y=mass[:, SEGMENTS.index(seg)], mode="lines+markers",
                                     name=f"{name}: {seg}", line={"dash": dash}))
    query = next(iter(summaries.values()))["query"] if summaries else "sep"
    fig.update_layout(xaxis_title="layer", yaxis_title="share of attention", yaxis_range=[0, 1], height=380,
                      title=title or f"where the {query} query looks: speech (solid) vs prompt (dashed)")
    return fig
