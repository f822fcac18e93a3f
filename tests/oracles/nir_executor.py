r"""An independent float64 executor of standard NIR graphs (torch), for cross-checks.

It runs a ``nir.NIRGraph`` as ``nir.read`` returns it (the nir package's node objects, not
nmc-deploy's graph IR), so it shares no code with our importer (``nmc_deploy.nirio``),
our lowering or our simulators. It is written from the NIR equations (docs: NIR 1.0.8
primitives; shared/docs/nir.md §1.2, §5.2, §5.3) and a :class:`Discretisation`.

Time and graph semantics
------------------------
* Input ``x`` has shape ``(B, T, *input_shape)``; step ``t`` feeds ``x[:, t]`` to the
  graph's Input node. Every node's output at every step is returned, ``(B, T, *shape)``.
* Several edges into one node sum (NIR "addition"). Nested ``NIRGraph`` nodes are run as
  part of the parent: edges into the subgraph feed its Input node, its Output node is the
  subgraph's output; inner nodes are reported as ``"sub/inner"`` and the subgraph itself as
  ``"sub"``.
* Recurrent edges (edges that close a cycle, found by a depth-first search from the Input
  in edge order) carry a one-step delay: the target reads the source's output of step
  ``t - 1``. Before ``t = 0`` every neuron's output is 0, so a recurrent ``Affine`` or
  ``Linear`` source gives its response to zeros at ``t = 0`` (an Affine's bias: snnTorch's
  RLeaky adds ``recurrent(0) = bias`` in its first step); other sources give 0 (nirtorch
  2.6's ``state["<src>_prev_output"]``, which also drops the bias at ``t = 0``).

Neuron equations (per step, ``k(tau)`` the discretisation factor)
-----------------------------------------------------------------
``k(tau) = dt / tau`` for ``integrator="forward-euler"`` and ``k(tau) = 1 - exp(-dt / tau)``
for ``"exact"`` (zero-order hold: the input is constant over the step; the voltage reads
the updated current)::

    I:        v[t] = v[t-1] + r dt x[t]                                  output v
    IF:       v[t] = v[t-1] + r dt x[t]                                  output spike
    LI:       v[t] = (1 - k) v[t-1] + k (v_leak + r x[t])                output v
    LIF:      same as LI                                                 output spike
    CubaLI:   I[t] = (1 - k_syn) I[t-1] + k_syn w_in x[t]
              v[t] = (1 - k_mem) v[t-1] + k_mem (v_leak + r I[t])        output v
    CubaLIF:  same as CubaLI                                             output spike

The leak-free rows (I, IF) are the same for both integrators (exact for a constant input).
A spiking neuron spikes when ``v > v_threshold`` (or ``v >= v_threshold`` with
``threshold_comparison=">="``) and then, in the same step, ``v <- v_reset`` (``reset="zero"``,
NIR's rule; the name follows the graph metadata of nmc-deploy) or ``v <- v - v_threshold``
(``reset="subtract"``: sinabs' and snnTorch's default, not expressible in NIR). The synaptic
current of CubaLIF is not reset. Node metadata ``threshold_comparison`` / ``reset``
override the discretisation's values for that node. ``Threshold`` is stateless and strict:
``z = x > threshold``.

Other nodes: ``Affine`` ``y = W x + b`` (leading weight dims are a batch of matrices),
``Linear`` ``y = W x``, ``Scale`` ``y = s x``, ``Conv1d``/``Conv2d`` PyTorch
cross-correlation (int or "same"/"valid" padding), ``SumPool2d`` the zero-padded window
sum, ``AvgPool2d`` that sum over ``kh kw`` (padding counts), ``Flatten`` with dims that
exclude the batch, ``Delay`` ``y[t] = x[t - round(delay / dt)]`` per element (0 before
the first input arrives).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

import nir

from nmc_deploy.errors import GraphError, SimulationError

__all__ = ["Discretisation", "discretisation_of", "execute_nir", "flatten_nir",
           "count_mismatches", "INTEGRATORS", "RESETS", "COMPARISONS"]

INTEGRATORS = ("forward-euler", "exact")
RESETS = ("zero", "subtract")
COMPARISONS = (">", ">=")
DTYPE = torch.float64


@dataclass(frozen=True)
class Discretisation:
    """How the continuous NIR equations become steps: ``dt`` in the graph's time unit
    (seconds for most tools, 1 for tools that count in steps), the integrator, the spike
    rule and the reset rule (module docstring)."""

    dt: float
    integrator: str = "forward-euler"
    threshold_comparison: str = ">"
    reset: str = "zero"

    def __post_init__(self):
        if not (isinstance(self.dt, (int, float)) and math.isfinite(self.dt) and self.dt > 0):
            raise GraphError(f"executor: dt ({self.dt}) must be a positive number; give the "
                             "time step of the tool that wrote the graph")
        for value, allowed, what in ((self.integrator, INTEGRATORS, "integrator"),
                                     (self.threshold_comparison, COMPARISONS,
                                      "threshold_comparison"),
                                     (self.reset, RESETS, "reset")):
            if value not in allowed:
                raise GraphError(f"executor: {what} ({value!r}) is not one of "
                                 f"{', '.join(allowed)}")

    def factor(self, tau: torch.Tensor) -> torch.Tensor:
        """``k(tau)``: ``dt/tau`` (forward Euler) or ``1 - exp(-dt/tau)`` (exact)."""
        if self.integrator == "exact":
            return -torch.expm1(-self.dt / tau)
        return self.dt / tau


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.size == 1:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def discretisation_of(graph: "nir.NIRGraph", **overrides) -> Discretisation:
    """The :class:`Discretisation` in ``graph.metadata`` (keys ``dt``, ``integrator``,
    ``threshold_comparison``, ``reset``), with keyword ``overrides`` (None values ignored).
    Defaults: forward Euler, ``>``, reset to ``v_reset``; ``dt`` has no default."""
    md = {k: _plain(v) for k, v in dict(getattr(graph, "metadata", {}) or {}).items()}
    values = {"integrator": "forward-euler", "threshold_comparison": ">", "reset": "zero"}
    values.update({k: md[k] for k in ("dt", *values) if k in md})
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "dt" not in values:
        raise GraphError("executor: graph metadata has no 'dt' and none was given; NIR does "
                         "not carry a time step, pass dt=")
    values["dt"] = float(values["dt"])
    return Discretisation(**values)


# --------------------------------------------------------------------------------------------
# graph flattening and order


@dataclass(frozen=True)
class FlatGraph:
    """A NIR graph with nested subgraphs inlined: ``nodes`` by full name ("sub/inner"),
    ``edges`` between full names, ``input``/``output`` the top-level Input/Output names and
    ``aliases`` mapping each subgraph name to its Output node's full name."""

    nodes: Mapping[str, Any]
    edges: tuple
    input: str
    output: str
    aliases: Mapping[str, str]


