"""Lava Processes that Lava lacks (the LIF lives in ``lif``), each with a ``fixed_pt`` model.

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
TokenSelectProcess
    A SparseSpikformer token selector on an embedded core (see its docstring); the LIF
    populations it gates are :class:`~nmc_deploy.simulate.lava.lif.LoihiLIF` with a gate.
GradedRecorder
    Like SpikeRecorder for graded payloads (relays, token selector outputs, LI voltages):
    an int32 ``.npy`` file (one row per step).
PyDelaySparseModelBitAccCached
    Lava's DelaySparse model with its static per-delay weight matrix built once.

The neurons are one configurable Process, :class:`~nmc_deploy.simulate.lava.lif.LoihiLIF`.
Imports are absolute: Lava's model discovery executes every module of this directory
outside its package.
"""

import warnings

import numpy as np

from nmc_deploy.loihi.attention import attention_counts, token_scores_fixed, top_k_mask
from nmc_deploy.loihi.constants import GRADED_BITS, SPIKE_BITS
from nmc_deploy.simulate.lava import lava311
from nmc_deploy.simulate.lava.lif import DelayFifo

lava311.import_lava_runtime()  # Lava 0.10.0 on Python 3.11

from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.model.py.model import PyLoihiProcessModel  # noqa: E402
from lava.magma.core.model.py.ports import PyInPort, PyOutPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.process.ports.ports import InPort, OutPort  # noqa: E402
from lava.magma.core.process.process import AbstractProcess  # noqa: E402
from lava.magma.core.process.variable import Var  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402
from lava.proc.sparse.models import PyDelaySparseModelBitAcc  # noqa: E402

__all__ = ["SpikeAttention", "SpikeRecorder", "GradedRelay", "GradedRecorder",
           "TokenSelectProcess", "PyDelaySparseModelBitAccCached"]


class SpikeAttention(AbstractProcess):
    """Spiking self-attention product; see the module docstring for the dynamics."""

    def __init__(self, *, dim: int, n_tokens: int, num_heads: int, weight, weight_exp: int,
                 unit: tuple[int, int, int, int, int, int] | None = None, name: str = None):
        # unit: (head_start, head_stop, q_start, q_stop, k_start, k_stop) of an AttentionUnit;
        # None: the whole op
        super().__init__(dim=dim, n_tokens=n_tokens, num_heads=num_heads, weight=weight,
                         weight_exp=weight_exp, unit=unit, name=name)
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
    q_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=SPIKE_BITS)
    k_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=SPIKE_BITS)
    v_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=SPIKE_BITS)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=GRADED_BITS)
    a_buff: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=GRADED_BITS)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        dim, n = proc_params["dim"], proc_params["n_tokens"]
        h0, h1, q0, q1, k0, k1 = proc_params["unit"] or (0, proc_params["num_heads"], 0, n, 0, n)
        d = dim // proc_params["num_heads"]
        row = np.arange(dim * n) // n
        token = np.arange(dim * n) % n
        head = (row >= h0 * d) & (row < h1 * d)
        self._keys = ((token >= k0) & (token < k1))[None, :].astype(np.int32)
        self._outputs = (head & (token >= q0) & (token < q1)).astype(np.int64)

    def run_spk(self):
        p = self.proc_params
        self.a_out.send(self.a_buff)  # last step's product: one step of delay, like Sparse
        q = self.q_in.recv()[None, :]
        k = self.k_in.recv()[None, :]
        v = self.v_in.recv()[None, :]
        counts, _ = attention_counts(q, k * self._keys, v * self._keys, p["num_heads"],
                                     p["dim"], p["n_tokens"])
        counts = counts[0] * self._outputs  # this unit's outputs, its key block's partial
        a = counts * np.asarray(p["weight"], np.int64)  # scalar or per output neuron
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
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=SPIKE_BITS)
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

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=GRADED_BITS)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=GRADED_BITS)

    def run_spk(self):
        a = np.asarray(self.a_in.recv()).astype(np.int64)
        self.s_out.send((a >> int(self.proc_params["payload_shift"])).astype(np.int32))


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


class TokenSelectProcess(AbstractProcess):
    """SparseSpikformer token selector on an embedded core (integer, one-sample buffer).

    ``a_in`` (dim*N graded): the residual stream, input step t of a sample arriving at Lava
    step ``1 + depth_in + t``. After step T-1 the selector scores the tokens with the
    integer predictor of ``TokenSelectOp`` (``nmc_deploy.loihi.attention``), keeps the
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
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=GRADED_BITS)
    prev_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=SPIKE_BITS)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=GRADED_BITS)
    mask_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=SPIKE_BITS)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = proc_params
        self.T = int(p["time_steps"])
        self.dim, self.n_tok = int(p["dim"]), int(p["n_tokens"])
        n = self.dim * self.n_tok
        self.buf = np.zeros((self.T, n), np.int64)  # the sample being received
        self.out_buf = np.zeros((self.T, n), np.int32)  # the sample being emitted
        self.out_mask = np.zeros(self.n_tok, np.int32)
        self.prev = DelayFifo(p["prev_delay"], self.n_tok) if p["prev_delay"] >= 0 else None

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


class GradedRecorder(AbstractProcess):
    """Record graded payloads of ``shape`` for ``num_steps`` steps into ``path`` (.npy)."""

    def __init__(self, *, shape, num_steps: int, path: str, name: str = None):
        super().__init__(shape=shape, num_steps=num_steps, path=path, name=name)
        self.a_in = InPort(shape=shape)


@implements(proc=GradedRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyGradedRecorderModel(_PyRecorderBase):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=GRADED_BITS)
    buffer_dtype = np.int32
