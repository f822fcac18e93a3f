"""Lava Processes that Lava does not provide, each with a ``fixed_pt`` ProcessModel.

SpikeAttention
    The spiking self-attention core as a synapse-like stage (a Loihi 2 programmable-neuron
    unit in hardware terms): per step it receives binary q, k, v of shape (dim*n_tokens,)
    in (dim, n_tokens) C-order, computes per head ``C_h = (Q_h K_h^T) V_h`` and sends
    ``(weight * C) << weight_exp`` (``>>`` if negative) on the *next* step, like Sparse;
    ``weight`` is one integer or one per output neuron (per-neuron thresholds of the LIF).
SpikeRecorder
    Stores the spikes it receives each step and, at step ``num_steps``, writes them as a
    bit-packed ``.npy`` file (one row per step). This avoids ``Var.get``, which moves
    values one at a time over a pipe.
GradedRelay
    A low-rank factor stage (Loihi 2 graded-spike neuron; Lava's ``GradedVec`` with
    ``vth = 0`` plus a right shift): per step ``p = a_in >> payload_shift`` (arithmetic),
    sent at the same step as a graded payload; no state, no threshold.
TokenSelectProcess, LIFResetGated
    A SparseSpikformer token selector on an embedded core and the LIF populations it gates
    (see their docstrings).
GradedRecorder
    Like SpikeRecorder for graded payloads (relays, token selector outputs): an int32
    ``.npy`` file (one row per step).
LIFWindowed
    Lava's fixed-point LIF arithmetic (per-neuron du, dv) that runs only inside its sample
    windows and rests (u = v = 0, no output) between them; optionally a subtractive reset,
    or no spikes at all with the voltage sent as a graded output (LI/CubaLI readouts).
"""
import warnings

import numpy as np

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from nmc_deploy.loihi.kernels import attention_counts


class SpikeAttention(AbstractProcess):
    """Spiking self-attention product; see the module docstring for the dynamics."""

    def __init__(self, *, dim: int, n_tokens: int, num_heads: int, weight, weight_exp: int,
                 name: str = None):
        super().__init__(dim=dim, n_tokens=n_tokens, num_heads=num_heads, weight=weight,
                         weight_exp=weight_exp, name=name)
        n = dim * n_tokens
        self.q_in = InPort(shape=(n,))
        self.k_in = InPort(shape=(n,))
        self.v_in = InPort(shape=(n,))
        self.a_out = OutPort(shape=(n,))
        self.a_buff = Var(shape=(n,), init=0)


@implements(proc=SpikeAttention, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySpikeAttentionModelFixed(PyLoihiProcessModel):
    q_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=1)
    k_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=1)
    v_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=1)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_buff: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def run_spk(self):
        p = self.proc_params
        self.a_out.send(self.a_buff)  # last step's product: one step of delay, like Sparse
        q = self.q_in.recv()[None, :]
        k = self.k_in.recv()[None, :]
        v = self.v_in.recv()[None, :]
        counts, _ = attention_counts(q, k, v, p["num_heads"], p["dim"], p["n_tokens"])
        a = counts[0] * np.asarray(p["weight"], np.int64)  # scalar or per output neuron
        e = int(p["weight_exp"])
        self.a_buff = (a << e if e > 0 else a >> -e).astype(np.int32)


class SpikeRecorder(AbstractProcess):
    """Record binary spikes of ``shape`` for ``num_steps`` steps into ``path`` (.npy)."""

    def __init__(self, *, shape, num_steps: int, path: str, name: str = None):
        super().__init__(shape=shape, num_steps=num_steps, path=path, name=name)
        self.a_in = InPort(shape=shape)


class _PyRecorderBase(PyLoihiProcessModel):
    """Buffers what ``a_in`` receives each step; at step ``num_steps`` saves it to ``path``.
    Subclasses set ``a_in``'s precision, the buffer dtype and how the buffer is saved."""

    buffer_dtype = bool

    def __init__(self, proc_params):
        super().__init__(proc_params)
        n = int(np.prod(proc_params["shape"]))
        self._buffer = np.zeros((int(proc_params["num_steps"]), n), dtype=self.buffer_dtype)

    def saved(self, buffer: np.ndarray) -> np.ndarray:
        return buffer

    def run_spk(self):
        s = self.a_in.recv()
        step = self.time_step - 1
        if step < self._buffer.shape[0]:
            self._buffer[step] = s
        if self.time_step == self._buffer.shape[0]:
            np.save(self.proc_params["path"], self.saved(self._buffer))


