"""Discretisation conventions: how a continuous-time NIR graph becomes a discrete-time model.

NIR graphs are declarative ODEs: they carry no time step, integrator, reset mode or threshold
comparison (docs: ../shared/docs/nir.md §1.2, §5.2), and every tool that writes NIR has its own
implicit answer. This module names those answers and decides which one applies to a graph.

Public API
----------
``Timing``
    the resolved discretisation (frozen; the equations are in its docstring).
``CONVENTIONS``
    ``{name: Convention}`` presets for snntorch, sinabs, norse, rockpool, spikingjelly and
    nmc-deploy (our own export).
``resolve_timing(graph_metadata, *, dt=None, convention=None, ...) -> Timing``
    explicit arguments win over a preset, a preset wins over the graph metadata keys
    ``dt``, ``integrator``, ``reset``, ``threshold_comparison``, and NIR's own semantics fill
    the rest (forward Euler, reset to ``v_reset``, ``>``). No dt anywhere is an error.
``apply_timing(graph, timing) -> Graph``
    a new graph whose metadata carries the resolved values (the lowering reads them there).
``assumed_reset(timing) -> str | None``
    the one line compile prints when the reset rule or the spike rule came from a preset,
    not the file; it states the rules in force.
``SPIKE_FNS``, ``V_MIN_RULES``
    the spike rules ("single": one spike per step; "multi": floor(v/theta) spikes per step,
    up to ``max_spikes``) and the symbolic clamps of v (``min_v_mem``).
``rockpool_dt(graph) -> float``
    the dt that rockpool hid in ``r`` (see ``CONVENTIONS["rockpool"]``).

Pure Python: no nir, torch or numpy import; nothing here mutates its input.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import GraphError

__all__ = ["Timing", "Convention", "CONVENTIONS", "INTEGRATORS", "RESETS",
           "THRESHOLD_COMPARISONS", "TIMING_KEYS", "NIR_DEFAULTS", "resolve_timing",
           "apply_timing", "rockpool_dt", "assumed_reset", "SPIKE_FNS", "V_MIN_RULES",
           "v_min_of", "spike_rule_text", "normalize_spike_fn", "set_by_argument"]

INTEGRATORS = ("forward-euler", "exact", "rockpool")
RESETS = ("zero", "subtract", "zero-delayed", "subtract-delayed")
# snnTorch's reset_delay=True (its default): the reset of a spike in step k-1 is applied in
# step k (the "-delayed" resets; lowered exactly where Loihi can express it, see Timing).
THRESHOLD_COMPARISONS = (">", ">=")
TIMING_KEYS = ("dt", "integrator", "reset", "threshold_comparison")
SPIKE_FNS = ("single", "multi")
# min_v_mem (a clamp of v from below after the reset): a number, None (no clamp) or one of
# these rules: "-theta" (-v_threshold of each neuron), "-theta-if" (-v_threshold on IF
# nodes only, no clamp elsewhere: what sinabs' from_nir builds, IAFSqueeze(min_v_mem=-theta))
V_MIN_RULES = ("none", "-theta", "-theta-if")

# Spellings other tools and older files use; mapped to ours.
_ALIASES = {
    "integrator": {"euler": "forward-euler", "forward_euler": "forward-euler",
                   "forward euler": "forward-euler", "exponential": "exact",
                   "exact-exponential": "exact", "zoh": "exact", "zero-order-hold": "exact"},
    "reset": {"to-zero": "zero", "reset-to-zero": "zero", "value": "zero", "to-value": "zero",
              "hard": "zero", "subtraction": "subtract", "subtractive": "subtract",
              "soft": "subtract", "subtract_delayed": "subtract-delayed",
              "zero_delayed": "zero-delayed"},
    "threshold_comparison": {"gt": ">", "ge": ">=", "=>": ">="},
}
# NIR's own semantics where nothing else says: spike on v > theta, then v <- v_reset (the one
# table of timing defaults: resolve_timing and the lowering of a graph without Timing use it).
NIR_DEFAULTS = {"integrator": "forward-euler", "reset": "zero", "threshold_comparison": ">"}


@dataclass(frozen=True)
class Timing:
    r"""How every neuron node of a graph is stepped; all factors computed in float64.

    Per step k, with x_k the summed input of the step and theta = v_threshold::

        forward-euler:  alpha = 1 - dt/tau        gain = r dt/tau        leak = v_leak dt/tau
        exact:          alpha = exp(-dt/tau)      gain = r (1 - alpha)   leak = v_leak (1 - alpha)
                        (the ODE solved exactly with the input held over the step)
        rockpool:       exact decays and the inverse of rockpool 3.1's exporter, which writes
                        r = tau exp(-dt/tau)/dt for its own update (LIFTorch: I_k = a_syn
                        (I_{k-1} + x_k), v_k = a_mem v_{k-1} + I_k; ExpSynTorch: v_k = a
                        (v_{k-1} + x_k)): CubaLIF/LIF gain = w_in a_syn r dt/(tau_mem a_mem),
                        LI gain = r dt/tau (both exactly rockpool's for its r); no leak

        I, IF:          v_k = v_{k-1} + r dt x_k                      (no tau: both integrators)
        LI, LIF:        v_k = alpha v_{k-1} + gain x_k + leak
        CubaLI(F):      I_k = alpha_syn I_{k-1} + gain_syn x_k         (tau_syn, w_in for tau, r;
                                                                        no leak)
                        v_k = alpha_mem v_{k-1} + gain_mem I_k + leak  (reads the updated I_k)

        spike:          z_k = [v_k > theta]   (threshold_comparison ">", NIR's rule)
                        z_k = [v_k >= theta]  (">=")
        reset:          v_k <- v_reset where z_k = 1          ("zero", NIR's rule; same step)
                        v_k <- v_k - theta where z_k = 1      ("subtract"; same step)
        delayed reset (snnTorch reset_delay=True; v_k is then never reset in its own step):
          "subtract-delayed"  v_k = alpha v_{k-1} + gain x_k + leak - theta z_{k-1}
                              (lowered exactly: same-step "subtract" plus a one-step
                              self-connection of -(1 - alpha) theta; for CubaLIF a lag-2
                              term -alpha_syn times that cancels its decay in the current)
          "zero-delayed"      LIF without recurrence: v_k = alpha (1 - z_{k-1}) v_{k-1} + ...,
                              which is "zero" exactly; snnTorch's RLeaky, Synaptic and
                              RSynaptic zero the whole new v (v_k = 0 after a spike: a
                              one-step refractory period), which is refused at compile.

        multi spikes (``spike_fn`` "multi", sinabs' MultiSpike, rockpool's LIFTorch): after
        the input and the decay, k_k = min(floor(v_k/theta), max_spikes) where v_k >=
        theta (threshold ">="; with ">": k = ceil(v/theta) - 1 where v > theta), a graded
        count; the reset
        subtracts k theta ("subtract") or zeroes v where k > 0 ("zero"). ``max_spikes``
        None: no limit. Then the clamp ``v_k <- max(v_k, min_v_mem)`` (sinabs'
        ``min_v_mem``; any spike rule).

    ``dt`` is in seconds (or in steps for tools whose tau is in steps: sinabs, dt = 1).
    ``tau_scale`` multiplies every tau of the file before use (1; norse 1.1.0 writes
    ``dt/tau_mem_inv``, i.e. dt times the time constant, so its preset has 1/dt).
    ``source`` says where each value came from (argument, convention, graph metadata, NIR
    default).
    """

    dt: float  # seconds per step
    integrator: str  # one of INTEGRATORS
    reset: str  # one of RESETS
    threshold_comparison: str  # ">" or ">="
    source: str  # provenance of the four values, for reports and error messages
    tau_scale: float = 1.0  # multiplies every tau of the file (norse 1.1.0: 1/dt)
    spike_fn: str = "single"  # one of SPIKE_FNS
    max_spikes: int | None = 1  # spikes per step at most ("single": 1; None: no limit)
    min_v_mem: float | str | None = None  # a number, None or a V_MIN_RULES rule
    spike_source: str = "NIR default"  # provenance of spike_fn, min_v_mem

    def __post_init__(self):
        dt = float(self.dt)
        if not (math.isfinite(dt) and dt > 0):
            raise GraphError(f"timing: dt ({self.dt}) is not a positive number of seconds; "
                             "give --dt SECONDS")
        object.__setattr__(self, "dt", dt)
        scale = float(self.tau_scale)
        if not (math.isfinite(scale) and scale > 0):
            raise GraphError(f"timing: tau_scale ({self.tau_scale}) is not a positive number")
        object.__setattr__(self, "tau_scale", scale)
        for key, allowed in (("integrator", INTEGRATORS), ("reset", RESETS),
                             ("threshold_comparison", THRESHOLD_COMPARISONS),
                             ("spike_fn", SPIKE_FNS)):
            if getattr(self, key) not in allowed:
                raise GraphError(f"timing: {key} ({getattr(self, key)!r}) is not one of "
                                 f"{', '.join(allowed)}")
        if self.spike_fn == "single":
            object.__setattr__(self, "max_spikes", 1)
        elif self.max_spikes is not None and int(self.max_spikes) < 2:
            raise GraphError(f"timing: max_spikes ({self.max_spikes}) of spike_fn 'multi' "
                             "is below 2; use spike_fn 'single'")
        object.__setattr__(self, "min_v_mem", _v_min_spec(self.min_v_mem))

    def as_metadata(self) -> dict[str, Any]:
        """The graph metadata keys the lowering reads."""
        md = {"dt": self.dt, "integrator": self.integrator, "reset": self.reset,
              "threshold_comparison": self.threshold_comparison}
        if self.tau_scale != 1.0:
            md["tau_scale"] = self.tau_scale
        if self.spike_fn != "single":
            md["spike_fn"] = self.spike_fn
            md["max_spikes"] = self.max_spikes
        if self.min_v_mem is not None:
            md["min_v_mem"] = self.min_v_mem
        return md


def _v_min_spec(value):
    """``min_v_mem`` as None, a float or a rule of :data:`V_MIN_RULES` (one-line error)."""
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    if isinstance(text, str):
        text = text.strip().lower()
        if text in ("none", ""):
            return None
        if text in V_MIN_RULES:
            return text
    try:
        number = float(text)
    except (TypeError, ValueError):
        raise GraphError(f"timing: min_v_mem ({value!r}) is not a number or one of "
                         f"{', '.join(V_MIN_RULES)}") from None
    if not math.isfinite(number) or number > 0:
        raise GraphError(f"timing: min_v_mem ({value!r}) must be a finite number <= 0")
    return number


def v_min_of(spec, v_threshold, is_if: bool):
    """The clamp of one node: None, a float or a per-neuron array (``-v_threshold``)."""
    if spec is None or spec == "none" or (spec == "-theta-if" and not is_if):
        return None
    if spec in ("-theta", "-theta-if"):
        return -v_threshold
    return float(spec)


@dataclass(frozen=True)
class Convention:
    """The implicit discretisation of one tool's NIR files (nir.md §5.2).

    ``dt`` is None when the tool does not fix one (rockpool hides it in ``r``).
    ``mapping`` states how the tool writes its discrete model as NIR parameters and where
    the preset is only an approximation of the tool's own update.
    """

    name: str
    dt: float | None
    integrator: str
    reset: str
    threshold_comparison: str
    mapping: str
    tau_scale: float = 1.0  # multiplies the file's tau (Timing.tau_scale)
    # what the tool computes when it builds the network from the file (its NIR import)
    spike_fn: str = "single"
    max_spikes: int | None = 1  # for spike_fn "multi" (None: no limit)
    min_v_mem: float | str | None = None


CONVENTIONS: dict[str, Convention] = {c.name: c for c in (
    Convention(
        "snntorch", 1e-4, "forward-euler", "subtract-delayed", ">",
        "snnTorch Leaky v = beta v + x - reset, exported as tau = dt/(1-beta), r = tau/dt, "
        "v_leak = 0 (dt = 1e-4 hard-coded); Synaptic adds tau_syn = dt/(1-alpha), "
        "w_in = tau_syn/dt. The file does not say the reset: the preset assumes snnTorch's "
        "defaults (reset_mechanism='subtract', reset_delay=True), i.e. 'subtract-delayed', "
        "v_k = beta v_{k-1} + x_k - theta z_{k-1} (lowered exactly). --reset zero is "
        "reset_mechanism='zero' with reset_delay=False (and Leaky with either delay); "
        "--reset zero-delayed is reset_delay=True (RLeaky/Synaptic/RSynaptic: refused, a "
        "one-step refractory period). --reset subtract is reset_delay=False only while v "
        "stays below 2 theta (snnTorch then subtracts once more in the spike test)."),
    Convention(
        "sinabs", 1.0, "exact", "subtract", ">=",
        "sinabs writes tau in time steps (dt = 1), r = 1, v_leak = 0; LIF/ExpLeak decay by "
        "alpha = exp(-1/tau) (exact) and with norm_input=True (default) add (1-alpha) x, "
        "which is gain = r (1 - alpha); IAF adds x (r dt = 1). Spikes on v >= theta "
        "(SingleSpike), reset by subtracting the threshold (MembraneSubtract). The spike "
        "rule is what sinabs' from_nir builds (sinabs/nir.py, _import_sinabs_module): the "
        "layers' default spike_fn MultiSpike (sinabs/activation/spike_generation.py: "
        "(v > 0) trunc(v/theta) spikes, i.e. floor(v/theta) where v >= theta, no limit), "
        "and min_v_mem = -theta on IF (IAFSqueeze), none on LIF (LIFSqueeze); "
        "--spikes single and --v-min none for a model trained with SingleSpike and no "
        "clamp.", spike_fn="multi", max_spikes=None, min_v_mem="-theta-if"),
    Convention(
        "norse", 1e-3, "forward-euler", "zero", ">",
        "norse v += dt tau_mem_inv (v_leak - v + i), dt = 1e-3, tau in seconds (norse main). "
        "norse 1.1.0's exporter writes tau = dt/tau_mem_inv, i.e. tau times dt (norse #411): "
        "such files need tau divided by dt before use; the reader cannot tell and does not "
        "guess. Spikes on v > theta, reset to v_reset."),
    Convention(
        "norse-1.1", 1e-3, "forward-euler", "zero", ">",
        "a file written by norse 1.1.0's to_nir, which writes tau = dt/tau_mem_inv (dt times "
        "the time constant; norse #411): tau is divided by dt (tau_scale 1/dt), then as "
        "'norse'. With 'norse' such a file has dt/tau > 1 and is refused.", tau_scale=1e3),
    Convention(
        "rockpool", None, "rockpool", "subtract", ">=",
        "rockpool LIFTorch decays exactly (alpha = exp(-dt/tau)), spikes on v >= theta "
        "with floor(v/theta) spikes per step up to max_spikes_per_dt (2**16, the default "
        "its NIR import keeps; lif_torch.py StepPWL) and subtracts that many thresholds "
        "(spike_fn 'multi', lowered as a graded payload). It exports tau in seconds "
        "and hides its module dt in r = tau_mem exp(-dt/tau_mem)/dt; the exact inverse is "
        "dt = tau_mem W(1/r) (Lambert W: dt/tau e^(dt/tau) = 1/r), which rockpool_dt(graph) "
        "solves; rockpool's own importer uses dt ~ min(tau_mem/(1+r)). Its current takes the "
        "input before decaying and its voltage adds the current with gain 1: the integrator "
        "'rockpool' inverts its r exactly (NIR's exact r(1-alpha) would scale inputs).",
        spike_fn="multi", max_spikes=2 ** 16),
    Convention(
        "spikingjelly", 1e-4, "forward-euler", "zero", ">=",
        "spikingjelly LIFNode h = v + (x - (v - v_reset))/tau_sj (decay_input=True) exported "
        "as tau = tau_sj dt, r = 1, v_leak = v_reset, dt = 1e-4; spikes on h >= theta, hard "
        "reset to v_reset."),
    Convention(
        "nmc-deploy", 1e-4, "forward-euler", "zero", ">=",
        "nmc-deploy's export (spikingjelly's mapping, tau and r in float64 so that "
        "alpha = 1 - dt/tau and gain = r dt/tau recover the discrete model bit-exactly); the "
        "file's metadata carries the same values."),
)}


def _normalize(key: str, value) -> str:
    text = value.decode() if isinstance(value, bytes) else str(value)
    text = text.strip()
    return _ALIASES.get(key, {}).get(text.lower(), text)


def _metadata_of(graph_or_metadata) -> tuple[Mapping[str, Any], Any]:
    if hasattr(graph_or_metadata, "nodes") and hasattr(graph_or_metadata, "metadata"):
        return dict(graph_or_metadata.metadata or {}), graph_or_metadata
    return dict(graph_or_metadata or {}), None


def resolve_timing(graph_metadata, *, dt: float | None = None, convention: str | None = None,
                   integrator: str | None = None, reset: str | None = None,
                   threshold_comparison: str | None = None, spikes: str | None = None,
                   v_min: float | str | None = None) -> Timing:
    """Decide the discretisation of a graph; pure (nothing is modified).

    Parameters
    ----------
    graph_metadata
        The graph's metadata mapping, or the graph itself (then, for the rockpool
        convention without dt, dt is recovered from the neurons' r with :func:`rockpool_dt`).
    dt, integrator, reset, threshold_comparison
        Explicit values (CLI options); each wins over the preset and the metadata.
    convention
        A key of :data:`CONVENTIONS`; its values win over the graph metadata.
    spikes, v_min
        The spike rule ("single", "multi") and the clamp ``min_v_mem`` (a number, "none",
        "-theta", "-theta-if"); each wins over the graph metadata ("spike_fn",
        "max_spikes", "min_v_mem": a file or a user that declares them), which wins over
        the preset (what the tool assumes when the file does not say), then "single" and
        no clamp (NIR).

    Raises :class:`GraphError` (one line) for an unknown convention, an invalid value, or no
    dt anywhere.
    """
    metadata, graph = _metadata_of(graph_metadata)
    preset = None
    if convention is not None:
        name = str(convention).strip().lower()
        if name not in CONVENTIONS:
            raise GraphError(f"graph: unknown convention ({convention!r}); use one of "
                             f"{', '.join(CONVENTIONS)}")
        preset = CONVENTIONS[name]
    explicit = {"dt": dt, "integrator": integrator, "reset": reset,
                "threshold_comparison": threshold_comparison}
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key in TIMING_KEYS:
        if explicit[key] is not None:
            values[key], origin[key] = explicit[key], "argument"
        elif preset is not None and getattr(preset, key) is not None:
            values[key], origin[key] = getattr(preset, key), f"convention '{preset.name}'"
        elif metadata.get(key) is not None:
            values[key], origin[key] = metadata[key], "graph metadata"
        elif key != "dt":
            values[key], origin[key] = NIR_DEFAULTS[key], "NIR default"
    if "dt" not in values:
        if preset is not None and preset.name == "rockpool" and graph is not None:
            values["dt"], origin["dt"] = rockpool_dt(graph), "convention 'rockpool' (from r)"
        elif preset is not None and preset.name == "rockpool":
            raise GraphError("graph: convention 'rockpool' hides dt in r (r = tau_mem "
                             "exp(-dt/tau_mem)/dt); give --dt SECONDS, the rockpool module's dt")
        else:
            with_dt = ", ".join(n for n, c in CONVENTIONS.items() if c.dt is not None)
            raise GraphError(f"graph: no dt in the file; give --dt SECONDS or --convention "
                             f"NAME ({with_dt})")
    try:
        dt_value = float(values["dt"])
    except (TypeError, ValueError):
        raise GraphError(f"graph: dt ({values['dt']!r}, from {origin['dt']}) is not a number "
                         "of seconds; give --dt SECONDS") from None
    for key in ("integrator", "reset", "threshold_comparison"):
        values[key] = _normalize(key, values[key])
    by_origin: dict[str, list[str]] = {}
    for key in TIMING_KEYS:
        by_origin.setdefault(origin[key], []).append(key)
    source = "; ".join(f"{', '.join(keys)}: {where}" for where, keys in by_origin.items())
    try:
        if preset is not None and preset.name == "norse-1.1":
            scale = 1.0 / dt_value  # its files hold dt x the time constant, whatever dt is
        elif preset is not None:
            scale = preset.tau_scale  # an explicit convention wins over the file's value
        else:
            scale = float(metadata.get("tau_scale", 1.0))
        rule = _spike_rule(metadata, preset, spikes, v_min)
        return Timing(dt=dt_value, integrator=values["integrator"], reset=values["reset"],
                      threshold_comparison=values["threshold_comparison"], source=source,
                      tau_scale=scale, **rule)
    except GraphError as exc:
        raise GraphError(f"graph: {str(exc).removeprefix('timing: ')} ({source})") from None


def _spike_rule(metadata: Mapping[str, Any], preset, spikes, v_min) -> dict:
    """``spike_fn``, ``max_spikes``, ``min_v_mem`` and their provenance: argument, then
    graph metadata, then the preset, then NIR's one spike and no clamp."""
    def pick(arg, key, default):
        if arg is not None:
            return arg, "argument"
        if metadata.get(key) is not None:
            return metadata[key], "graph metadata"
        if preset is not None:
            return getattr(preset, key), f"convention '{preset.name}'"
        return default, "NIR default"

    fn, fn_from = pick(spikes, "spike_fn", "single")
    fn = normalize_spike_fn(fn)
    if metadata.get("max_spikes") is not None and not fn_from.startswith("convention"):
        max_spikes = int(metadata["max_spikes"])
    elif preset is not None and preset.spike_fn == "multi":
        max_spikes = preset.max_spikes
    else:
        max_spikes = None
    clamp, clamp_from = pick(v_min, "min_v_mem", None)
    where = f"spike_fn, min_v_mem: {fn_from}" if fn_from == clamp_from else \
        f"spike_fn: {fn_from}; min_v_mem: {clamp_from}"
    return {"spike_fn": fn, "max_spikes": max_spikes if fn == "multi" else 1,
            "min_v_mem": clamp, "spike_source": where}


def normalize_spike_fn(value) -> str:
    """A spike rule as files and users write it ("multi", "MultiSpike", b"single", ...)
    as one of :data:`SPIKE_FNS`' spellings ("single", "multi"; others pass through, for
    :class:`Timing` to refuse)."""
    fn = str(value.decode() if isinstance(value, bytes) else value).strip().lower()
    return {"multispike": "multi", "singlespike": "single"}.get(fn, fn)


def set_by_argument(timing: Timing, key: str) -> bool:
    """Whether ``key`` ("spike_fn" or "min_v_mem") of ``timing`` was given as an argument
    (``--spikes``, ``--v-min``), which then wins over a node's own metadata too."""
    for part in timing.spike_source.split("; "):
        keys, _, where = part.partition(": ")
        if key in keys.split(", ") and where == "argument":
            return True
    return False


def apply_timing(graph, timing: Timing):
    """Return a graph whose metadata carries ``timing`` (dt, integrator, reset,
    threshold_comparison, timing_source, the spike rule and, when an argument set it,
    spike_source); the input graph is not modified, and it is
    returned itself when it already carries exactly these values.

    Node-level metadata (e.g. a node's own ``threshold_comparison``) is left as it is.
    """
    new = {**timing.as_metadata(), "timing_source": timing.source}
    if "argument" in timing.spike_source:  # --spikes / --v-min also win over node metadata
        new["spike_source"] = timing.spike_source
    old = dict(graph.metadata)
    for key, plain in (("spike_fn", "single"), ("min_v_mem", "none")):
        if key in old and key not in new:  # the file's declaration is overridden
            new[key] = plain
    if "max_spikes" in old and "max_spikes" not in new:
        new["max_spikes"] = 1
    if timing.tau_scale == 1.0 and "tau_scale" in old:
        old.pop("tau_scale")
        return dataclasses.replace(graph, metadata={**old, **new})
    if all(old.get(k) == v for k, v in new.items()):
        return graph
    return dataclasses.replace(graph, metadata={**old, **new})


def spike_rule_text(timing: Timing) -> str:
    """The spike rule and clamp in force, in words (for the assumption line)."""
    if timing.spike_fn == "multi":
        cap = "no limit" if timing.max_spikes is None else f"at most {timing.max_spikes}"
        text = f"spikes 'multi' (floor(v/theta) per step, {cap}; a graded payload)"
    else:
        text = "spikes 'single' (one per step)"
    clamp = {None: "no min_v_mem", "-theta": "min_v_mem -theta",
             "-theta-if": "min_v_mem -theta on IF nodes, none on LIF"}.get(
        timing.min_v_mem, f"min_v_mem {timing.min_v_mem}")
    return f"{text}, {clamp}"


def assumed_reset(timing: Timing) -> str | None:
    """One line saying which reset rule and spike rule compile assumed, when either came
    from a convention preset (neither the file nor an argument said it); None otherwise.
    The line states the rules in force."""
    marker = "convention '"
    where = next((part for part in timing.source.split("; ") if "reset" in
                  part.split(":")[0].split(", ")), "")
    # the spike rule is said where a preset chose one other than NIR's (sinabs, rockpool)
    spikes_assumed = marker in timing.spike_source and (
        timing.spike_fn != "single" or timing.min_v_mem is not None)
    if marker not in where and not spikes_assumed:
        return None
    source = where if marker in where else timing.spike_source
    name = source.split(marker, 1)[1].split("'", 1)[0]
    parts, hints = [], []
    if marker in where:
        parts.append(f"reset '{timing.reset}'")
        hints.append("--reset " + "|".join(r for r in RESETS if r != timing.reset and (
            name == "snntorch" or not r.endswith("-delayed"))))  # delayed: snnTorch's
    if spikes_assumed:
        parts.append(spike_rule_text(timing))
        hints.append("--spikes " + ("single" if timing.spike_fn == "multi" else "multi"))
        if name == "sinabs":
            hints.append("--v-min none|-theta|VALUE")
    return (f"assumed: {', '.join(parts)} ({name}'s default; the file does not say); give "
            f"{', '.join(hints)} if the model was built otherwise")


def _solve_u(r: float) -> float:
    """u > 0 with u e^u = 1/r (so dt = tau u for rockpool's r = tau e^(-dt/tau)/dt)."""
    log_r = math.log(r)
    u = 1.0 / (1.0 + r)
    for _ in range(100):
        g = math.log(u) + u + log_r
        step = g / (1.0 / u + 1.0)
        u_next = u - step
        if u_next <= 0:
            u_next = u / 2
        if abs(u_next - u) <= 1e-15 * u:
            return u_next
        u = u_next
    return u


def rockpool_dt(graph) -> float:
    """The module dt that rockpool wrote into ``r = tau exp(-dt/tau)/dt`` of its neurons.

    Looks at every node with ``tau_mem``/``tau`` and ``r`` (CubaLIF, CubaLI, LIF, LI), solves
    ``dt = tau W(1/r)`` per neuron and requires one value (relative spread below 1e-6).
    Raises :class:`GraphError` when no neuron carries it or the values disagree.
    """
    found: list[tuple[str, float]] = []
    for name, node in graph.nodes.items():
        tau = getattr(node, "tau_mem", None)
        if tau is None:
            tau = getattr(node, "tau", None)
        r = getattr(node, "r", None)
        if tau is None or r is None:
            continue
        taus = tau.ravel().tolist() if hasattr(tau, "ravel") else [float(tau)]
        rs = r.ravel().tolist() if hasattr(r, "ravel") else [float(r)]
        for t, rv in zip(taus, rs):
            if not (t > 0 and rv > 0):
                raise GraphError(f"{name}: tau ({t}) and r ({rv}) must be positive to recover "
                                 "rockpool's dt; give --dt SECONDS")
            found.append((name, t * _solve_u(rv)))
    if not found:
        raise GraphError("graph: no neuron with tau and r to recover rockpool's dt from; give "
                         "--dt SECONDS")
    values = [v for _, v in found]
    lo, hi = min(values), max(values)
    if hi - lo > 1e-6 * hi:
        a = next(n for n, v in found if v == lo)
        b = next(n for n, v in found if v == hi)
        raise GraphError(f"graph: rockpool dt from r differs between neurons ({lo:.6g} s in "
                         f"{a}, {hi:.6g} s in {b}); give --dt SECONDS")
    return float(sorted(values)[len(values) // 2])
