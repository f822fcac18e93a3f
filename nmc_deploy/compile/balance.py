"""Balance the per-core work of a partition within the chips it already uses (pure).

A time step lasts as long as its busiest core works (:mod:`~nmc_deploy.report.latency`):
its synaptic operations and neuron updates. The resource-driven partition
(:func:`~.partition.partition_program`) fills cores to their memory and axon limits and
does not look at work, so one core may carry several times the mean. :func:`balance_cores`
re-partitions with a further per-core limit, the estimated work per step::

    work(neuron) = time_per_neuron_update_active_ns
                   + time_per_synop_ns * synops_per_step(population) * fan_in(neuron)
                                         / sum of fan_in over the population

``synops_per_step`` is measured (the layers into the population in an activity file;
attention layers excluded: their ops run on the attention units' cores) or,
without one, ``PRIOR_RATE x`` its synapses (:data:`~.mesh.PRIOR_RATE`); ``fan_in`` counts a
neuron's synapses over every non-attention group into it. The caps are fractions of the
greedy partition's busiest core: :data:`WORK_CAPS` while the chips hold, then a bisection
towards the first cap that did not; the lowest fitting cap the caller accepts wins: more
cores means more messages (a source reaches more destination cores) and more hops, which
the layout then has to win back (:func:`~.mesh.layout_cores` accepts a partition whose
laid-out message hops grow by at most :data:`~.mesh.BALANCE_HOPS_SLACK`).
"""
from __future__ import annotations

import numpy as np

from ..errors import CapacityError
from ..program import Program
from ..program.activity import Activity
from ..program.placement import Placement
from ..program.shared_weights import ConvShared, TokenShared
from ..targets import HardwareTarget
from .partition import partition_program

__all__ = ["WORK_CAPS", "BISECTION_STEPS", "neuron_work", "core_work", "balance_cores"]

#: Per-core work caps tried, as fractions of the greedy partition's busiest core.
WORK_CAPS = (0.9, 0.8, 0.65, 0.5, 0.4)
#: Halvings of the interval between the last cap that fit and the first that did not.
BISECTION_STEPS = 3


def _fan_in(w) -> np.ndarray:
    """Synapses into each target neuron (flat index) of one group's weights."""
    if isinstance(w, TokenShared):  # flat index c N + n: a channel's row, for every token
        return np.repeat(np.diff(w.kernel.indptr), w.n_tokens).astype(np.float64)
    if isinstance(w, ConvShared):  # per output channel and position: its in-range taps
        taps = np.count_nonzero(w.kernel, axis=1).astype(np.float64)  # (C_out, kH, kW)
        ho, wo = w.out_hw
        vy = np.zeros((w.kernel.shape[2], ho))
        vx = np.zeros((w.kernel.shape[3], wo))
        for k, (o, _) in enumerate(w._valid(0)):
            vy[k, o] = 1.0
        for k, (o, _) in enumerate(w._valid(1)):
            vx[k, o] = 1.0
        return np.einsum("okl,ky,lx->oyx", taps, vy, vx).ravel()
    return np.diff(w.indptr).astype(np.float64)  # a sparse CSR matrix: rows are targets


def neuron_work(program: Program, target: HardwareTarget, activity: Activity | None = None,
                prior_rate: float = 0.1) -> dict[str, np.ndarray]:
    """Estimated work per step (ns) of every neuron (module docstring)."""
    steps = None if activity is None else activity.samples * activity.time_steps
    measured: dict[str, float] = {}
    if activity is not None:
        for layer in activity.layers:
            if layer.kind == "attention":  # runs on the attention units' cores
                continue
            measured[layer.population] = measured.get(layer.population, 0.0) + layer.synops
    work = {}
    for p in program.populations:
        fan = np.zeros(p.size)
        for g in program.groups:
            if g.target == p.name and g.kind != "attention":
                fan += _fan_in(g.weights)
        total = fan.sum()
        synops = (measured[p.name] / steps if p.name in measured and steps
                  else prior_rate * total)
        share = fan / total if total else np.zeros(p.size)
        work[p.name] = target.time_per_neuron_update_active_ns + \
            target.time_per_synop_ns * synops * share
    return work


def core_work(placement: Placement, work: dict[str, np.ndarray]) -> np.ndarray:
    """Estimated work per step of every neuro core of ``placement``."""
    out = np.zeros(len(placement.cores))
    for i, chunks in enumerate(placement.cores):
        for c in chunks:
            order = placement.orders.get(c.population)
            idx = slice(c.start, c.stop) if order is None else order.neurons(c.start, c.stop)
            out[i] += float(work[c.population][idx].sum())
    return out


def balance_cores(program: Program, target: HardwareTarget, placement: Placement,
                  work: dict[str, np.ndarray], accept, *,
                  weight_sharing: bool | None = None) -> tuple[Placement, float | None]:
    """The partition of ``program`` with the lowest per-core work cap that fits the chips
    ``placement`` uses and that ``accept(partition)`` takes (the caller's check, e.g. on
    traffic); ``(placement, None)`` when none does. Returns the partition and its cap (a
    fraction of ``placement``'s busiest core).

    Caps: :data:`WORK_CAPS` from the top while the chips hold, then
    :data:`BISECTION_STEPS` halvings between the last cap that fit and the first that did
    not; the fitting caps are offered to ``accept`` from the lowest up."""
    per_chip = target.cores_per_chip
    chips = -(-placement.cores_used // per_chip)
    top = float(core_work(placement, work).max(initial=0.0))
    fitting: dict[float, Placement] = {}

    def fits(cap: float) -> bool:
        try:
            trial = partition_program(program, target, weight_sharing=weight_sharing,
                                      work=work, max_work=cap * top)
        except CapacityError:
            return False
        if -(-trial.cores_used // per_chip) > chips:
            return False
        fitting[cap] = trial
        return True

    hi, lo = 1.0, None  # hi: the lowest cap known to fit (1.0: the partition itself)
    for cap in WORK_CAPS:
        if not fits(cap):
            lo = cap
            break
        hi = cap
    for _ in range(BISECTION_STEPS if lo is not None else 0):
        mid = round((hi + lo) / 2, 4)
        if fits(mid):
            hi = mid
        else:
            lo = mid
    for cap in sorted(fitting):  # a cap that leaves the cores as they are changes nothing
        if fitting[cap].cores_used > placement.cores_used and accept(fitting[cap]):
            return fitting[cap], cap
    return placement, None
