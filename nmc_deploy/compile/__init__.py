"""Graph IR -> core program: lowering, scheduling, fixed-point quantization, validation,
partitioning (pure passes; :func:`compile_graph` runs them in order).

=====================  ==================================================================
module                 owns
=====================  ==================================================================
``recipe``             :func:`compile_graph` -> :class:`CompileResult`; low-rank form costs
``preflight``          ``check_design_rules``: Graph + target -> DesignRuleReport (first)
``layer_counts``       ``count_layers``: populations, groups and nonzeros without lowering
``lower/``             ``lower_graph``: Graph -> FloatProgram (registry of node lowerings)
``schedule``           ``schedule_program``: FloatProgram -> Schedule (depths, delays)
``quantize``           ``quantize_program``: FloatProgram + Schedule -> Program
``weights``            Lava's weight and bias grids (``quantize_weights``)
``relay``              payload scale and shift of low-rank relays
``token_select``       integer token selectors
``validate``           ``validate_program``: the target's limits on a Program
``partition``          ``partition_program``: Program -> Placement (cores)
``netx``               lava-dl netx export and its grid policy ``NETX_GRID``
``matrices``           dense/conv/pool matrices of linear nodes
=====================  ==================================================================
"""
from .recipe import CompileResult, compile_graph

__all__ = ["compile_graph", "CompileResult"]
