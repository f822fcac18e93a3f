"""The report's two operation counts, each named (stdlib only).

* ``neurobench``: NeuroBench 2.3.0's workload metrics (Effective_ACs, Effective_MACs, Dense,
  ActivationSparsity, MembraneUpdates) on the float torch model over the samples the
  reference simulator ran (:mod:`nmc_deploy.models.op_counts`; written by ``simulate`` to
  ``op_counts_neurobench.json``), comparable with numbers other papers report;
* ``hardware_events``: the events the energy model prices, counted by the reference
  simulator on the compiled program: synaptic events (messages x nonzero fan-out; a layer
  reading a value k pays k events), attention products, graded payloads, spike messages.

The two differ by definition (docs/op-counts.md): NeuroBench counts each nonzero input
once and calls the ops MACs when the input is not binary, counts the head and not the
attention products; the hardware count follows what the chip does.
"""
from __future__ import annotations

from ..program.activity import Activity

__all__ = ["NEUROBENCH_FILE", "HARDWARE_EVENTS_LABEL", "op_counts_section", "op_count_rows"]

NEUROBENCH_FILE = "op_counts_neurobench.json"
NEUROBENCH_LABEL = "NeuroBench 2.3.0 definitions on the float model"
HARDWARE_EVENTS_LABEL = ("hardware events the energy model prices (reference simulator on the "
                         "compiled program)")
NEUROBENCH_KEYS = ("Effective_ACs", "Effective_MACs", "Dense", "ActivationSparsity",
                   "MembraneUpdates")


def _hardware_events(activity: Activity) -> dict:
    samples = activity.samples
    by_kind: dict[str, int] = {}
    for layer in activity.layers:
        by_kind[layer.kind] = by_kind.get(layer.kind, 0) + layer.synops
    relays = [p for p in activity.populations if p.graded]
    spiking = [p for p in activity.populations if not p.graded]
    return {
        "label": HARDWARE_EVENTS_LABEL,
        "synaptic_events": sum(by_kind.values()) / samples,
        "encoding_macs": by_kind.get("encoding", 0) / samples,
        "synapse_acs": by_kind.get("synapses", 0) / samples,
        "attention_products": by_kind.get("attention", 0) / samples,
        "token_selector_ops": by_kind.get("tokens", 0) / samples,
        "spike_messages": sum(p.spikes for p in spiking) / samples,
        "graded_payloads": sum(p.spikes for p in relays) / samples,
        "neuron_updates": sum(p.neuron_updates for p in activity.populations) / samples,
    }


def _neurobench(counts: dict | None, samples: int) -> dict:
    if counts is None:
        return {"label": NEUROBENCH_LABEL, "available": False,
                "reason": "no float torch model for this build (a NIR file or user inputs); "
                          "simulate a build exported from a checkpoint on its data set"}
    out = {"label": NEUROBENCH_LABEL, "available": True,
           **{k: counts.get(k) for k in NEUROBENCH_KEYS},
           "samples": counts.get("samples"), "batch_size": counts.get("batch_size")}
    if counts.get("samples") != samples:
        out["note"] = (f"counted over {counts.get('samples')} samples, the activity over "
                       f"{samples}")
    return out


def op_counts_section(activity: Activity, neurobench: dict | None) -> dict:
    """``report["op_counts"]``: ``{"neurobench": ..., "hardware_events": ...}``, per sample.

    ``neurobench``: the dict of :func:`nmc_deploy.models.op_counts.count_neurobench_ops`
    (or None: the section says it is not available and why).
    """
    return {"neurobench": _neurobench(neurobench, activity.samples),
            "hardware_events": _hardware_events(activity)}


def _n(x) -> str:
    return "–" if x is None else f"{float(x):,.0f}"


def op_count_rows(report: dict) -> list[tuple[str, str, str]]:
    """``(quantity, value, label)`` rows of ``report["op_counts"]`` for the table and the page
    (empty for a report without the section)."""
    oc = report.get("op_counts")
    if not oc:
        return []
    nb, hw = oc["neurobench"], oc["hardware_events"]
    if nb.get("available"):
        rows = [("NeuroBench ACs + MACs / sample",
                 f"{_n(nb['Effective_ACs'])} + {_n(nb['Effective_MACs'])}", nb["label"]),
                ("NeuroBench Dense / sample", _n(nb["Dense"]), nb["label"]),
                ("NeuroBench ActivationSparsity, MembraneUpdates / sample",
                 f"{nb['ActivationSparsity']:.4f}, {_n(nb['MembraneUpdates'])}", nb["label"])]
    else:
        rows = [("NeuroBench counts", "not available", f"{nb['label']}: {nb['reason']}")]
    return rows + [
        ("hardware synaptic events / sample", _n(hw["synaptic_events"]),
         f"{hw['label']}: encoding {_n(hw['encoding_macs'])} (MACs), synapses "
         f"{_n(hw['synapse_acs'])}, attention products {_n(hw['attention_products'])}, "
         f"token selectors {_n(hw['token_selector_ops'])}"),
        ("hardware messages / sample", _n(hw["spike_messages"] + hw["graded_payloads"]),
         f"{hw['label']}: spikes {_n(hw['spike_messages'])}, graded payloads "
         f"{_n(hw['graded_payloads'])}")]