def _single(names: list, kind: str, where: str) -> str:
    if len(names) != 1:
        raise GraphError(f"{where}: needs exactly one {kind} node, found {len(names)} "
                         f"({', '.join(names) or 'none'}); the executor runs single-input, "
                         "single-output graphs")
    return names[0]


def flatten_nir(graph: "nir.NIRGraph") -> FlatGraph:
    """Inline nested subgraphs (recursively); see :class:`FlatGraph`."""
    nodes: dict = {}
    edges: list = []
    aliases: dict = {}

    def visit(g, prefix: str) -> tuple[str, str]:
        ports = {}  # subgraph name -> (its Input full name, its Output full name)
        for name, node in g.nodes.items():
            full = prefix + str(name)
            if isinstance(node, nir.NIRGraph):
                ports[name] = visit(node, full + "/")
                aliases[full] = ports[name][1]
            else:
                nodes[full] = node
        for src, dst in g.edges:
            src, dst = str(src), str(dst)
            for end in (src, dst):
                if end not in g.nodes:
                    raise GraphError(f"edge {prefix}{src} -> {prefix}{dst}: node "
                                     f"'{prefix}{end}' does not exist")
            a = ports[src][1] if src in ports else prefix + src
            b = ports[dst][0] if dst in ports else prefix + dst
            edges.append((a, b))
        where = prefix.rstrip("/") or "graph"
        ins = [prefix + str(n) for n, v in g.nodes.items() if isinstance(v, nir.Input)]
        outs = [prefix + str(n) for n, v in g.nodes.items() if isinstance(v, nir.Output)]
        return _single(ins, "Input", where), _single(outs, "Output", where)

    inp, out = visit(graph, "")
    return FlatGraph(nodes, tuple(edges), inp, out, aliases)


