"""Reference vs Lava: mismatch counts of two runs on the same samples."""
from __future__ import annotations

import numpy as np

__all__ = ["compare_runs"]


def compare_runs(ref, lav) -> dict:
    """Spike (relays: payload) mismatches per population, spikes compared, prediction and
    token-choice mismatches of two :class:`~nmc_deploy.simulate.reference.SimulationResult`."""
    out_ref, out_lav = ref.outputs(), lav.outputs()  # spikes; payloads for relays
    per_pop = {k: int(np.count_nonzero(out_ref[k] != out_lav[k])) for k in out_ref}
    result = {"spike_mismatches_per_population": per_pop,
              "spike_mismatches_reference_vs_lava": int(sum(per_pop.values())),
              "spikes_compared": int(sum(int(np.count_nonzero(s)) for s in out_ref.values())),
              "prediction_mismatches": int(np.sum(ref.predictions != lav.predictions))}
    if ref.token_masks:
        result["token_choice_mismatches"] = int(sum(
            np.count_nonzero(ref.token_masks[k] != lav.token_masks[k]) for k in ref.token_masks))
    return result
