"""The compile -> simulate -> report contract: the compiled program, its sources, and their files."""
from .program import *  # noqa: F401,F403
from .program import __all__  # noqa: F401
