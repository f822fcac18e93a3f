"""What ``nmc-deploy prune`` is asked to do: :class:`PruneRequest`, checked before any work.

Plain Python (no torch), so a bad request fails in one line before a checkpoint is read.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import NmcDeployError

__all__ = ["PRUNE_METHODS", "PruneRequest"]

PRUNE_METHODS = ("lth", "l1p", "dsp", "none")  # none: token selection only
DEFAULT_SPARSITY = 0.9  # lth, l1p: fraction of the prunable weights removed
DEFAULT_DSP_ENERGY = 0.9  # dsp without a rank budget: kept fraction of the spectral energy


@dataclass(frozen=True)
class PruneRequest:
    """One pruning run: a method and its settings, optionally followed by token selection.

    ``token_blocks`` may be given as "0,1"; it is stored as a tuple (None: every block).
    Defaults are filled in on construction (sparsity 0.9 for lth/l1p, energy 0.9 for dsp
    without a rank budget), so the request records what was run.
    """

    method: str  # one of PRUNE_METHODS
    sparsity: float | None = None  # lth, l1p: fraction of weights removed, in [0, 1)
    rank_budget: float | None = None  # dsp: fraction of the dense block parameters, (0, 1]
    energy: float | None = None  # dsp: kept spectral energy when no rank budget is given
    slif: bool = False  # replace the blocks' LIF neurons by sLIF first
    epochs: int = 5  # fine-tuning epochs (LTH: per round)
    rounds: int | None = None  # LTH rounds (None: until the sparsity is reached)
    seed: int = 0
    token_keep: float | None = None  # token selection: fraction kept by each selector
    token_blocks: tuple[int, ...] | str | None = None  # blocks with a selector before them
    token_epochs: int = 10

    def __post_init__(self):
        if self.method not in PRUNE_METHODS:
            raise NmcDeployError(f"prune: unknown method '{self.method}'; choose one of "
                                 f"{', '.join(PRUNE_METHODS)}")
        if self.token_keep is not None and not 0.0 < self.token_keep < 1.0:
            raise NmcDeployError(f"prune: token keep ratio ({self.token_keep}) must be in "
                                 "(0, 1); it is the fraction of tokens each selector keeps")
        if self.method == "none" and self.token_keep is None:
            raise NmcDeployError("prune: method 'none' prunes nothing; give --token-keep r "
                                 "for token selection or choose lth, l1p or dsp")
        blocks = self.token_blocks
        if isinstance(blocks, str):
            try:
                blocks = [int(b) for b in blocks.split(",") if b.strip()]
            except ValueError:
                raise NmcDeployError(f"prune: token blocks ('{blocks}') must be comma-separated "
                                     "block indices such as '0,1'") from None
        if blocks is not None:
            object.__setattr__(self, "token_blocks", tuple(blocks))
        for name, lo in (("epochs", 0), ("token_epochs", 0), ("rounds", 1)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < lo):
                raise NmcDeployError(f"prune: {name} ({value}) must be an integer >= {lo}")
        if self.sparsity is not None and not 0.0 <= self.sparsity < 1.0:
            raise NmcDeployError(f"prune: sparsity ({self.sparsity}) must be in [0, 1); it is "
                                 "the fraction of weights removed")
        if self.rank_budget is not None and not 0.0 < self.rank_budget <= 1.0:
            raise NmcDeployError(f"prune: rank budget ({self.rank_budget}) must be in (0, 1], "
                                 "a fraction of the dense block parameters")
        if self.method == "dsp" and self.rank_budget is None and self.energy is None:
            object.__setattr__(self, "energy", DEFAULT_DSP_ENERGY)
        if self.method in ("lth", "l1p") and self.sparsity is None:
            object.__setattr__(self, "sparsity", DEFAULT_SPARSITY)

    def selector_blocks(self, depth: int) -> tuple[int, ...]:
        """The blocks that get a token selector in a model of ``depth`` blocks."""
        return tuple(range(depth)) if self.token_blocks is None else tuple(self.token_blocks)

