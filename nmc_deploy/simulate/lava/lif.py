"""The one LIF Process of the Lava backend: Lava's LIFReset with options, on Lava's hooks.

``LoihiLIF`` subclasses Lava's ``LIFReset`` Process and its model ``PyLoihiLifModelFixed``
subclasses Lava's ``AbstractPyLifModelFixed``, keeping Lava's step (``run_spk``: receive,
``scale_bias``, ``subthr_dynamics``, ``spiking_activation``, ``reset_voltage``, send) and
its fixed-point arithmetic; the options override only the hooks:

* **per-neuron decays**: ``du``, ``dv`` are per-neuron Vars (scalars are broadcast), the
  per-channel leaks of sLIF and per-neuron current decays (Lava's LIF holds one per
  population; Loihi 2's programmable neurons allow one per neuron);
* **periodic reset** (Lava's LIFReset): u, v zeroed before integrating when
  ``time_step % reset_interval == reset_offset`` (``subthr_dynamics``);
* **window** (``window > 0``): active for ``window`` steps from ``first_step + k
  reset_interval``, at rest outside them (input ignored, u = v = 0, output 0), so a lagged
  group delivers zeros into the first steps of the next window (``subthr_dynamics``);
* **gate** (``gate_tokens > 0``): ``gate_in`` receives a token selector's keep mask every
  step; the value received ``gate_delay`` steps earlier (the sample being computed) applies;
  neuron i belongs to token ``i % gate_tokens``; a neuron of a dropped token neither spikes
  nor keeps u, v (``spiking_activation``, ``reset_voltage``);
* **subtractive reset** (``reset_subtract > 0``): a spike subtracts it from v instead of
  zeroing v (``reset_voltage``);
* **non-spiking** (``spiking=False``, LI/CubaLI readouts): no threshold, no reset; the
  voltage v (int32, 24-bit) is sent on ``s_out`` every step (``spiking_activation``);
* **multi spike** (``max_spikes > 1``, a Loihi 2 graded-spike neuron): where
  ``v > vth << 6`` the count ``k = min(1 + floor((v - (vth << 6) - 1) / spike_unit),
  max_spikes)`` is sent on ``s_out`` as a graded payload (``spiking_activation``); the
  reset subtracts ``k reset_subtract`` or zeroes v where ``k > 0`` (``reset_voltage``);
* **clamp** (``v_min`` not None, an int or one per neuron): after the reset,
  ``v = max(v, v_min)`` (sinabs' ``min_v_mem``; ``reset_voltage``).

All options combine. With none (scalar decays broadcast), the model computes exactly
Lava's ``PyLifResetModelBitAcc`` (tests/simulate/test_loihi_lif.py compares them).
"""
from collections import deque

import numpy as np

from nmc_deploy.loihi.constants import LAVA_LIF, SPIKE_BITS
from nmc_deploy.simulate.lava import lava311

lava311.import_lava_runtime()  # Lava 0.10.0 on Python 3.11

from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.model.py.ports import PyInPort, PyOutPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.process.ports.ports import InPort  # noqa: E402
from lava.magma.core.process.variable import Var  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402
from lava.proc.lif.models import AbstractPyLifModelFixed  # noqa: E402
from lava.proc.lif.process import LIFReset  # noqa: E402

__all__ = ["LoihiLIF", "PyLoihiLifModelFixed", "DelayFifo"]


class DelayFifo:
    """The value received ``delay`` steps ago (zeros of ``size`` until then)."""

    def __init__(self, delay: int, size: int):
        self.delay = int(delay)
        self.queue = deque(maxlen=self.delay + 1)
        self.zero = np.zeros(size, np.int32)

    def push(self, value) -> np.ndarray:
        """Receive this step's ``value``; return the one of ``delay`` steps ago."""
        self.queue.append(np.asarray(value))
        return self.queue[0] if len(self.queue) == self.delay + 1 else self.zero


class LoihiLIF(LIFReset):
    """Lava's LIFReset with per-neuron decays, windows, a token gate, a subtractive reset
    and a non-spiking mode as options (see the module docstring).

    Parameters beyond LIFReset's: ``window`` (active steps per ``reset_interval``; 0: always
    active) and ``first_step`` (the first active step); ``gate_tokens`` (0: not gated) and
    ``gate_delay``; ``reset_subtract`` (0: reset to zero); ``spiking``.
    """

    def __init__(self, *, shape, du, dv, vth, bias_mant, bias_exp, reset_interval: int,
                 reset_offset: int = 0, window: int = 0, first_step: int = 0,
                 gate_tokens: int = 0, gate_delay: int = 0, reset_subtract: int = 0,
                 spiking: bool = True, max_spikes: int = 1, spike_unit: int = 0,
                 v_min=None, name: str = None):
        super().__init__(shape=shape, du=0, dv=0, vth=vth, bias_mant=bias_mant,
                         bias_exp=bias_exp, reset_interval=reset_interval,
                         reset_offset=reset_offset, name=name)
        self.du = Var(shape=shape, init=np.broadcast_to(du, shape).copy())
        self.dv = Var(shape=shape, init=np.broadcast_to(dv, shape).copy())
        self.proc_params["window"] = int(window)
        self.proc_params["first_step"] = int(first_step)
        self.proc_params["gate_tokens"] = int(gate_tokens)
        self.proc_params["gate_delay"] = int(gate_delay)
        self.proc_params["reset_subtract"] = int(reset_subtract)
        self.proc_params["spiking"] = bool(spiking)
        self.proc_params["max_spikes"] = int(max_spikes)
        self.proc_params["spike_unit"] = int(spike_unit)
        self.proc_params["v_min"] = None if v_min is None else np.asarray(v_min, np.int64)
        # always present (the model declares it); unconnected and unread when not gated
        self.gate_in = InPort(shape=(max(int(gate_tokens), 1),))


