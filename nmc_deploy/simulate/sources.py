"""The outputs of every group source over a batch, as the reference simulation produces them.

A group reads its source (the input, the constant, a population's spikes, a relay's
payloads, an attention op's counts or a token selector's gated stream) as (T*B, n_src)
rows, t-major (row ``t B + b`` is sample b at step t; :meth:`SourceStreams.rows`), or as
the transposed (n_src, T*B) columns (:meth:`SourceStreams.__call__`);
:class:`SourceStreams` computes the derived ones once, in the simulation's precision.
"""
from __future__ import annotations

import numpy as np

from ..loihi.attention import attention_counts, top_k_mask
from ..program import SourceKind

__all__ = ["SourceStreams", "lagged_columns", "lagged_rows"]


def lagged_rows(x: np.ndarray, lag: int, batch: int) -> np.ndarray:
    """Rows t-major (T*B, n) shifted by ``lag`` steps (zeros for t < lag)."""
    if not lag:
        return x
    out = np.zeros_like(x)
    if lag * batch < x.shape[0]:
        out[lag * batch:] = x[:x.shape[0] - lag * batch]
    return out


def lagged_columns(x: np.ndarray, lag: int, batch: int) -> np.ndarray:
    """Columns t-major (n, T*B) shifted by ``lag`` steps (zeros for t < lag)."""
    if not lag:
        return x
    out = np.zeros_like(x)
    if lag * batch < x.shape[1]:
        out[:, lag * batch:] = x[:, :x.shape[1] - lag * batch]
    return out