def _order(flat: FlatGraph) -> tuple[list[str], set]:
    """Execution order and the set of recurrent (one-step delayed) edges.

    A depth-first search from the Input, following edges in their order, marks every edge
    into a node still on the search path as recurrent; the rest is ordered topologically.
    """
    succ: dict[str, list[str]] = {n: [] for n in flat.nodes}
    for a, b in flat.edges:
        succ[a].append(b)
    state: dict[str, int] = {}  # 1 on path, 2 done
    back: set = set()
    roots = [flat.input] + [n for n in flat.nodes if n != flat.input]
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(succ[root]))]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                back.add((node, nxt))
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
    indeg = {n: 0 for n in flat.nodes}
    for a, b in flat.edges:
        if (a, b) not in back:
            indeg[b] += 1
    ready = [n for n in roots if indeg[n] == 0]
    order = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in succ[n]:
            if (n, m) not in back:
                indeg[m] -= 1
                if indeg[m] == 0:
                    ready.append(m)
    if len(order) != len(flat.nodes):  # cannot happen: back edges break every cycle
        raise GraphError("executor: could not order the graph")
    return order, back


# --------------------------------------------------------------------------------------------
# node operators


def _t(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(DTYPE)
    return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=DTYPE)


def _pair(x) -> tuple[int, int]:
    arr = np.atleast_1d(np.asarray(x)).astype(int).ravel()
    return (int(arr[0]), int(arr[0])) if arr.size == 1 else (int(arr[0]), int(arr[1]))


def _one(x) -> int:
    return int(np.ravel(np.asarray(x))[0])


def _conv_padding(p, n: int):
    if isinstance(p, (str, bytes)):
        p = p.decode() if isinstance(p, bytes) else p
        if p not in ("same", "valid"):
            raise GraphError(f"executor: conv padding {p!r} is not 'same', 'valid' or ints")
        return p
    return _pair(p) if n == 2 else _one(p)


class _Neuron:
    """State and step of IF, LI, LIF, CubaLI, CubaLIF and I (module docstring)."""

    def __init__(self, name: str, node, disc: Discretisation):
        kind = type(node).__name__
        md = {k: _plain(v) for k, v in dict(node.metadata or {}).items()}
        cmp = md.get("threshold_comparison", disc.threshold_comparison)
        reset = md.get("reset", disc.reset)
        if cmp not in COMPARISONS or reset not in RESETS:
            raise GraphError(f"{name}: metadata threshold_comparison ({cmp!r}) or reset "
                             f"({reset!r}) is not one of {COMPARISONS} / {RESETS}")
        self.kind, self.ge, self.subtract = kind, cmp == ">=", reset == "subtract"
        self.spiking = kind in ("IF", "LIF", "CubaLIF")
        self.dt = disc.dt
        self.r = _t(node.r)
        if kind in ("LI", "LIF"):
            self.k_mem = disc.factor(_t(node.tau))
        if kind in ("CubaLI", "CubaLIF"):
            self.k_mem = disc.factor(_t(node.tau_mem))
            self.k_syn = disc.factor(_t(node.tau_syn))
            self.w_in = _t(node.w_in)
        if kind in ("LI", "LIF", "CubaLI", "CubaLIF"):
            self.v_leak = _t(node.v_leak)
        if self.spiking:
            self.v_th = _t(node.v_threshold)
            v_reset = getattr(node, "v_reset", None)
            self.v_reset = torch.zeros_like(self.v_th) if v_reset is None else _t(v_reset)
        self.shape = tuple(self.r.shape)
        self.v = None
        self.i = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.v is None:
            self.v = torch.zeros_like(x)
            self.i = torch.zeros_like(x)
        if self.kind in ("I", "IF"):
            self.v = self.v + self.r * self.dt * x
        elif self.kind in ("LI", "LIF"):
            self.v = (1 - self.k_mem) * self.v + self.k_mem * (self.v_leak + self.r * x)
        else:
            self.i = (1 - self.k_syn) * self.i + self.k_syn * self.w_in * x
            self.v = (1 - self.k_mem) * self.v + self.k_mem * (self.v_leak + self.r * self.i)
        if not self.spiking:
            return self.v
        z = self.v >= self.v_th if self.ge else self.v > self.v_th
        if self.subtract:
            self.v = torch.where(z, self.v - self.v_th, self.v)
        else:
            self.v = torch.where(z, self.v_reset.expand_as(self.v), self.v)
        return z.to(DTYPE)


