"""Traffic-aware layout of a placement's cores on the chips' meshes (pure numpy/scipy).

Two layouts (``compile --placement``):

* ``greedy`` - :func:`~.chips.assign_chips`: cores in program order, chips filled one after
  the other, tiles and chips visited in snake order. The reproducible baseline.
* ``traffic`` - :func:`place_by_traffic`: the same cores (the partition is not changed) and
  the same number of chips, laid out to reduce message hops.

The cost a layout minimises is the route model of :mod:`~.traffic`: a message from core
``a`` to core ``b`` makes ``|x_a - x_b| + |y_a - y_b|`` tile hops plus
``sum |p_a - p_b|`` chip hops (``p``: the chips' places on the system's chip grid). Every
core therefore has one coordinate vector ``(x, y, p_1, ..., p_k)`` and the message hops of a
layout are ``sum over core pairs of messages(a, b) * || c_a - c_b ||_1``::

    message_hops = sum_(a, b) m_ab * (tile_hops(a, b) + chip_hops(a, b))

``m_ab`` (expected messages per time step from core ``a`` to core ``b``) comes from the
program's synapses and the placement's slices, as the hardware sends them: one message per
spiking source neuron and destination core (:func:`~.traffic.core_messages`), weighted by
a firing rate per source neuron: measured (an activity file of an earlier simulation,
rates per population) or the stated prior :data:`PRIOR_RATE`.

Traffic-aware layout, three steps, deterministic for a seed:

1. *Chips on the system*: the ``K`` chips the greedy layout uses (``ceil(cores /
   cores_per_chip)``) go to the most compact box of the chip grid (smallest sum of sides,
   then smallest volume), visited in snake order.
2. *Recursive spectral bisection*: the slots (chip, tile) are cut in two along the
   coordinate with the largest extent; the cores are cut in two of the matching sizes by
   the Fiedler vector of their message graph (``m_ab + m_ba``; program order for small or
   very large sub-graphs), the half that comes first in program order to the first half of
   the slots; recursively down to single slots.
3. *Annealing* (:func:`anneal_layout`): ``effort`` proposals per core; a proposal moves a
   core to a free slot or swaps it with the core in a slot, the slot chosen half the time at
   random and half the time next to the weighted median of the core's partners (the best
   place for it alone under an L1 cost); a change is kept if it lowers the cost or with
   probability ``exp(-delta / T)``, ``T`` falling by 10 % 60 times over the search.

Not done: changing the partition itself (which neurons share a core), and balancing the
per-core work (the busiest core's work is the partition's; see docs/results-placement.md).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from ..errors import InputFileError
from ..program import Program
from ..program.activity import Activity
from ..program.chips import ChipAssignment, MeshEstimate, MeshPlacement
from ..program.placement import Placement, summarize_cores
from ..program.shared import LI
from ..targets import HardwareTarget
from .balance import balance_cores, core_work, neuron_work
from .chips import layout_order, snake_position
from .partition import attention_units
from .traffic import core_messages

__all__ = ["PLACEMENTS", "PRIOR_RATE", "DEFAULT_EFFORT", "prior_events", "measured_events",
           "message_matrix", "estimate_layout", "compact_chip_positions", "anneal_layout",
           "place_by_traffic", "layout_cores", "BALANCE_HOPS_SLACK"]

#: The layouts ``compile --placement`` offers.
PLACEMENTS = ("greedy", "traffic")
#: Events per neuron and time step assumed for every sender without a measured rate (an
#: assumption of nmc-deploy: a typical firing rate of the spiking transformers we compile,
#: whose measured population rates lie between about 0.01 and 0.3).
PRIOR_RATE = 0.1
#: How much the laid-out message hops may grow when the per-core work is balanced (a
#: fraction of the unbalanced traffic-aware layout's hops).
BALANCE_HOPS_SLACK = 0.10
#: Annealing proposals per core (:func:`anneal_layout`).
DEFAULT_EFFORT = 30
# annealing proposals at most, whatever the effort (keeps 10^5-core programs in minutes)
_MAX_PROPOSALS = 2_000_000
# and at least (small programs: cheap, and a few hundred proposals leave much on the table)
_MIN_PROPOSALS = 20_000
_COOLING_STEPS = 60  # the temperature falls by 10 % this many times over a search
# sub-graphs with fewer cores are cut in program order, larger ones by the Fiedler vector
# when they have at most _SPECTRAL_MAX cores (shift-invert needs a sparse LU)
_SPECTRAL_MIN, _SPECTRAL_MAX = 8, 20_000


# ---------------------------------------------------------------------------- weights

def _senders(program: Program) -> dict[str, int]:
    """Every sender (non-LI population, attention unit on a core) and its neuron count."""
    out = {p.name: p.size for p in program.populations if p.kind != LI}
    for op in program.attention:
        for u in attention_units(op):
            out[u.name] = op.dim * op.n_tokens
    return out


def prior_events(program: Program, rate: float = PRIOR_RATE) -> dict[str, np.ndarray]:
    """Expected events per neuron and step of every sender: ``rate`` for all."""
    return {name: np.full(n, rate) for name, n in _senders(program).items()}


def measured_events(program: Program, activity: Activity,
                    rate: float = PRIOR_RATE) -> tuple[dict[str, np.ndarray], list[str]]:
    """Events per neuron and step from a simulation's population counts (spikes, or nonzero
    payloads of a relay, per neuron update); senders the activity lacks (attention units,
    populations of another program) get ``rate``. Returns the events and those senders."""
    recorded = {p.name: p for p in activity.populations}
    events, prior = {}, []
    for name, n in _senders(program).items():
        p = recorded.get(name)
        if p is not None and p.neurons == n and p.neuron_updates:
            events[name] = np.full(n, p.spikes / p.neuron_updates)
        else:
            events[name] = np.full(n, rate)
            prior.append(name)
    return events, prior


def message_matrix(program: Program, placement: Placement,
                   events: dict[str, np.ndarray]) -> sp.csr_matrix:
    """Expected messages per step from core ``a`` (row) to core ``b`` (column)."""
    from ..program.placement import PlacementSummary

    summary = PlacementSummary.from_json(summarize_cores(placement, program).to_json())
    src, dst, w = core_messages(program, summary, events)
    n = placement.cores_used
    return sp.csr_matrix((w, (src, dst)), shape=(n, n))


# ---------------------------------------------------------------------------- layouts

def _coordinates(chips: ChipAssignment) -> np.ndarray:
    """Per core its (tile x, tile y, chip grid position...) coordinates."""
    tiles = np.asarray(chips.core_tile, np.int64).reshape(-1, 2)
    pos = np.asarray(chips.chip_position, np.int64).reshape(len(chips.chip_position), -1)
    return np.concatenate([tiles, pos[np.asarray(chips.core_chip, np.int64)]], axis=1)


def estimate_layout(chips: ChipAssignment, m: sp.csr_matrix) -> MeshEstimate:
    """The expected traffic of a layout: messages, hops, messages between chips per step."""
    c = m.tocoo()
    coords = _coordinates(chips)
    ntile = 2
    d = np.abs(coords[c.row] - coords[c.col])
    tile, chip = d[:, :ntile].sum(axis=1), d[:, ntile:].sum(axis=1)
    core_chip = np.asarray(chips.core_chip)
    used = c.data > 0
    r = lambda x: round(float(x), 6)  # as placement.json keeps them  # noqa: E731
    return MeshEstimate(
        messages_per_step=r(c.data.sum()), message_hops_per_step=r(c.data @ (tile + chip)),
        tile_hops_per_step=r(c.data @ tile), chip_hops_per_step=r(c.data @ chip),
        messages_between_chips_per_step=r(c.data[core_chip[c.row] != core_chip[c.col]].sum()),
        longest_route_hops=int((tile + chip)[used].max()) if used.any() else 0,
        chips_used=chips.chips_used)


def compact_chip_positions(k: int, grid: tuple[int, ...]) -> list[tuple[int, ...]]:
    """``k`` places on a chip grid: the box of the grid with the smallest sum of sides (then
    the smallest volume) that holds ``k`` chips, visited in snake order from its corner."""
    best = min((box for box in itertools.product(*(range(1, g + 1) for g in grid))
                if math.prod(box) >= k), key=lambda b: (sum(b), math.prod(b), b))
    return [snake_position(i, best) for i in range(k)]


def _slots(target: HardwareTarget, chip_positions) -> np.ndarray:
    """Coordinates of every core slot: per chip (in order) its ``cores_per_chip`` slots,
    the ``k``-th on tile ``snake(k // cores_per_tile)`` (the tiles the greedy layout uses)."""
    tiles = [snake_position(k // target.cores_per_tile, (target.tiles_x, target.tiles_y))
             for k in range(target.cores_per_chip)]
    return np.array([t + tuple(p) for p in chip_positions for t in tiles], np.int64)


def _fiedler_order(w: sp.csr_matrix, nodes: np.ndarray) -> np.ndarray | None:
    """``nodes`` sorted by the Fiedler vector of their sub-graph (None: not computable)."""
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, eigsh

    a = w[nodes][:, nodes]
    if a.nnz == 0:
        return None
    deg = np.asarray(a.sum(axis=1)).ravel()
    lap = (sp.diags(deg) - a).tocsc().astype(np.float64)
    scale = deg.max()
    v0 = np.linspace(1.0, 2.0, len(nodes))  # fixed start: deterministic
    try:
        vals, vecs = eigsh(lap / scale + 1e-9 * sp.identity(len(nodes), format="csc"), k=2,
                           sigma=0, which="LM", v0=v0, tol=1e-6)
    except (ArpackError, ArpackNoConvergence, RuntimeError):
        return None
    f = vecs[:, int(np.argsort(vals)[1])]
    f = np.round(f / (np.abs(f).max() or 1.0), 9)  # sign and noise fixed below
    order = np.argsort(f, kind="stable")
    if f[order[0]] == f[order[-1]]:
        return None
    return nodes[order]


def _bisect(w: sp.csr_matrix, nodes: np.ndarray, slots: np.ndarray, coords: np.ndarray,
            rank: np.ndarray, out: np.ndarray) -> None:
    """Give ``nodes`` (cores, in program order) slots from ``slots`` (recursive bisection)."""
    stack = [(nodes, slots)]
    while stack:
        nodes, slots = stack.pop()
        if len(nodes) == 0:
            continue
        c = coords[slots]
        extent = c.max(axis=0) - c.min(axis=0)
        if len(slots) == 1 or not extent.any():
            out[nodes] = slots[:len(nodes)]
            continue
        axis = int(np.argmax(extent))
        keys = tuple(c[:, k] for k in reversed(range(c.shape[1]))) + (c[:, axis],)
        slots = slots[np.lexsort(keys)]
        half = len(slots) // 2
        first, second = slots[:half], slots[half:]
        n1 = min(len(first), max(len(nodes) - len(second), round(len(nodes) * half / len(slots))))
        if _SPECTRAL_MIN <= len(nodes) <= _SPECTRAL_MAX:
            ordered = _fiedler_order(w, nodes)
            if ordered is not None:
                # the half that comes first in program order takes the first slots
                if np.median(rank[ordered[:n1]]) > np.median(rank[ordered[n1:]]):
                    ordered = ordered[::-1]
                nodes = ordered
        stack.append((nodes[n1:], second))
        stack.append((nodes[:n1], first))


def anneal_layout(w: sp.csr_matrix, slot_of: np.ndarray, coords: np.ndarray, *,
                  seed: int, effort: int = DEFAULT_EFFORT) -> np.ndarray:
    """Improve a layout (``slot_of[core]``, slots at ``coords``) by simulated annealing of
    ``sum m_ab |c_a - c_b|_1`` (module docstring); returns the new ``slot_of``."""
    n, n_slots = len(slot_of), len(coords)
    if n < 2:
        return slot_of.copy()
    rng = np.random.default_rng(seed)
    slot_of = slot_of.copy()
    occupant = np.full(n_slots, -1)
    occupant[slot_of] = np.arange(n)
    pos = coords[slot_of].copy()
    indptr, indices, data = w.indptr, w.indices, w.data
    coo = w.tocoo()
    temp = 0.2 * float(coo.data @ np.abs(pos[coo.row] - pos[coo.col]).sum(axis=1)) / max(w.nnz, 1)

    def gain(a, new, skip):  # cost change of moving core a to coordinates new (skip: b)
        nb, wt = indices[indptr[a]:indptr[a + 1]], data[indptr[a]:indptr[a + 1]]
        keep = nb != skip
        q = pos[nb[keep]]
        return float(wt[keep] @ (np.abs(q - new).sum(axis=1) - np.abs(q - pos[a]).sum(axis=1)))

    proposals = min(max(effort * n, _MIN_PROPOSALS), _MAX_PROPOSALS)
    cool_every = max(1, proposals // _COOLING_STEPS)
    for it in range(proposals):
        if it and it % cool_every == 0:
            temp *= 0.9
        a = int(rng.integers(n))
        lo, hi = indptr[a], indptr[a + 1]
        if lo == hi:
            continue
        if rng.random() < 0.5:
            q, wt = pos[indices[lo:hi]], data[lo:hi]
            target = np.empty(q.shape[1])
            for k in range(q.shape[1]):
                o = np.argsort(q[:, k], kind="stable")
                cw = np.cumsum(wt[o])
                target[k] = q[o[np.searchsorted(cw, cw[-1] / 2)], k]
            dist = np.abs(coords - target).sum(axis=1)
            near = np.flatnonzero(dist <= dist.min() + int(rng.integers(0, 3)))
            slot = int(near[rng.integers(len(near))])
        else:
            slot = int(rng.integers(n_slots))
        b = int(occupant[slot])
        if b == a:
            continue
        old, new = pos[a].copy(), coords[slot]
        delta = gain(a, new, b) + (gain(b, old, a) if b >= 0 else 0.0)
        if delta < 0 or rng.random() < math.exp(-delta / max(temp, 1e-12)):
            occupant[slot_of[a]] = b
            occupant[slot] = a
            if b >= 0:
                slot_of[b], pos[b] = slot_of[a], old
            slot_of[a], pos[a] = slot, new
    return slot_of


def place_by_traffic(placement: Placement, program: Program, target: HardwareTarget,
                     m: sp.csr_matrix, *, seed: int = 0, effort: int = DEFAULT_EFFORT,
                     chip_weight: float = 1.0) -> ChipAssignment:
    """The traffic-aware layout (module docstring) of ``placement``'s cores, with message
    matrix ``m`` (:func:`message_matrix`). Pure; the chips used equal the greedy layout's.

    ``chip_weight``: what a chip hop costs in tile hops (1: the issue's messages x hops;
    about 3.9 would weigh hops by their energy, e_chip_hop_pj / mean e_tile_hop_*_pj of
    loihi2; docs/results-placement.md)."""
    greedy = placement.chips
    n, cpc = placement.cores_used, target.cores_per_chip
    k = -(-n // cpc)
    chip_positions = compact_chip_positions(k, tuple(target.chip_grid))
    coords = _slots(target, chip_positions).astype(np.float64)
    coords[:, 2:] *= chip_weight  # a chip hop costs chip_weight tile hops
    w = (m + m.T).tocsr()
    w.setdiag(0)
    w.eliminate_zeros()
    order = np.asarray(layout_order(placement, program))  # program order of the cores
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    slot_of = np.full(n, -1, np.int64)
    _bisect(w, order, np.arange(len(coords)), coords, rank, slot_of)
    slot_of = anneal_layout(w, slot_of, coords, seed=seed, effort=effort)
    chip, k_in = np.divmod(slot_of, cpc)
    tiles = (target.tiles_x, target.tiles_y)
    return replace(greedy, core_chip=tuple(int(c) for c in chip),
                   core_tile=tuple(snake_position(int(i) // target.cores_per_tile, tiles)
                                   for i in k_in),
                   chip_position=tuple(chip_positions))


def _laid_out(placement: Placement, program: Program, target: HardwareTarget, events,
              seed: int, effort: int):
    """``(chips, estimate, greedy estimate)`` of one partition laid out by traffic (the
    greedy chips when the search finds nothing better under its own rates)."""
    m = message_matrix(program, placement, events)
    greedy = estimate_layout(placement.chips, m)
    chips = place_by_traffic(placement, program, target, m, seed=seed, effort=effort)
    traffic = estimate_layout(chips, m)
    if traffic.message_hops_per_step > greedy.message_hops_per_step:
        return placement.chips, greedy, greedy
    return chips, traffic, greedy


def layout_cores(placement: Placement, program: Program, target: HardwareTarget, *,
                 method: str = "greedy", activity: Activity | None = None,
                 activity_source: str | None = None, seed: int = 0,
                 effort: int = DEFAULT_EFFORT, weight_sharing: bool | None = None) -> Placement:
    """``placement`` (a partition with its greedy chips) laid out by ``method``, with the
    :class:`~nmc_deploy.program.chips.MeshPlacement` record.

    ``traffic``: messages weighed by ``activity``'s population firing rates (a simulation
    of the same model, named by ``activity_source``; :func:`measured_events`) or by
    :data:`PRIOR_RATE` (:func:`prior_events`); the partition is first laid out as it is,
    then re-partitioned with lower per-core work caps (:func:`~.balance.balance_cores`,
    ``weight_sharing`` as compiled) as long as the laid-out message hops stay within
    :data:`BALANCE_HOPS_SLACK` of the unbalanced layout's and the chips do not grow.
    """
    if method not in PLACEMENTS:
        raise InputFileError(f"placement: method '{method}' is not one of "
                             f"{', '.join(PLACEMENTS)}")
    if placement.chips is None:
        raise InputFileError("placement: no chip assignment to start from; partition first")
    if method == "greedy":  # the baseline: no rates, no estimate (compile stays fast)
        record = MeshPlacement(method=method, seed=seed, rates="not used (greedy layout)",
                               estimates={})
        return replace(placement, chips=replace(placement.chips, mesh=record))
    if activity is None:
        events = prior_events(program)
        rates = f"prior: {PRIOR_RATE:g} events per neuron and step (no simulation given)"
    else:
        events, prior = measured_events(program, activity)
        rates = (f"measured: population firing rates of {activity_source or 'a simulation'}"
                 + (f"; prior {PRIOR_RATE:g} for {len(prior)} sender(s) it lacks" if prior
                    else ""))
    chips, traffic, greedy = _laid_out(placement, program, target, events, seed, effort)
    work = neuron_work(program, target, activity, PRIOR_RATE)
    found: dict = {}

    def accept(trial: Placement) -> bool:  # balanced, laid out, hops within the slack
        out = _laid_out(trial, program, target, events, seed, effort)
        if out[1].message_hops_per_step > traffic.message_hops_per_step * (1 + BALANCE_HOPS_SLACK):
            return False
        found["accepted"] = out  # balance_cores returns the first partition accepted
        return True

    balanced, cap = balance_cores(program, target, placement, work, accept,
                                  weight_sharing=weight_sharing)
    before = float(core_work(placement, work).max(initial=0.0))
    after = float(core_work(balanced, work).max(initial=0.0))
    if cap is not None:
        chips, traffic = found["accepted"][:2]
    g = placement.chips
    record = MeshPlacement(
        method=method, seed=seed, rates=rates,
        estimates={"greedy": greedy, "traffic": traffic},
        baseline={"core_chip": list(g.core_chip), "core_tile": [list(t) for t in g.core_tile],
                  "chip_position": [list(p) for p in g.chip_position],
                  "core_population": [cs[0].population for cs in placement.cores]
                  + [u.name for u in placement.attention_cores]},
        balance={"work_cap": cap, "cores": [placement.cores_used, balanced.cores_used],
                 "busiest_core_work_ns": [round(before, 3), round(after, 3)]})
    return replace(balanced, chips=replace(chips, mesh=record))