class SourceStreams:
    """Payloads of group sources for all steps of a batch, as (n_src, T*B) columns t-major.

    The input sequence; CONST (ones); a population's spikes (the loop stores them in
    ``spikes``); a relay's graded payloads (stored by :meth:`relay`); an attention op's
    counts (computed once, its accumulate count in ``op_stats``); a token selector's gated
    stream (computed once: its keep mask goes to ``masks``, its work to ``sel_stats``).
    ``precision`` (:mod:`~nmc_deploy.simulate.precision`) selects the integer or the float
    token selector and relay; ``selection=False`` keeps every token.
    """

    def __init__(self, program, x: np.ndarray, precision, selection: bool = True):
        # x: (B, T, n_in) input sequence
        self.program, self.x, self.precision = program, x, precision
        self.T, self.B = x.shape[1], x.shape[0]
        self.dtype = precision.dtype
        self.selection = selection
        self.spikes: dict[str, np.ndarray] = {}  # pop -> (T, B, n) bool
        self.payloads: dict[str, np.ndarray] = {}  # relay -> (T, B, n) int64 / float64
        self.kinds = program.source_kinds()
        self.ops = {op.name: op for op in program.attention}
        self.sels = {t.name: t for t in program.token_selects}
        self.out: dict[str, np.ndarray] = {}
        self.op_stats: dict[str, int] = {}
        self.parts: dict[str, list[np.ndarray]] = {}  # op -> counts per key block
        self.masks: dict[str, np.ndarray] = {}  # selector -> (B, N) bool
        self.sel_stats: dict[str, dict] = {}
        self._abs_max: dict[str, float] = {}
        self._sums: dict[tuple, np.ndarray] = {}
        self._active: dict[tuple[str, int], np.ndarray] = {}

    def __call__(self, src: str, lag: int = 0) -> np.ndarray:
        """(n_src, T*B) columns of ``src`` delayed by ``lag`` steps, in the precision's dtype."""
        return self.rows(src, lag).T.astype(self.dtype)

    def rows(self, src: str, lag: int = 0) -> np.ndarray:
        """(T*B, n_src) rows of ``src`` delayed by ``lag`` steps; a population's spikes as
        bool (a view), every other source in the precision's dtype. Not to be modified."""
        return lagged_rows(self._base(src), lag, self.B) if lag else self._base(src)

    def summed(self, sources, lag: int, dtype, keep: bool = False) -> np.ndarray:
        """The sum of the rows of ``sources`` (delayed by ``lag``) in ``dtype`` (bool spikes
        summed as numbers); one source is returned as it is. ``keep``: remember the sum for
        other readers of the same sources in this batch."""
        key = (tuple(sources), lag, np.dtype(dtype))
        if key in self._sums:
            return self._sums[key]
        rows = [self.rows(s, lag) for s in sources]
        if len(rows) == 1 and not keep:
            return rows[0]
        x = rows[0].astype(dtype)
        for r in rows[1:]:
            x += r
        if keep:
            self._sums[key] = x
        return x

    def packed(self, sources, lag: int, bits: int, dtype, keep: bool = False) -> np.ndarray:
        """``sum_j s_j 2**(bits j)`` of the rows of ``sources`` (delayed by ``lag``) in
        ``dtype``: each source in a field of ``bits`` bits (spikes, 0/1). ``keep``: remember
        it for other readers of the same sources in this batch."""
        key = ("packed", tuple(sources), lag, bits, np.dtype(dtype))
        if key in self._sums:
            return self._sums[key]
        x = self.rows(sources[0], lag).astype(dtype)
        for j, s in enumerate(sources[1:], 1):
            part = self.rows(s, lag).astype(dtype)
            part *= 2.0 ** (bits * j)
            x += part
        if keep:
            self._sums[key] = x
        return x

    def abs_max(self, src: str) -> float:
        """The largest magnitude ``src`` emits in this batch (1 for spikes)."""
        if src not in self._abs_max:
            x = self._base(src)
            self._abs_max[src] = 1.0 if x.dtype == bool else float(np.abs(x).max(initial=0))
        return self._abs_max[src]

    def active(self, src: str, lag: int = 0) -> np.ndarray:
        """(n_src,) int64: rows in which each neuron of ``src`` (delayed by ``lag``) is
        nonzero, i.e. the messages it sends."""
        key = (src, lag)
        if key not in self._active:
            x = self._base(src)
            if lag:
                x = x[:max(0, x.shape[0] - lag * self.B)]
            self._active[key] = np.count_nonzero(x, axis=0).astype(np.int64)
        return self._active[key]

    def _base(self, src: str) -> np.ndarray:
        T, B = self.T, self.B
        kind = self.kinds[src]
        if kind is SourceKind.INPUT:
            if src not in self.out:
                self.out[src] = self.x.transpose(1, 0, 2).reshape(T * B, -1).astype(self.dtype)
            return self.out[src]
        if kind is SourceKind.CONST:
            return np.ones((T * B, 1), self.dtype)
        if kind is SourceKind.ATTENTION:
            if src not in self.out:
                parts = self._attention(self.ops[src])
                self.parts[src] = parts
                self.out[src] = parts[0] if len(parts) == 1 else sum(parts)
            return self.out[src]
        if kind is SourceKind.SELECTOR:
            if src not in self.out:
                self.out[src] = np.ascontiguousarray(self._select(self.sels[src]).T)
            return self.out[src]
        if kind is SourceKind.RELAY:
            return self.payloads[src].reshape(T * B, -1).astype(self.dtype, copy=False)
        return self.spikes[src].reshape(T * B, -1)

    def attention_parts(self, src: str, lag: int = 0) -> list[np.ndarray]:
        """An attention op's counts per key block of its units (one block: the counts), as
        (T*B, n) rows; each block's weighted partial is shifted on its own, as its unit
        sends it."""
        self._base(src)
        return [lagged_rows(p, lag, self.B) if lag else p for p in self.parts[src]]

    def _attention(self, op) -> list[np.ndarray]:
        T, B = self.T, self.B
        q, k, v = (self.spikes[name].reshape(T * B, -1) for name in (op.q, op.k, op.v))
        token = np.arange(op.dim * op.n_tokens) % op.n_tokens
        parts, n_ops = [], 0
        for lo, hi in op.key_blocks:
            keep = (token >= lo) & (token < hi)
            whole = bool(keep.all())
            C, ops = attention_counts(q, k if whole else k & keep, v if whole else v & keep,
                                      op.num_heads, op.dim, op.n_tokens)
            parts.append(C.astype(self.dtype, copy=False))
            n_ops += int(ops.sum())
        self.op_stats[op.name] = n_ops
        return parts

    def steps(self, src: str) -> np.ndarray:
        """The source's output per step, (T, B, n) (spikes as bool)."""
        return self.rows(src).reshape(self.T, self.B, -1)

    def relay(self, pop, a_in: np.ndarray) -> np.ndarray:
        """Store and return the (T, B, n) payloads of relay ``pop`` for its synaptic input
        ``a_in``: ``a_in >> payload_shift`` in fixed point (no state); the real value in
        float."""
        out = self.precision.relay_payload(pop, a_in)
        self.payloads[pop.name] = out
        return out

    def _select(self, sel) -> np.ndarray:
        T, B = self.T, self.B
        n = sel.dim * sel.n_tokens
        total = np.zeros((n, T * B), self.dtype)
        for g in sel.inputs:
            total += np.asarray(self.precision.group_weights(g) @ self(g.source), self.dtype)
        counts = total.reshape(n, T, B).sum(axis=1).T  # (B, dim*N)
        feats = counts.reshape(B, sel.dim, sel.n_tokens).transpose(0, 2, 1)  # (B, N, dim)
        prev = self.masks[sel.previous] if sel.previous else np.ones((B, sel.n_tokens), bool)
        scores = self.precision.token_scores(sel, feats, T)
        mask = top_k_mask(scores, sel.n_keep, prev) if self.selection else prev
        self.masks[sel.name] = mask
        hidden = int(np.asarray(sel.w1).shape[0])
        evaluated = int(prev.sum())
        self.sel_stats[sel.name] = {
            "name": sel.name, "evaluated_tokens": evaluated, "kept_tokens": int(mask.sum()),
            "predictor_macs": evaluated * hidden * (sel.dim + 1), "lut_lookups": evaluated * hidden,
            "buffered_values": n * T * B}
        gate = np.tile(mask, (1, sel.dim)).T  # (dim*N, B): neuron c*N + n -> token n
        return (total.reshape(n, T, B) * gate[:, None, :]).reshape(n, T * B)

    def gate(self, pop) -> np.ndarray | None:
        """(B, size) bool of the neurons a token selector leaves on (None: not gated)."""
        if not pop.gate:
            return None
        if pop.gate not in self.masks:
            self(pop.gate)
        n_tok = self.sels[pop.gate].n_tokens
        return self.masks[pop.gate][:, np.arange(pop.size) % n_tok]

    def selector_counts(self) -> dict[str, np.ndarray]:
        """Per selector, its output summed over the T steps, (B, dim*N)."""
        T, B = self.T, self.B
        return {name: self(name).reshape(-1, T, B).sum(axis=1).T for name in self.sels}