class _Delay:
    def __init__(self, name: str, node, disc: Discretisation):
        steps = np.asarray(node.delay, np.float64) / disc.dt
        rounded = np.rint(steps)
        if np.any(np.abs(steps - rounded) > 1e-6 * np.maximum(1.0, np.abs(steps))) \
                or np.any(rounded < 0):
            raise GraphError(f"{name}: delay / dt ({steps.ravel()[:4]}) is not a non-negative "
                             "whole number of steps; give a dt that divides the delays")
        self.steps = torch.as_tensor(rounded.astype(np.int64))
        self.history: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.history.append(x)
        t = len(self.history) - 1
        hist = torch.stack(self.history)  # (t+1, B, *shape)
        src = (t - self.steps).expand(x.shape)  # per element source step, (B, *shape)
        y = torch.gather(hist, 0, src.clamp(min=0).unsqueeze(0))[0]
        return torch.where(src >= 0, y, torch.zeros_like(y))


def _make_op(name: str, node, disc: Discretisation) -> Callable[[torch.Tensor], torch.Tensor]:
    kind = type(node).__name__
    if kind in ("Input", "Output"):
        return lambda x: x
    if kind in ("Affine", "Linear"):
        w = _t(node.weight)
        b = _t(node.bias) if kind == "Affine" else None

        def affine(x):
            y = torch.matmul(w, x.unsqueeze(-1)).squeeze(-1)
            return y if b is None else y + b
        return affine
    if kind == "Scale":
        s = _t(node.scale)
        return lambda x: s * x
    if kind in ("Conv1d", "Conv2d"):
        n = 1 if kind == "Conv1d" else 2
        w = _t(node.weight)
        b = None if node.bias is None else _t(node.bias)
        conv = F.conv1d if n == 1 else F.conv2d
        kw = dict(stride=_one(node.stride) if n == 1 else _pair(node.stride),
                  padding=_conv_padding(node.padding, n),
                  dilation=_one(node.dilation) if n == 1 else _pair(node.dilation),
                  groups=_one(node.groups))
        return lambda x: conv(x, w, b, **kw)
    if kind in ("SumPool2d", "AvgPool2d"):
        k, s, p = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
        div = 1.0 if kind == "SumPool2d" else float(k[0] * k[1])

        def pool(x):
            x = F.pad(x, (p[1], p[1], p[0], p[0]))
            return F.avg_pool2d(x, k, s, divisor_override=1) / div
        return pool
    if kind == "Flatten":
        start, end = int(node.start_dim), int(node.end_dim)
        start, end = (start + 1 if start >= 0 else start), (end + 1 if end >= 0 else end)
        return lambda x: torch.flatten(x, start, end)
    if kind == "Threshold":
        th = _t(node.threshold)
        return lambda x: (x > th).to(DTYPE)
    if kind in ("I", "IF", "LI", "LIF", "CubaLI", "CubaLIF"):
        return _Neuron(name, node, disc)
    if kind == "Delay":
        return _Delay(name, node, disc)
    raise GraphError(f"{name}: the executor does not run NIR node type '{kind}'; it runs the "
                     "standard NIR 1.0.8 nodes")


