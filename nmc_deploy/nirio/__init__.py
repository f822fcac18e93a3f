"""The only door for ``nir``: our graph IR to and from NIR files, the portable format, NIRData.

Importing this package registers our extension node types with nir
(:func:`register_extensions`), so ``nir.read`` opens files that hold them.

Modules
-------
``extensions``  our NIR extension node classes and their registration with nir
``table``       the one node table: per IR node type, its NIR writer and reader
``coerce``      arrays, scalars, shapes and metadata between nir and the IR
``write``       ``to_nir``, ``write_nir`` (nesting ``g/n`` names into subgraphs)
``flatten``     nested NIR graphs -> one level of ``g/n`` names
``shapes``      shape inference while reading
``read``        ``from_nir``, ``read_nir`` (HDF5 type checks, one-line errors)
``portable``    ``to_portable``, ``write_portable``, ``read_portable``
``nirdata``     ``read_nirdata_input``, ``write_nirdata``
"""
from .extensions import (EXTENSION_NODE_TYPES, NirSpikingSelfAttention, NirTokenSelect,
                         NirVersionError, register_extensions)
from .portable import (PORTABLE_ARRAYS, PORTABLE_FORMAT, PORTABLE_GRAPH, PORTABLE_MANIFEST,
                       read_portable, to_portable, write_portable)
from .nirdata import read_nirdata_input, read_nirdata_labels, write_nirdata
from .read import from_nir, read_nir
from .table import STANDARD_NODE_TYPES
from .write import to_nir, write_nir

__all__ = ["to_nir", "from_nir", "write_nir", "read_nir", "register_extensions",
           "to_portable", "write_portable", "read_portable", "read_nirdata_input",
           "read_nirdata_labels",
           "write_nirdata", "NirSpikingSelfAttention", "NirTokenSelect", "NirVersionError",
           "STANDARD_NODE_TYPES", "EXTENSION_NODE_TYPES", "PORTABLE_GRAPH", "PORTABLE_MANIFEST",
           "PORTABLE_ARRAYS", "PORTABLE_FORMAT"]

register_extensions()
