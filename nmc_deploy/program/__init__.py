"""The compile -> simulate -> report contract: the program, its placement, its activity, their files.

Modules: :mod:`.shared` (source and kind names, the attention op, the readout),
:mod:`.float_program` (the float program of the lowering), :mod:`.program` (the fixed-point
program), :mod:`.placement` (core placement and the typed ``placement.json``),
:mod:`.chips` (where cores sit in a system of chips),
:mod:`.activity` (the typed ``activity_<backend>.json``), :mod:`.io` (their files).
Every public name is re-exported here.
"""
from .activity import *  # noqa: F401,F403
from .activity import __all__ as _activity_all
from .chips import *  # noqa: F401,F403
from .chips import __all__ as _chips_all
from .float_program import *  # noqa: F401,F403
from .float_program import __all__ as _float_all
from .io import *  # noqa: F401,F403
from .io import __all__ as _io_all
from .placement import *  # noqa: F401,F403
from .placement import __all__ as _placement_all
from .program import *  # noqa: F401,F403
from .program import __all__ as _program_all
from .shared import *  # noqa: F401,F403
from .shared import __all__ as _shared_all

__all__ = [*_shared_all, *_float_all, *_program_all, *_io_all, *_placement_all, *_activity_all,
           *_chips_all]