@implements(proc=SpikeRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySpikeRecorderModel(_PyRecorderBase):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=1)
    buffer_dtype = bool  # nonzero = spike

    def saved(self, buffer):
        return np.packbits(buffer, axis=1)


class GradedRelay(AbstractProcess):
    """Graded relay of a low-rank factor; see the module docstring for the dynamics."""

    def __init__(self, *, shape, payload_shift: int = 0, name: str = None):
        super().__init__(shape=shape, payload_shift=payload_shift, name=name)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)


@implements(proc=GradedRelay, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyGradedRelayModelFixed(PyLoihiProcessModel):
    """``s_out = a_in >> payload_shift`` each step (bit-accurate; int32 like Lava's
    GradedVec fixed-point model)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def run_spk(self):
        a = np.asarray(self.a_in.recv()).astype(np.int64)
        self.s_out.send((a >> int(self.proc_params["payload_shift"])).astype(np.int32))


from lava.proc.sparse.models import PyDelaySparseModelBitAcc  # noqa: E402


class PyDelaySparseModelBitAccCached(PyDelaySparseModelBitAcc):
    """Lava's bit-accurate DelaySparse model with its per-delay weight matrix built once.

    Lava 0.10.0 rebuilds that matrix (sparse item assignment over every synapse) on every
    step, which costs seconds per step for a few thousand synapses. Weights and delays are
    static here, so the matrix is computed on the first step and reused; the arithmetic is
    unchanged (tests/simulate/test_lava_backend.py compares both models spike for spike).
    Used through ``exception_proc_model_map``; the decorators are inherited.
    """

    _delay_wgts = None

    def calc_act(self, s_in) -> np.ndarray:
        if self._delay_wgts is None:
            with warnings.catch_warnings():  # Lava edits CSR structure while building it
                warnings.simplefilter("ignore")
                self._delay_wgts = self.get_delay_wgts_mat(self.weights, self.delays,
                                                           self.a_buff.shape[-1] - 1)
        return np.reshape(self._delay_wgts * s_in,
                          (self.a_buff.shape[-1], self.weights.shape[0])).T


from lava.proc.lif.models import AbstractPyLifModelFixed  # noqa: E402
from lava.proc.lif.process import LIFReset  # noqa: E402


class LIFResetPerNeuronDecay(LIFReset):
    """Lava's LIFReset with ``du`` and ``dv`` as per-neuron Vars (sLIF's per-channel leaks).

    Loihi 2's programmable neurons allow this; Lava's LIF holds one decay per population.
    The dynamics are Lava's PyLifResetModelBitAcc, evaluated elementwise.
    """

    def __init__(self, *, shape, du, dv, **kwargs):
        super().__init__(shape=shape, du=0, dv=0, **kwargs)
        self.du = Var(shape=shape, init=np.broadcast_to(du, shape).copy())
        self.dv = Var(shape=shape, init=np.broadcast_to(dv, shape).copy())


class _PyLIFResetVectorDecayBase(AbstractPyLifModelFixed):
    """Lava's fixed-point LIF arithmetic (AbstractPyLifModelFixed.subthr_dynamics) with
    vector decays, plus LIFReset's behaviour: u, v zeroed when
    ``time_step % reset_interval == reset_offset`` (before integrating), spike on
    ``v > vth << 6``, reset to 0. (Undecorated: each Process gets its own subclass.)"""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    vth: int = LavaPyType(int, np.int32, precision=17)
    du: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=12)
    dv: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=12)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.reset_interval = proc_params["reset_interval"]
        self.reset_offset = proc_params["reset_offset"] % self.reset_interval

    def run_spk(self):
        self._step(self.a_in.recv())

    def _step(self, a_in, gate=None):
        """One step; neurons with ``gate`` False (if given) neither spike nor keep u, v."""
        if self.time_step % self.reset_interval == self.reset_offset:
            self.u *= 0
            self.v *= 0
        self.scale_bias()
        self.subthr_dynamics(activation_in=a_in)
        spikes = self.v > np.left_shift(self.vth, self.vth_shift)
        if gate is not None:
            spikes = spikes & gate
        self.reset_voltage(spike_vector=spikes)
        if gate is not None:
            self.u = np.where(gate, self.u, 0).astype(self.u.dtype)
            self.v = np.where(gate, self.v, 0).astype(self.v.dtype)
        self.s_out.send(spikes)


@implements(proc=LIFResetPerNeuronDecay, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyLIFResetPerNeuronDecayModel(_PyLIFResetVectorDecayBase):
    """The model of :class:`LIFResetPerNeuronDecay` (see the base class)."""


from collections import deque  # noqa: E402

from nmc_deploy.loihi.kernels import token_scores_fixed, top_k_mask  # noqa: E402


class _GateFifo:
    """The value received ``delay`` steps ago (zeros until then)."""

    def __init__(self, delay: int, size: int):
        self.delay = int(delay)
        self.queue = deque(maxlen=self.delay + 1)
        self.zero = np.zeros(size, np.int32)

    def push(self, value) -> np.ndarray:
        self.queue.append(np.asarray(value))
        return self.queue[0] if len(self.queue) == self.delay + 1 else self.zero


class TokenSelectProcess(AbstractProcess):
    """SparseSpikformer token selector on an embedded core (integer, one-sample buffer).

    ``a_in`` (dim*N graded): the residual stream, input step t of a sample arriving at Lava
    step ``1 + depth_in + t``. After step T-1 the selector scores the tokens with the
    integer predictor of ``TokenSelectOp`` (``nmc_deploy.loihi.kernels``), keeps the
    ``n_keep`` best among those the previous selector kept (``prev_in``, the previous
    selector's ``mask_out`` delayed by ``prev_delay`` steps) and emits the gated stream on
    ``s_out`` at ``1 + depth + t`` (``depth = depth_in + T - 1``), its keep mask on
    ``mask_out`` at the same steps.
    """

    def __init__(self, *, dim: int, n_tokens: int, n_keep: int, time_steps: int,
                 depth_in: int, params: dict, prev_delay: int = -1, name: str = None):
        super().__init__(dim=dim, n_tokens=n_tokens, n_keep=n_keep, time_steps=time_steps,
                         depth_in=depth_in, params=params, prev_delay=prev_delay, name=name)
        n = dim * n_tokens
        self.a_in = InPort(shape=(n,))
        self.prev_in = InPort(shape=(n_tokens,))
        self.s_out = OutPort(shape=(n,))
        self.mask_out = OutPort(shape=(n_tokens,))


@implements(proc=TokenSelectProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyTokenSelectModelFixed(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    prev_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=1)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    mask_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = proc_params
        self.T = int(p["time_steps"])
        self.dim, self.n_tok = int(p["dim"]), int(p["n_tokens"])
        n = self.dim * self.n_tok
        self.buf = np.zeros((self.T, n), np.int64)  # the sample being received
        self.out_buf = np.zeros((self.T, n), np.int32)  # the sample being emitted
        self.out_mask = np.zeros(self.n_tok, np.int32)
        self.prev = _GateFifo(p["prev_delay"], self.n_tok) if p["prev_delay"] >= 0 else None

    def run_spk(self):
        p = self.proc_params
        a = self.a_in.recv()
        prev_msg = self.prev_in.recv()
        prev = self.prev.push(prev_msg) if self.prev is not None else None
        rel = self.time_step - 1 - int(p["depth_in"])
        if rel >= 0:
            t = rel % self.T
            self.buf[t] = a
            if t == self.T - 1:  # the whole sample is in: decide, then emit from this step on
                counts = self.buf.sum(axis=0).reshape(1, self.dim, self.n_tok).transpose(0, 2, 1)
                scores = token_scores_fixed(counts, **p["params"])
                eligible = None if prev is None else (prev[None, :] != 0)
                mask = top_k_mask(scores, int(p["n_keep"]), eligible)[0]
                gate = np.tile(mask, self.dim)  # neuron c*N + n -> token n
                self.out_buf = (self.buf * gate[None, :]).astype(np.int32)
                self.out_mask = mask.astype(np.int32)
        rel_out = rel - (self.T - 1)
        if rel_out >= 0:
            self.s_out.send(self.out_buf[rel_out % self.T])
            self.mask_out.send(self.out_mask)
        else:
            self.s_out.send(np.zeros(self.out_buf.shape[1], np.int32))
            self.mask_out.send(np.zeros(self.n_tok, np.int32))


class LIFResetGated(LIFResetPerNeuronDecay):
    """:class:`LIFResetPerNeuronDecay` whose neurons a token selector can hold at rest.

    ``gate_in`` receives the selector's keep mask (one bit per token) every step; the model
    uses the value received ``gate_delay`` steps earlier, which belongs to the sample it is
    computing. Neuron i belongs to token ``i % n_tokens``; a neuron of a dropped token does
    not spike and its u and v are held at 0 (a disabled compartment).
    """

    def __init__(self, *, shape, n_tokens: int, gate_delay: int, **kwargs):
        super().__init__(shape=shape, **kwargs)
        self.proc_params["n_tokens"] = int(n_tokens)
        self.proc_params["gate_delay"] = int(gate_delay)
        self.gate_in = InPort(shape=(int(n_tokens),))


@implements(proc=LIFResetGated, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyLIFResetGatedModel(_PyLIFResetVectorDecayBase):
    gate_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=1)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        n_tok = int(proc_params["n_tokens"])
        size = int(np.prod(proc_params["shape"]))
        self.token_of = np.arange(size) % n_tok
        self.fifo = _GateFifo(proc_params["gate_delay"], n_tok)

    def run_spk(self):
        a_in = self.a_in.recv()
        self._step(a_in, self.fifo.push(self.gate_in.recv())[self.token_of] != 0)


class GradedRecorder(AbstractProcess):
    """Record graded payloads of ``shape`` for ``num_steps`` steps into ``path`` (.npy)."""

    def __init__(self, *, shape, num_steps: int, path: str, name: str = None):
        super().__init__(shape=shape, num_steps=num_steps, path=path, name=name)
        self.a_in = InPort(shape=shape)


@implements(proc=GradedRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyGradedRecorderModel(_PyRecorderBase):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    buffer_dtype = np.int32


class LIFWindowed(LIFResetPerNeuronDecay):
    """A LIF population that is active only in its sample windows (see the model).

    With ``period = T + gap``, the window of sample k covers Lava steps
    ``first_step + k period + t`` for ``t < window (= T)``. Inside it the dynamics are
    :class:`LIFResetPerNeuronDecay`'s (u, v zeroed at the window's first step before
    integrating); outside it the neurons rest: input ignored, u = v = 0, output 0. So with
    ``gap`` idle steps between samples, a group that delivers its source's output ``lag <=
    gap`` steps late carries zeros into the first ``lag`` steps of each window, exactly the
    "0 before t = 0" of a single sample. On a spike v is zeroed, or with
    ``reset_subtract > 0`` reduced by it. ``spiking=False``: no threshold and no reset; the
    voltage v (int32, 24-bit) is sent on ``s_out`` each active step (a non-spiking leaky
    integrator read out per step, like a Loihi 2 graded-output neuron).
    """

    def __init__(self, *, shape, window: int, first_step: int, reset_subtract: int = 0,
                 spiking: bool = True, **kwargs):
        super().__init__(shape=shape, **kwargs)
        self.proc_params["window"] = int(window)
        self.proc_params["first_step"] = int(first_step)
        self.proc_params["reset_subtract"] = int(reset_subtract)
        self.proc_params["spiking"] = bool(spiking)


@implements(proc=LIFWindowed, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyLIFWindowedModel(_PyLIFResetVectorDecayBase):
    """The model of :class:`LIFWindowed` (Lava's AbstractPyLifModelFixed arithmetic)."""

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.window = int(proc_params["window"])
        self.first_step = int(proc_params["first_step"])
        self.reset_sub = int(proc_params["reset_subtract"])
        self.spiking = bool(proc_params["spiking"])

    def run_spk(self):
        a_in = self.a_in.recv()
        rel = self.time_step - self.first_step
        phase = rel % self.reset_interval
        if rel < 0 or phase >= self.window:  # between windows: at rest
            self.u *= 0
            self.v *= 0
            self.s_out.send(np.zeros(self.v.shape, np.int32))
            return
        if phase == 0:
            self.u *= 0
            self.v *= 0
        self.scale_bias()
        self.subthr_dynamics(activation_in=a_in)
        if not self.spiking:
            self.s_out.send(np.array(self.v, np.int32))
            return
        spikes = self.v > np.left_shift(self.vth, self.vth_shift)
        if self.reset_sub:
            self.v[spikes] -= self.reset_sub
        else:
            self.reset_voltage(spike_vector=spikes)
        self.s_out.send(spikes)
