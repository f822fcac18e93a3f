"""Linear expressions over spike sources, the values the lowering carries between nodes.

Every node's output is ``sum_(src, lag) M_src @ s_src[t - lag] + c``
(:class:`LinearExpr`); linear nodes compose into its matrices, fan-in adds expressions. The
small helpers here turn node parameters into flat float64 values (pure functions).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ...errors import LoweringError
from ...program import CONST
from ...program.shared_weights import add_weights, compose, is_shared

__all__ = ["LinearExpr", "add_term", "column", "sum_exprs", "identity_expr", "uniform_value",
           "per_neuron", "flat", "decay_factor", "delay_steps"]


@dataclass(frozen=True)
class LinearExpr:
    """sum over ``(source, lag)`` of ``terms[(source, lag)] @ s_source[t - lag]`` plus ``bias``;
    ``layer`` names the last graph node with weights (for reports)."""

    terms: dict
    bias: np.ndarray
    layer: str

    @property
    def size(self) -> int:
        return int(self.bias.shape[0])

    def apply(self, m: sp.spmatrix, offset, layer: str) -> "LinearExpr":
        """``m @ self + offset`` (a new expression; ``m`` scipy or shared weights, kept
        shared where the product allows)."""
        if not is_shared(m):
            m = sp.csr_matrix(m)
        terms = {k: compose(m, v) for k, v in self.terms.items()}
        return LinearExpr(terms, np.asarray(m @ self.bias).ravel() + offset, layer)

    def delayed(self, lag: int) -> "LinearExpr":
        """This expression ``lag`` steps later (0 before): lags + lag, constant -> CONST."""
        terms: dict = {}
        for (src, l), m in self.terms.items():
            add_term(terms, (src, l + lag), m)
        if np.any(self.bias):
            add_term(terms, (CONST, lag), column(self.bias))
        return LinearExpr(terms, np.zeros(self.size), self.layer)


def identity_expr(source: str, size: int, layer: str, scale=None) -> LinearExpr:
    """The output of ``source`` itself (``size`` values, optionally times ``scale``)."""
    m = sp.identity(size, format="csr")
    return LinearExpr({(source, 0): m if scale is None else m * scale}, np.zeros(size), layer)


def add_term(terms: dict, key, m) -> None:
    """``terms[key] += m`` (in place on the caller's own dict)."""
    terms[key] = add_weights(terms[key], m) if key in terms else m


def column(values) -> sp.csr_matrix:
    """``values`` as a sparse column (the weights of a CONST term)."""
    return sp.csr_matrix(np.asarray(values, np.float64).reshape(-1, 1))


def sum_exprs(exprs: list[LinearExpr], where: str) -> LinearExpr:
    """The fan-in of ``exprs`` (all of one size) into node ``where``."""
    sizes = {e.size for e in exprs}
    if len(sizes) != 1:
        raise LoweringError(f"{where}: inputs of different sizes ({sorted(sizes)}) fan in")
    terms: dict = {}
    for e in exprs:
        for k, v in e.terms.items():
            add_term(terms, k, v)
    layer = exprs[-1].layer if len({e.layer for e in exprs}) == 1 else where
    return LinearExpr(terms, sum(e.bias for e in exprs), layer)


def uniform_value(arr, what: str, where: str) -> float:
    """The one value of ``arr``; raises when it differs across neurons."""
    arr = np.asarray(arr, np.float64)
    if arr.size and not np.all(arr == arr.flat[0]):
        raise LoweringError(f"{where}: per-neuron {what} differs across neurons; this compiler "
                            "needs one value per population here")
    return float(arr.flat[0])


def per_neuron(arr) -> float | np.ndarray:
    """A scalar when every neuron has the same value, else the flat float64 array."""
    arr = np.asarray(arr, np.float64).ravel()
    return float(arr[0]) if np.all(arr == arr[0]) else arr


def flat(values, size: int) -> np.ndarray:
    """``values`` (scalar or any shape of ``size`` elements) as a flat float64 array."""
    return np.broadcast_to(np.asarray(values, np.float64).ravel(), (size,))


def decay_factor(tau, dt: float, integrator: str):
    """``k(tau)``: ``dt/tau`` (forward Euler) or ``1 - exp(-dt/tau)`` (exact, rockpool)."""
    tau = per_neuron(tau)
    return dt / tau if integrator == "forward-euler" else 1.0 - np.exp(-dt / np.asarray(tau))


def delay_steps(delay_s, dt: float, where: str) -> int:
    """Steps of a NIR ``Delay``: ``round(delay / dt)``, one value for every element."""
    steps = np.asarray(delay_s, np.float64).ravel() / dt
    rounded = np.round(steps)
    if steps.size and not np.all(rounded == rounded[0]):
        raise LoweringError(f"{where}: delays differ across elements ({int(rounded.min())} to "
                            f"{int(rounded.max())} steps of dt={dt:g} s); only uniform delays "
                            "deploy (one synaptic delay per group)")
    if np.any(np.abs(steps - rounded) > 1e-6 * np.maximum(1.0, np.abs(steps))):
        raise LoweringError(f"{where}: delay ({float(np.ravel(delay_s)[0]):g} s) is not a "
                            f"whole number of steps of dt={dt:g} s")
    return int(rounded[0]) if steps.size else 0
