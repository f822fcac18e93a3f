"""The graph IR: NIR-shaped, immutable, numpy only (no torch, nir or lava here)."""
from .graph import Graph, topo_order
from .nodes import (NODE_TYPES, Affine, Conv1d, Conv2d, Flatten, Input, Integrator, LIF, Node,
                    Output, Scale, SpikingSelfAttention, SumPool2d, Threshold, TokenSelect,
                    IF, LI, CubaLIF, CubaLI, Delay, AvgPool2d)

__all__ = ["Graph", "topo_order", "NODE_TYPES", "Node", "Input", "Output", "Affine", "Conv1d",
           "Conv2d", "Scale", "SumPool2d", "Threshold", "Flatten", "LIF", "Integrator",
           "SpikingSelfAttention", "TokenSelect", "IF", "LI", "CubaLIF", "CubaLI", "Delay",
           "AvgPool2d"]
