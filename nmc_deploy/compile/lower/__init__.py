"""Lower the graph IR to neuron populations and synapse groups (float; a pure pass).

Modules: :mod:`.walk` (``lower_graph``: topological walk and dispatch), :mod:`.context`
(the registry ``@lowers(NodeType)`` and the :class:`LoweringContext` every lowering
function builds on), :mod:`.linear`, :mod:`.neurons` and :mod:`.ops` (one small function
per node type), :mod:`.expr` (linear expressions) and :mod:`.structure` (low-rank pairs,
recurrent cycles, token gates).

Every node's output is carried as a linear expression over spike sources,
``sum_(src, lag) M_src @ s_src[t - lag] + c``: linear nodes (Conv, Affine, Scale, SumPool2d,
AvgPool2d, Flatten) compose into the matrices, fan-in adds expressions, a ``Delay`` of L steps
adds L to every lag (its constant becomes a lagged :data:`~.program.CONST` term: 0 for the
first L steps), and each neuron node turns its input expression into one population fed by
one synapse group per (source, lag). So by default a residual stream ``x + f(x)`` is never
a population of its own: each consumer receives synapses from every population of the
stream, with the same weights (deployment decision 3, "fan-in"). With ``residual="relay"``
(option b) the stream is summed once by a graded relay population (kind "relay", integer
payloads) that every consumer reads through one group, and each longer stream reuses the
previous relay (:meth:`~.context.LoweringContext.stream_terms`). BatchNorm is already folded
by the exporter.

Neurons (a typed :class:`~nmc_deploy.ir.conventions.Timing`: "dt", "integrator", "reset",
"threshold_comparison", by default from the graph metadata; node metadata "reset" and
"threshold_comparison" override the graph's). With ``k(tau) = dt/tau``
("forward-euler", default) or ``1 - exp(-dt/tau)`` ("exact")::

    LIF      alpha = 1 - k,  gain = r k,  leak = v_leak k                    kind "lif"
    IF       alpha = 1,      gain = r dt                                      kind "lif"
    CubaLIF  alpha_syn = 1 - k_syn, alpha = 1 - k_mem,
             gain = w_in k_syn r k_mem (current in voltage units), leak = v_leak k_mem
    LI, CubaLI   as LIF, CubaLIF without spikes                               kind "li"
    Threshold    alpha = 0, gain = 1 (stateless, strict ``>``)                kind "threshold"

A population with a current gets its input's constant term through a :data:`CONST` group
(a constant input current is not a constant voltage bias). ``v_reset`` must be 0 (reset
"zero") or the reset "subtract" (``v -= v_threshold``). LI/CubaLI voltages may only be read
by the graph Output (the host readout reports them per step).

Recurrence (NIR, nirtorch): an edge that closes a cycle (:func:`~nmc_deploy.ir.graph.back_edges`)
carries a one-step delay. Its value enters the expression as a placeholder, replaced after
all nodes are lowered by the source's expression with every lag + 1 (its constant a CONST
term of lag 1). A cycle may contain exactly one neuron population plus linear nodes and
Delays (snnTorch's RLeaky/RSynaptic: ``lif -> w_rec -> lif``): the population's own spikes
come back through a group with lag 1, which Lava's Sparse delivers exactly one step later.
A cycle through two or more populations cannot keep the t-1 semantics in the pipelined
schedule (each population is one step deeper than its source) and is refused.

Low-rank factor pairs (DSP: a linear node with metadata role "low-rank factor" feeding
another one, exported as ``{name}.down`` -> ``{name}``) deploy in one of two forms
(``low_rank``):

* ``"fused"`` (default): the chain composes like any other, so the consumer gets the
  re-multiplied matrix ``gain U V`` (dense; no synapse saving).
* ``"relay"``: the down node's output becomes a population of kind "relay" fed by
  ``V @ M_src`` from every source ``src`` of its input expression (a residual stream gives one
  group per stream population); the up node then composes onto the relay, so the consumer
  gets ``gain U`` from the relay: ``r (n_in + n_out)`` synapses per token instead of
  ``n_in n_out``. A relay reads the input, neuron populations and token selectors (whose
  gated stream is a graded source like the input); it is never gated itself: it has no bias,
  so the neurons of a dropped token get zero payloads from zero inputs.
"""
from __future__ import annotations

from .context import LoweringContext, lowered_node_types, lowering_of, lowers
from .expr import LinearExpr, delay_steps
from .structure import LOW_RANK_ROLE, low_rank_down_nodes
from .walk import graph_timing, lower_graph

__all__ = ["lower_graph", "graph_timing", "low_rank_down_nodes", "LOW_RANK_ROLE", "delay_steps",
           "lowers", "lowering_of", "lowered_node_types", "LoweringContext", "LinearExpr"]
