"""The one exception family of nmc-deploy.

Every error a user can cause is an :class:`NmcDeployError`; the CLI prints its message on
one line and exits with status 1. Messages follow
``<where>: <quantity> (<got>) exceeds <limit> (<value>); <hint>`` where a limit is involved,
and otherwise ``<where>: <problem>; <what to do>``.
"""
from __future__ import annotations

__all__ = [
    "NmcDeployError", "InputFileError", "CheckpointError", "ExportError", "GraphError",
    "LoweringError", "CapacityError", "DesignRuleError", "TargetError", "SimulationError", "DatasetError",
    "QuantizationWarning", "OutputBusyError", "OutputWriteError",
]


class NmcDeployError(Exception):
    """Base class of every error nmc-deploy raises on purpose."""


class InputFileError(NmcDeployError, ValueError):
    """A file given by the user is missing, unreadable or of the wrong format."""


class CheckpointError(InputFileError):
    """A checkpoint cannot be loaded as an nmc-deploy model."""


class ExportError(NmcDeployError, TypeError):
    """A model contains something the exporter cannot express."""


class GraphError(NmcDeployError, ValueError):
    """A graph is malformed: unknown node types, dangling edges, inconsistent shapes."""


class LoweringError(NmcDeployError, ValueError):
    """A graph cannot be lowered to a core program."""


class CapacityError(LoweringError):
    """A model does not fit the hardware target."""


class DesignRuleError(CapacityError):
    """The pre-flight design-rule check found a rule the model breaks on the target (before
    any lowering); ``report`` holds every rule checked
    (:class:`~nmc_deploy.compile.preflight.DesignRuleReport`)."""

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report


class TargetError(NmcDeployError, ValueError):
    """A hardware target file is unknown or malformed."""


class SimulationError(NmcDeployError, RuntimeError):
    """A simulation could not be run."""


class DatasetError(NmcDeployError, ValueError):
    """A data set cannot be found or read."""


class QuantizationWarning(UserWarning):
    """A lossy fixed-point conversion that the user should know about."""


class OutputBusyError(NmcDeployError, RuntimeError):
    """Another nmc-deploy process holds the lock of an output (:mod:`nmc_deploy.publish`)."""


class OutputWriteError(NmcDeployError):
    """An output cannot be written: disk full, file too large, permission, read-only."""