@implements(proc=LoihiLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyLoihiLifModelFixed(AbstractPyLifModelFixed):
    """The model of :class:`LoihiLIF`: Lava's fixed-point LIF step with its hooks overridden."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=LAVA_LIF.uv_bits)
    vth: int = LavaPyType(int, np.int32, precision=LAVA_LIF.vth_bits)
    du: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=LAVA_LIF.decay_shift)
    dv: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=LAVA_LIF.decay_shift)
    gate_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=SPIKE_BITS)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = proc_params
        self.effective_vth = 0
        self.reset_interval = p["reset_interval"]
        self.reset_offset = p["reset_offset"] % self.reset_interval
        self.window = p["window"]
        self.first_step = p["first_step"]
        self.reset_sub = p["reset_subtract"]
        self.spiking = p["spiking"]
        self.max_spikes = p["max_spikes"]
        self.spike_unit = p["spike_unit"]
        self.v_min = p["v_min"]
        n_tok = p["gate_tokens"]
        self.gate_fifo = DelayFifo(p["gate_delay"], n_tok) if n_tok else None
        self.token_of = np.arange(int(np.prod(p["shape"]))) % n_tok if n_tok else None
        self.gate = None  # this step's (size,) bool gate, or None
        self.resting = False  # this step lies outside the windows

    def run_spk(self):
        """Lava's step (``AbstractPyLifModelFixed.run_spk``), once this step's gate and
        window phase are known."""
        if self.gate_fifo is not None:
            self.gate = self.gate_fifo.push(self.gate_in.recv())[self.token_of] != 0
        rel = self.time_step - self.first_step
        self.resting = self.window > 0 and (rel < 0 or rel % self.reset_interval >= self.window)
        super().run_spk()

    def scale_threshold(self):
        """Loihi's threshold, MSB-aligned: ``vth << vth_shift`` (as PyLifResetModelBitAcc)."""
        self.effective_vth = np.left_shift(self.vth, self.vth_shift)
        self.isthrscaled = True

    def subthr_dynamics(self, activation_in: np.ndarray):
        """Lava's integration after the periodic reset; at rest outside the windows."""
        if self.resting or self.time_step % self.reset_interval == self.reset_offset:
            self.u *= 0
            self.v *= 0
        if not self.resting:
            super().subthr_dynamics(activation_in)

    def spiking_activation(self):
        """``v > vth << 6`` (the voltage itself if non-spiking), gated neurons silent."""
        if not self.spiking:
            v = self.v if self.gate is None else np.where(self.gate, self.v, 0)
            return np.array(v, np.int32)
        spikes = self.v > self.effective_vth
        if self.max_spikes > 1:  # the count, a graded payload (int64 arithmetic)
            excess = np.where(spikes, self.v.astype(np.int64) - (int(self.effective_vth) + 1), 0)
            k = np.where(spikes, np.minimum(excess // self.spike_unit + 1, self.max_spikes), 0)
            return np.array(k if self.gate is None else k * self.gate, np.int32)
        return spikes if self.gate is None else spikes & self.gate

    def reset_voltage(self, spike_vector: np.ndarray):
        """Zero (or subtract from) v where spiked; gated neurons' u, v held at 0."""
        if self.spiking and self.max_spikes > 1:
            k = np.asarray(spike_vector, np.int64)
            if self.reset_sub:
                self.v = (self.v - k * self.reset_sub).astype(self.v.dtype)
            else:
                self.v[k > 0] = 0
        elif self.spiking:
            if self.reset_sub:
                self.v[spike_vector] -= self.reset_sub
            else:
                super().reset_voltage(spike_vector)
        if self.spiking and self.v_min is not None:
            self.v = np.maximum(self.v, self.v_min).astype(self.v.dtype)
        if self.gate is not None:
            self.u = np.where(self.gate, self.u, 0).astype(self.u.dtype)
            self.v = np.where(self.gate, self.v, 0).astype(self.v.dtype)
