"""Constants of Loihi's arithmetic as Lava 0.10.0's bit-accurate ProcessModels implement it.

The one home of every Lava/Loihi constant: the compiler (quantize), both simulators (the
reference kernels in this package, the Lava processes) and the netx writer read them from
here. Sources: ``lava/proc/lif/models.py`` (``AbstractPyLifModelFixed``,
``PyLifModelBitAcc``), ``lava/utils/weightutils.py`` (weight grid and sign modes) and
``lava/proc/sparse/models.py`` (int32 accumulation).

The fixed-point LIF step these constants parametrise (per neuron, integer)::

    u[t] = wrap24(sign(x) (|x| >> decay_shift) + (a_in << act_shift)),
           x = u[t-1] (decay_unity - (du + ds_offset))
    v[t] = sat24(sign(y) (|y| >> decay_shift) + u[t] + bias_mant << bias_exp),
           y = v[t-1] (decay_unity - (dv + dm_offset))
    spike where v[t] > vth << vth_shift
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LavaLifConstants", "LAVA_LIF", "LavaSynapseConstants", "LAVA_SYNAPSE", "MAX_UV",
           "MAX_V", "U_WRAP", "DU_NO_CURRENT", "SPIKE_BITS", "GRADED_BITS",
           "SYNAPTIC_ACCUMULATOR_BITS",
           "SIGN_EXCITATORY", "SIGN_INHIBITORY", "SIGN_MIXED"]


@dataclass(frozen=True)
class LavaLifConstants:
    """Constants of Lava's PyLifModelBitAcc (lava/proc/lif/models.py)."""

    decay_unity: int = 4096  # decays are /4096: x * (decay_unity - d) >> decay_shift
    act_shift: int = 6  # a_in << 6 into u
    vth_shift: int = 6  # threshold mantissa << 6
    uv_bits: int = 24  # u wraps, v saturates at 24 bits (signed)
    max_du: int = 4095  # du, dv: unsigned decay_shift-bit registers
    max_dv: int = 4095
    max_vth: int = 2 ** 17 - 1
    bias_mant_min: int = -4096  # signed 13-bit bias mantissa
    bias_mant_max: int = 4095
    bias_exp_max: int = 7  # unsigned 3-bit bias exponent
    weight_exp_min: int = -8  # Loihi synapse weight exponent range (nengo-loihi)
    weight_exp_max: int = 7
    decay_shift: int = 12  # log2(decay_unity): the decayed product's right shift
    ds_offset: int = 1  # added to du (Loihi 1's 1-bit register): u's decay is du + 1
    dm_offset: int = 0  # added to dv: v's decay is dv
    vth_bits: int = 17  # unsigned threshold mantissa width (max_vth = 2**17 - 1)


LAVA_LIF = LavaLifConstants()


@dataclass(frozen=True)
class LavaSynapseConstants:
    """Constants of Lava's Sparse/Dense fixed-point models (lava/utils/weightutils.py)."""

    max_weight_bits: int = 8  # weight mantissa bits (Sparse's num_weight_bits at most 8)

    @property
    def weight_max(self) -> int:
        """Largest weight magnitude of either sign mode (255)."""
        return 2 ** self.max_weight_bits - 1

    @property
    def weight_min_mixed(self) -> int:
        """Smallest weight in mixed sign mode (-256)."""
        return -(2 ** self.max_weight_bits)


LAVA_SYNAPSE = LavaSynapseConstants()

MAX_UV = 2 ** (LAVA_LIF.uv_bits - 1)  # u, v are 24-bit signed in PyLifModelBitAcc
MAX_V = MAX_UV - 1  # v saturates to [-MAX_V, MAX_V]
U_WRAP = 2 * MAX_UV  # u wraps modulo 2**24 when it leaves (-MAX_UV, MAX_UV]
DU_NO_CURRENT = LAVA_LIF.max_du  # du = 4095: u keeps no state (u[t] = a_in << act_shift)
SPIKE_BITS = 1  # a binary spike message
GRADED_BITS = LAVA_LIF.uv_bits  # a graded message (payload, voltage) as Lava's ports carry it
# Lava's Sparse/DelaySparse bit-accurate models accumulate W @ s in int32 (a_buff), so a
# graded group's worst-case sum must stay below 2**31 for Lava to equal the int64 reference.
SYNAPTIC_ACCUMULATOR_BITS = 32

# Lava's weight sign modes (weightutils.SignMode), chosen from the weights' min and max
SIGN_EXCITATORY = "excitatory"  # all >= 0: weights in [0, 255]
SIGN_INHIBITORY = "inhibitory"  # all <= 0 (some < 0): magnitudes in [0, 255], sign flipped
SIGN_MIXED = "mixed"  # both signs: weights in [-256, 255], one bit fewer of precision
