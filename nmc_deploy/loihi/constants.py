"""Constants of Loihi's arithmetic as Lava 0.10.0's bit-accurate ProcessModels implement it.

The one home of every Lava constant: the compiler (quantize), both simulators (reference
kernels, Lava processes) and the netx writer read them from here.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LavaLifConstants", "LAVA_LIF", "MAX_UV", "SYNAPTIC_ACCUMULATOR_BITS"]


@dataclass(frozen=True)
class LavaLifConstants:
    """Constants of Lava's PyLifModelBitAcc (lava/proc/lif/models.py)."""

    decay_unity: int = 4096  # decays are /4096 (12-bit)
    act_shift: int = 6  # a_in << 6 into u
    vth_shift: int = 6  # threshold mantissa << 6
    uv_bits: int = 24  # u wraps, v saturates at 24 bits
    max_du: int = 4095
    max_dv: int = 4095
    max_vth: int = 2 ** 17 - 1
    bias_mant_min: int = -4096
    bias_mant_max: int = 4095
    bias_exp_max: int = 7
    weight_exp_min: int = -8  # Loihi synapse weight exponent range (nengo-loihi)
    weight_exp_max: int = 7


LAVA_LIF = LavaLifConstants()

MAX_UV = 2 ** (LAVA_LIF.uv_bits - 1)  # u, v are 24-bit signed in PyLifModelBitAcc
# Lava's Sparse/DelaySparse bit-accurate models accumulate W @ s in int32 (a_buff), so a
# graded group's worst-case sum must stay below 2**31 for Lava to equal the int64 reference.
SYNAPTIC_ACCUMULATOR_BITS = 32