def _zeros_for(name: str, node) -> torch.Tensor:
    """The input of a node whose every input is recurrent, at t = 0 (nothing arrived yet)."""
    for field in ("r", "tau", "tau_mem", "scale", "threshold", "delay"):
        if getattr(node, field, None) is not None:
            return torch.zeros(np.shape(getattr(node, field)), dtype=DTYPE)
    raise GraphError(f"{name}: every input is recurrent and the node has no parameter "
                     "shape to start from")


def execute_nir(graph: "nir.NIRGraph", x, *, dt: float | None = None,
                integrator: str | None = None, threshold_comparison: str | None = None,
                reset: str | None = None) -> dict[str, torch.Tensor]:
    """Run ``graph`` on ``x`` of shape ``(B, T, *input_shape)``; see the module docstring.

    The discretisation comes from the keyword arguments, else from the graph metadata
    (:func:`discretisation_of`). Returns every node's output, ``{name: (B, T, *shape)}``
    float64 (spikes as 0/1), with nested nodes as ``"sub/inner"`` and a subgraph ``"sub"``
    as its Output. ``graph`` is not modified.
    """
    disc = discretisation_of(graph, dt=dt, integrator=integrator,
                             threshold_comparison=threshold_comparison, reset=reset)
    x = _t(x)
    if x.ndim < 2:
        raise SimulationError(f"executor: input shape {tuple(x.shape)} needs (B, T, *shape)")
    flat = flatten_nir(graph)
    declared = flat.nodes[flat.input].input_type.get("input")
    if declared is not None and tuple(int(v) for v in np.ravel(declared)) != tuple(x.shape[2:]):
        raise SimulationError(f"executor: input shape {tuple(x.shape)} does not end in the "
                              f"Input node's shape {tuple(np.ravel(declared))}; give "
                              "(B, T, *input_shape)")
    order, back = _order(flat)
    ops = {n: _make_op(n, flat.nodes[n], disc) for n in order}
    preds: dict[str, list[tuple[str, bool]]] = {n: [] for n in order}
    for a, b in flat.edges:
        preds[b].append((a, (a, b) in back))
    for n in order:
        if n != flat.input and not preds[n]:
            raise GraphError(f"{n}: node has no inputs; connect it or remove it")
    T = x.shape[1]
    records: dict[str, list[torch.Tensor]] = {n: [] for n in order}
    prev: dict[str, torch.Tensor] = {}
    for a, _ in back:  # spikes before t = 0 are zero: a linear source emits its response
        node = flat.nodes[a]
        if isinstance(node, (nir.Affine, nir.Linear)):
            zero = torch.zeros(x.shape[0], np.shape(node.weight)[-1], dtype=DTYPE)
            prev[a] = ops[a](zero)
    for t in range(T):
        out: dict[str, torch.Tensor] = {}
        for n in order:
            if n == flat.input:
                inp = x[:, t]
            else:
                terms = [prev[a] if rec else out[a] for a, rec in preds[n]
                         if not rec or a in prev]
                if terms:
                    inp = sum(terms[1:], terms[0])
                else:
                    zero = _zeros_for(n, flat.nodes[n])
                    inp = zero.expand(x.shape[0], *zero.shape)
            out[n] = ops[n](inp)
            records[n].append(out[n])
        prev = out
    result = {n: torch.stack(r, dim=1) for n, r in records.items()}
    for sub, inner in flat.aliases.items():
        result[sub] = result[inner]
    return result


def count_mismatches(a, b) -> int:
    """Number of elements where two spike arrays differ (torch or numpy, same shape)."""
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    if a.shape != b.shape:
        raise SimulationError(f"count_mismatches: shapes differ ({a.shape} vs {b.shape})")
    return int(np.count_nonzero((a != 0) != (b != 0)))
