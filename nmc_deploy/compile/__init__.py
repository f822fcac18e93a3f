"""Graph IR -> core program: lowering, fixed-point quantization, scheduling, partitioning."""
