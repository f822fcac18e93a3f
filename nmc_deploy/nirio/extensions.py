"""Our NIR extension node classes, the one dict of them, and their registration with nir.

NIR 1.0.x reads only whitelisted node types: ``nir.ir.dict2NIRNode`` looks a type name up in
the private list ``nir.ir.__all_ir`` and then in the module ``nir.ir``.
:func:`register_extensions` appends our type names to that list and sets our classes on the
module, so ``nir.read(path, type_check=False)`` opens files with our nodes. The hook is
private to nir, so registration first checks that it is there and raises
:class:`NirVersionError` (one line, naming the installed and the supported nir versions)
when it is not. Schema of the nodes: docs/nir-extensions.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import nir  # noqa: E402  (nmc_deploy.nirio is the one door for nir)
import nir.ir as _nir_ir

from ..errors import NmcDeployError

__all__ = ["NirSpikingSelfAttention", "NirTokenSelect", "EXTENSIONS", "EXTENSION_NODE_TYPES",
           "EXTENSION_NAMESPACE", "SUPPORTED_NIR_VERSIONS", "NirVersionError",
           "installed_nir_version", "register_extensions"]

EXTENSION_NAMESPACE = "nmc_deploy"  # metadata["extension"] of every extension node we write
SUPPORTED_NIR_VERSIONS = "1.0.x"
_REGISTRY_NAME = "__all_ir"  # nir.ir's private list of readable node types


class NirVersionError(NmcDeployError, ImportError):
    """The installed nir cannot take our extension node types (not a supported version)."""


@dataclass(eq=False)
class NirSpikingSelfAttention(nir.NIRNode):
    """nmc-deploy extension: y_h = scale * (Q_h K_h^T) V_h per head, per time step.

    Ports q, k, v (binary spikes, shape (dim, n_tokens)) and output (dim, n_tokens).
    Scalars are stored as 1-element arrays (NIR cannot gzip 0-d datasets).
    """

    num_heads: np.ndarray
    dim: np.ndarray
    n_tokens: np.ndarray
    scale: np.ndarray

    def __post_init__(self):
        shape = np.array([int(np.ravel(self.dim)[0]), int(np.ravel(self.n_tokens)[0])])
        self.input_type = {"q": shape, "k": shape, "v": shape}
        self.output_type = {"output": shape}


# The serialised type name is the class name; keep it stable: files depend on it.
NirSpikingSelfAttention.__name__ = "SpikingSelfAttention"
NirSpikingSelfAttention.__qualname__ = "SpikingSelfAttention"


@dataclass(eq=False)
class NirTokenSelect(nir.NIRNode):
    """nmc-deploy extension: SparseSpikformer token selector (docs/nir-extensions.md).

    Port input and output (dim, n_tokens). Predictor arrays w1, b1, w2, b2; scalars as
    1-element arrays; the gated node names and the previous selector are metadata strings
    ("gates": comma-separated, "previous").
    """

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    dim: np.ndarray
    n_tokens: np.ndarray
    n_keep: np.ndarray
    time_steps: np.ndarray

    def __post_init__(self):
        shape = np.array([int(np.ravel(self.dim)[0]), int(np.ravel(self.n_tokens)[0])])
        self.input_type = {"input": shape}
        self.output_type = {"output": shape}


NirTokenSelect.__name__ = "TokenSelect"
NirTokenSelect.__qualname__ = "TokenSelect"

#: Our extension node classes by their serialised NIR type name.
EXTENSIONS: dict[str, type] = {cls.__name__: cls
                               for cls in (NirSpikingSelfAttention, NirTokenSelect)}
EXTENSION_NODE_TYPES = tuple(EXTENSIONS)


def installed_nir_version() -> str:
    """The version of the imported nir package (``nir.__version__``, else its metadata)."""
    version = getattr(nir, "__version__", None)
    if version:
        return str(version)
    from importlib import metadata

    try:
        return metadata.version("nir")
    except metadata.PackageNotFoundError:
        return "unknown"


def _node_type_registry() -> list:
    """nir's private list of readable node types, or :class:`NirVersionError`."""
    registry = vars(_nir_ir).get(_REGISTRY_NAME)
    if isinstance(registry, list) and callable(getattr(_nir_ir, "dict2NIRNode", None)):
        return registry
    raise NirVersionError(f"nir {installed_nir_version()} is installed, but nmc-deploy supports "
                          f"nir {SUPPORTED_NIR_VERSIONS}: nir.ir.{_REGISTRY_NAME}, where it "
                          "registers its extension nodes, is missing; install a supported nir "
                          "(pip install 'nir>=1.0,<1.1')")


def register_extensions() -> None:
    """Make ``nir.read`` accept our extension node types (idempotent).

    Raises
    ------
    NirVersionError
        When the installed nir has no node-type list to register them in.
    """
    registry = _node_type_registry()
    for name, cls in EXTENSIONS.items():
        if name not in registry:
            registry.append(name)
        setattr(_nir_ir, name, cls)
