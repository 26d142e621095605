"""Scoring and decoding with a prompted uLM.

Classification has two decoders, both in every result (:func:`evaluate`):

* ``greedy_exact`` (SpeechPrompt's, :func:`greedy_labels`; results.json ``mean``): unconstrained greedy
  generation after ``<sep>`` until ``</s>``; a prediction counts only when the whole output equals a
  label's token sequence (else it is ``None``: wrong). For IC that is a free 3-unit output, not a choice
  among the 31 intents. Equality needs at most k + 1 greedy steps (k label tokens, then ``</s>``): an
  output that has not ended by then is longer than every label, so decoding stops there. With a learnable
  verbalizer there is nothing to generate: the prediction is the argmax of the class scores (v2's way).
* ``constrained`` (:func:`score_labels`; results.json ``constrained``): the next tokens are constrained to
  the verbalizer's label sequences. Each label's score is the total log-probability of its token sequence
  after ``[</s>, units, <sep>]`` (log-softmax over the whole vocabulary, summed over its tokens, computed
  on the KV cache of the shared prefix; ``</s>`` not included); a softmax over those scores gives one
  probability per label (rows sum to 1), the prediction is the most probable label. With a learnable
  verbalizer the probabilities are the softmax of its class scores (so both decoders agree).
* :func:`beam_search`: generic beam search over a step function (used on the KV cache for ASR, constrained
  to the character tokens and ``</s>``); ranks finished hypotheses by summed log-probability divided by
  ``length ** length_penalty`` (length counts the ``</s>``). With ``beam=1`` it is exactly greedy decoding.
* :func:`evaluate`: the task metric (accuracy, or CER with WER beside it), the predictions and the
  per-class probabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torchaudio.functional import edit_distance
from tqdm.auto import tqdm

from spkit.prompt.model import PromptedULM
from spkit.prompt.slots import slot_metrics
from spkit.prompt.tasks import EOS_IDX, Collator, PromptBatch, TaskExample, TaskSpec, length_order
from spkit.ulm.model import KVCache

MODES: tuple[str, ...] = ("both", "constrained", "greedy", "beam")
DECODERS: dict[str, str] = {
    "greedy_exact": "SpeechPrompt's: greedy until </s>, a hit only when the whole output equals the label",
    "constrained": "label scoring: the label whose token sequence is most probable after <sep>",
}


def reorder_cache(cache: KVCache, index: Tensor) -> KVCache:
    """The cache rows ``index`` (N,) (repeat rows to expand a batch, or follow beams)."""
    index = index.to(cache.key_mask.device)
    return KVCache([k.index_select(0, index) for k in cache.keys],
                   [v.index_select(0, index) for v in cache.values], cache.key_mask.index_select(0, index),
                   cache.next_position.index_select(0, index))


def _prefix_run(model: PromptedULM, batch: PromptBatch) -> tuple[Tensor, KVCache]:
    """Run ``[</s>, units, <sep>]``: log-probabilities (B, V) of the token after ``<sep>`` and the cache."""
    tokens, mask = batch.prefixes()
    out = model(tokens, mask, use_cache=True)
    rows = torch.arange(tokens.shape[0], device=tokens.device)
    assert out.cache is not None
    return out.logits[rows, batch.sep_pos].float().log_softmax(-1), out.cache


@torch.no_grad()
def label_log_probs(model: PromptedULM, batch: PromptBatch, max_tokens: int = 512) -> Tensor:
    """(B, C) total log-probability of each class' token sequence (token verbalizers), or the
    log-softmax of the learnable verbalizer's class scores."""
    if model.verbalizer.head is not None:
        tokens, mask = batch.prefixes()
        out = model(tokens, mask)
        return model.class_logits(out.logits, batch.sep_pos).float().log_softmax(-1)
    seqs = model.verbalizer.label_sequences(model.spec).to(batch.tokens.device)  # (C, k)
    first, cache = _prefix_run(model, batch)
    scores = first[:, seqs[:, 0]]  # (B, C)
    C, k = seqs.shape
    if k == 1:
        return scores
    # All classes' continuations packed into one row per clip: class c's j-th fed token sees the shared
    # cache and its own earlier tokens only, at position j after <sep>. One pass, no per-class cache copy.
    B = scores.shape[0]
    chunk = max(1, max_tokens // (k - 1))  # classes per pass (max_tokens packed tokens per row)
    rest = []
    for c0 in range(0, C, chunk):
        part = seqs[c0:c0 + chunk]  # (c, k)
        c = part.shape[0]
        feed = part[:, :-1].reshape(1, -1).expand(B, -1)  # (B, c*(k-1)): teacher-forced label tokens
        owner = torch.arange(c, device=seqs.device).repeat_interleave(k - 1)
        step = torch.arange(k - 1, device=seqs.device).repeat(c)
        token_mask = (owner[:, None] == owner[None, :]) & (step[:, None] >= step[None, :])
        out = model.lm(feed, cache=cache, token_mask=token_mask, position_offsets=step)
        lp = out.logits.float().log_softmax(-1).gather(-1, part[:, 1:].reshape(1, -1, 1).expand(B, -1, 1))
        rest.append(lp[..., 0].view(B, c, k - 1).sum(-1))
    return scores + torch.cat(rest, dim=1)


@torch.no_grad()
def score_labels(model: PromptedULM, batch: PromptBatch) -> Tensor:
    """(B, C) probability of each class (constrained scoring; rows sum to 1)."""
    return label_log_probs(model, batch).softmax(-1)


@torch.no_grad()
def greedy_tokens(model: PromptedULM, batch: PromptBatch, max_new_tokens: int) -> Tensor:
    """(B, max_new_tokens) unconstrained greedy continuation after ``<sep>`` (pads after ``</s>``)."""
    tokens, mask = batch.prefixes()
    return model.lm.generate(tokens, max_new_tokens, padding_mask=mask, greedy=True, stop_at_eos=True,
                             token_embeds=model.embed(tokens), **model.prompt.hook_kwargs())


@torch.no_grad()
def greedy_labels(model: PromptedULM, batch: PromptBatch) -> list[str | None]:
    """SpeechPrompt's decoder: greedy until ``</s>``; the output must be exactly a label's token sequence,
    else the prediction is None. Learnable verbalizers: the argmax class."""
    if model.verbalizer.head is not None:
        scores = label_log_probs(model, batch)
        return [model.spec.labels[i] for i in scores.argmax(-1).tolist()]
    seqs = model.verbalizer.label_sequences(model.spec)
    by_seq = {(*s.tolist(), EOS_IDX): lb for s, lb in zip(seqs, model.spec.labels)}
    # k + 1 steps decide exact equality: the k label tokens, then </s> (a longer output matches no label).
    gen = greedy_tokens(model, batch, seqs.shape[1] + 1).cpu()
    return [by_seq.get(_until_eos(row.tolist())) for row in gen]


def _until_eos(tokens: list[int]) -> tuple[int, ...]:
    """The generated tokens up to and including the first ``</s>`` (all of them if there is none)."""
    return tuple(tokens[:tokens.index(EOS_IDX) + 1]) if EOS_IDX in tokens else tuple(tokens)


def beam_search(first_log_probs: Tensor, state: Any, step: Callable[[Tensor, Any], tuple[Tensor, Any]],
                reorder: Callable[[Any, Tensor], Any], *, beam: int, max_len: int,
                allowed: Tensor | None = None, eos: int = EOS_IDX, length_penalty: float = 1.0
                ) -> list[tuple[list[int], float]]:
    """Beam search over any incremental scorer.

    Args:
        first_log_probs: (B, V) log-probabilities of the first output token.
        state: decoder state for B rows (e.g. a :class:`KVCache`); ``reorder(state, index (N,))`` selects
            rows; it is first expanded to B*beam rows (row b*beam + j is hypothesis j of input b).
        step: ``step(tokens (B*beam,), state) -> (log_probs (B*beam, V), new state)``.
        beam: hypotheses kept per input (1 = greedy).
        max_len: most output tokens (``</s>`` included); hypotheses alive then count as finished.
        allowed: (V,) bool, tokens that may be emitted (``eos`` is always allowed).
        length_penalty: finished hypotheses rank by ``sum log p / length ** length_penalty``.
    Returns:
        per input, the best hypothesis' tokens (without ``</s>``) and its normalised score.
    """
    B, V = first_log_probs.shape
    K = int(beam)
    if K < 1 or max_len < 1:
        raise ValueError(f"beam_search: beam {beam} and max_len {max_len} must be >= 1")
    device = first_log_probs.device
    block = torch.zeros(V, dtype=torch.bool, device=device)
    if allowed is not None:
        block = ~allowed.to(device)
        block[eos] = False
    state = reorder(state, torch.arange(B, device=device).repeat_interleave(K))
    log_probs = first_log_probs.float().repeat_interleave(K, dim=0)
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0  # one live hypothesis per input at the start (no duplicate beams)
    history = torch.zeros(B, K, 0, dtype=torch.long, device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    for t in range(max_len):
        lp = log_probs.masked_fill(block, float("-inf")).view(B, K, V)
        cand = (scores[..., None] + lp).view(B, K * V)
        top, idx = cand.topk(K, dim=1)
        src, tok = idx // V, idx % V
        kept = history.gather(1, src[..., None].expand(-1, -1, history.shape[2]))
        history = torch.cat([kept, tok[..., None]], dim=2)
        scores = top.clone()
        norm = float(t + 1) ** length_penalty
        last = t == max_len - 1
        top_l, tok_l, hist_l = top.tolist(), tok.tolist(), history.tolist()
        for b in range(B):
            for j in range(K):
                if top_l[b][j] == float("-inf"):
                    continue
                if tok_l[b][j] == eos or last:
                    seq = hist_l[b][j][:-1] if tok_l[b][j] == eos else hist_l[b][j]
                    finished[b].append((top_l[b][j] / norm, seq))
                    scores[b, j] = float("-inf")
            if len(finished[b]) >= K:
                scores[b] = float("-inf")
        if last or bool(torch.isinf(scores).all()):
            break
        flat_src = (torch.arange(B, device=device)[:, None] * K + src).view(-1)
        state = reorder(state, flat_src)
        log_probs, state = step(tok.view(-1), state)
        log_probs = log_probs.float()
    out = []
    for b in range(B):
        if finished[b]:
            score, seq = max(finished[b], key=lambda x: x[0])
            out.append((seq, score))
        else:
            out.append(([], float("-inf")))
    return out


@torch.no_grad()
def beam_decode(model: PromptedULM, batch: PromptBatch, *, beam: int = 5, max_len: int = 200,
                length_penalty: float = 1.0, constrained: bool = True) -> list[list[int]]:
    """Beam search after ``<sep>`` on the KV cache; constrained to the verbalizer's tokens + ``</s>``.
    Returns per row the output tokens without ``</s>``."""
    first, cache = _prefix_run(model, batch)
    allowed = None
    if constrained:
        allowed = torch.zeros(first.shape[1], dtype=torch.bool)
        allowed[model.verbalizer.allowed_tokens()] = True

    def step(tokens: Tensor, c: KVCache) -> tuple[Tensor, KVCache]:
        out = model.step(tokens[:, None], c)
        assert out.cache is not None
        return out.logits[:, -1].float().log_softmax(-1), out.cache

    hyps = beam_search(first, cache, step, reorder_cache, beam=beam, max_len=max_len, allowed=allowed,
                       length_penalty=length_penalty)
    return [h for h, _ in hyps]


# ------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------

def error_rate(refs: Sequence[Sequence[Any]], hyps: Sequence[Sequence[Any]]) -> float:
    """Total edit distance over total reference length (CER on strings, WER on word lists).

    The Levenshtein distance (substitutions, insertions, deletions all cost 1) is torchaudio's
    :func:`torchaudio.functional.edit_distance`.
    """
    total = sum(len(r) for r in refs)
    if total == 0:
        raise ValueError("error rate: the references are empty")
    return sum(edit_distance(r, h) for r, h in zip(refs, hyps)) / total


def output_length_cap(train_examples: Sequence[TaskExample], collator: Collator, margin: int = 10) -> int:
    """Most output tokens worth decoding for a sequence task: the longest *training* label's token count
    plus ``margin`` (a hypothesis that has not stopped by then is cut; no test label is looked at)."""
    if not train_examples:
        raise ValueError("output_length_cap: no training examples")
    return max(len(collator.label_tokens(e.label)) for e in train_examples) + margin


def _batches(examples: Sequence[TaskExample], batch_size: int) -> list[Sequence[TaskExample]]:
    return [examples[i:i + batch_size] for i in range(0, len(examples), batch_size)]


def _accuracy(preds: Sequence[str | None], refs: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """``{"value", "per_class_accuracy"}`` of predictions against references."""
    correct = [p == r for p, r in zip(preds, refs)]
    per_class = {}
    for lb in labels:
        idx = [i for i, r in enumerate(refs) if r == lb]
        if idx:
            per_class[lb] = sum(correct[i] for i in idx) / len(idx)
    return {"value": sum(correct) / len(correct), "per_class_accuracy": per_class}


@torch.no_grad()
def evaluate(model: PromptedULM, examples: Sequence[TaskExample], collator: Collator, *, batch_size: int = 32,
             mode: str | None = None, beam: int = 5, max_len: int | None = None, length_penalty: float = 1.0,
             progress: bool = False) -> dict[str, Any]:
    """Score ``examples`` with the task's metric.

    Args:
        mode: classification: ``both`` (default: ``value`` is ``greedy_exact``, SpeechPrompt's decoder, and
            ``constrained`` is scored beside it), ``greedy`` or ``constrained`` alone; sequence: ``beam``
            (default; ``beam=1`` is constrained greedy) or ``greedy`` (unconstrained).
        max_len: sequence tasks: most output tokens (default: 2 x the chunk's longest reference token
            count + 10; experiments pass :func:`output_length_cap` of the training split instead).
    Returns:
        ``{"metric", "value", "lower_is_better", "mode", "predictions": [{"uid", "label", "prediction"}],
        "labels"}`` plus, for classification, ``"decoder"`` (the decoder behind ``value``) and
        ``"per_class_accuracy"``; with ``both`` also ``"constrained": {"value", "per_class_accuracy"}``
        and a ``"constrained_prediction"`` per prediction; ``"probs"`` ((N, C) nested lists) whenever the
        constrained decoder ran; for intent ``"slot_accuracy"`` (of ``value``'s decoder); for ASR ``"cer"``
        and ``"wer"``; for SF ``"slot_type_f1"`` (the value) and ``"slot_value_cer"``.
    """

    spec: TaskSpec = model.spec
    if not examples:
        raise ValueError("evaluate: no examples")
    classification = spec.kind == "classification"
    mode = mode or ("both" if classification else "beam")
    ok_modes = ("both", "constrained", "greedy") if classification else ("beam", "greedy")
    if mode not in ok_modes:
        raise ValueError(f"evaluate: mode {mode!r} is not one of {ok_modes} for task {spec.name!r}")
    was_training = model.training
    model.eval()
    device = next(model.lm.parameters()).device
    preds: list[str | None] = []
    constrained: list[str | None] = []
    probs: list[list[float]] = []
    # Batches of similar length pad little; the results are put back in the examples' order below.
    order = length_order(examples)
    for chunk in tqdm(_batches([examples[i] for i in order], batch_size), desc=f"eval {spec.name}",
                      disable=not progress):
        batch = collator(chunk).to(device)
        if classification:
            if mode in ("both", "constrained"):
                p = score_labels(model, batch).cpu()
                probs.extend(p.tolist())
                constrained.extend(spec.labels[i] for i in p.argmax(-1).tolist())
            if mode in ("both", "greedy"):
                preds.extend(greedy_labels(model, batch))
        else:
            longest = max(len(collator.label_tokens(e.label)) for e in chunk)
            n = max_len or 2 * longest + 10
            if mode == "beam":
                outs = beam_decode(model, batch, beam=beam, max_len=n, length_penalty=length_penalty)
            else:
                outs = [row[row != 1].tolist() for row in greedy_tokens(model, batch, n).cpu()]
            preds.extend(spec.label_from_atoms(model.verbalizer.decode_tokens(o)) for o in outs)
    model.train(was_training)
    back = sorted(range(len(order)), key=order.__getitem__)  # position of each example in `order`
    preds = [preds[j] for j in back] if preds else preds
    constrained = [constrained[j] for j in back] if constrained else constrained
    probs = [probs[j] for j in back] if probs else probs
    if mode == "constrained":
        preds, constrained = constrained, []
    refs = [e.label for e in examples]
    result: dict[str, Any] = {"metric": spec.metric, "lower_is_better": spec.lower_is_better, "mode": mode,
                              "labels": list(spec.labels),
                              "predictions": [{"uid": e.uid, "label": e.label, "prediction": p}
                                              for e, p in zip(examples, preds)]}
    if classification:
        result["decoder"] = "constrained" if mode == "constrained" else "greedy_exact"
        result.update(_accuracy(preds, refs, spec.labels))
        if constrained:
            result["constrained"] = _accuracy(constrained, refs, spec.labels)
            for row, c in zip(result["predictions"], constrained):
                row["constrained_prediction"] = c
        if probs:
            result["probs"] = probs
        if spec.name == "intent":
            slots = ("action", "object", "location")
            result["slot_accuracy"] = {
                s: sum(p is not None and p.split("|")[i] == r.split("|")[i] for p, r in zip(preds, refs))
                / len(refs) for i, s in enumerate(slots)}
    else:
        hyps = [p or "" for p in preds]
        if spec.atom_mode == "slot_symbols":  # slot filling: SUPERB's metrics over the slots
            result.update(slot_metrics(hyps, refs))
            result["value"] = result["slot_type_f1"]
            return result
        result["cer"] = error_rate(refs, hyps)
        result["wer"] = error_rate([r.split() for r in refs], [h.split() for h in hyps])
        result["value"] = result["cer"]
    return result
