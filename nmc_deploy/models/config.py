"""Spikformer hyper-parameters: :class:`SpikformerConfig`, the presets and the block matrices.

Plain Python (no torch), so a configuration can be read, checked and printed without
building a model. :mod:`nmc_deploy.models.spikformer` builds the model from it.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..errors import CheckpointError, NmcDeployError

__all__ = ["SpikformerConfig", "PRESETS", "preset_config", "NEURON_KINDS", "block_matrix_paths",
           "PaperShape", "PAPER_SHAPES", "paper_config", "PRESET_VARIANTS"]

# Values of SpikformerConfig.neuron: which LIFs are SLIFs (learnable threshold and leak).
#   "lif"          every neuron is a MultiStepLIF;
#   "slif_blocks"  the q/k/v/attn/proj/fc1/fc2 neurons of every block are SLIFs;
#   "slif_all"     those and the SPS neurons (lifs.i, rpe_lif).
NEURON_KINDS = ("lif", "slif_blocks", "slif_all")


@dataclass(frozen=True)
class SpikformerConfig:
    """Hyper-parameters of a :class:`Spikformer` (immutable, JSON round-trippable).

    Raises
    ------
    NmcDeployError
        If the fields are inconsistent (see :meth:`__post_init__`).
    """

    img_size: int = 8  # input height = width, pixels
    in_channels: int = 1  # input image channels
    num_classes: int = 10  # classifier outputs
    embed_dim: int = 32  # D, channels per token
    num_heads: int = 2  # h, attention heads (D % h == 0)
    depth: int = 2  # number of SSA + MLP blocks
    mlp_ratio: int = 4  # MLP hidden channels = mlp_ratio * D
    time_steps: int = 4  # T, the image is repeated T times (direct encoding)
    sps_channels: tuple[int, ...] = (8, 16, 32)  # output channels of each SPS conv stage
    sps_pool: tuple[bool, ...] = (False, True, False)  # MaxPool(3, 2, 1) after stage i?
    attn_scale: float = 0.125  # s in (Q K^T) * s
    tau: float = 2.0  # LIF time constant, time steps
    v_threshold: float = 1.0  # LIF threshold of every neuron except attn_lif
    attn_v_threshold: float = 0.5  # threshold of attn_lif
    # Factorised block matrices: (module path, rank) pairs such as
    # ("blocks.0.attn.q_linear", 8); each named Linear is a LowRankLinear of that rank.
    low_rank: tuple[tuple[str, int], ...] = ()
    neuron: str = "lif"  # one of NEURON_KINDS: where SLIF neurons replace MultiStepLIF
    # Token selection (SparseSpikformer): a TokenPredictor before each listed block; the
    # p-th selector (p = 1, 2, ...) keeps kept_tokens(p) = floor(N * token_keep**p) tokens.
    token_keep: float = 1.0
    token_blocks: tuple[int, ...] = ()

    def __post_init__(self):
        where = "SpikformerConfig"
        for name in ("img_size", "in_channels", "num_classes", "embed_dim", "num_heads",
                     "depth", "mlp_ratio", "time_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise NmcDeployError(f"{where}: {name} ({value!r}) must be a positive integer")
        for name in ("attn_scale", "tau", "v_threshold", "attn_v_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise NmcDeployError(f"{where}: {name} ({value!r}) must be a positive number")
        if self.tau < 1.0:
            raise NmcDeployError(f"{where}: tau ({self.tau}) must be >= 1 time step")
        if not isinstance(self.sps_channels, tuple) or not all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 1
                for c in self.sps_channels):
            raise NmcDeployError(
                f"{where}: sps_channels ({self.sps_channels!r}) must be a tuple of positive "
                f"integers")
        if not isinstance(self.sps_pool, tuple) or not all(
                isinstance(p, bool) for p in self.sps_pool):
            raise NmcDeployError(f"{where}: sps_pool ({self.sps_pool!r}) must be a tuple of bools")
        if len(self.sps_channels) == 0:
            raise NmcDeployError(f"{where}: sps_channels is empty; give at least one conv stage")
        if len(self.sps_channels) != len(self.sps_pool):
            raise NmcDeployError(
                f"{where}: len(sps_channels) ({len(self.sps_channels)}) must equal "
                f"len(sps_pool) ({len(self.sps_pool)})")
        if self.sps_channels[-1] != self.embed_dim:
            raise NmcDeployError(
                f"{where}: sps_channels[-1] ({self.sps_channels[-1]}) must equal "
                f"embed_dim ({self.embed_dim})")
        if self.embed_dim % self.num_heads != 0:
            raise NmcDeployError(
                f"{where}: embed_dim ({self.embed_dim}) must be divisible by "
                f"num_heads ({self.num_heads})")
        downsample = 2 ** sum(self.sps_pool)
        if self.img_size % downsample != 0:
            raise NmcDeployError(
                f"{where}: img_size ({self.img_size}) must be divisible by 2**sum(sps_pool) "
                f"({downsample})")
        if self.neuron not in NEURON_KINDS:
            raise NmcDeployError(
                f"{where}: neuron ({self.neuron!r}) must be one of {', '.join(NEURON_KINDS)}")
        self._check_low_rank(where)
        self._check_tokens(where)

    def _check_tokens(self, where: str) -> None:
        keep = self.token_keep
        if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0.0 < keep <= 1.0:
            raise NmcDeployError(f"{where}: token_keep ({keep!r}) must be in (0, 1], the "
                                 "fraction of tokens each selector keeps")
        blocks = self.token_blocks
        if not isinstance(blocks, tuple) or not all(
                isinstance(b, int) and not isinstance(b, bool) for b in blocks):
            raise NmcDeployError(f"{where}: token_blocks ({blocks!r}) must be a tuple of block "
                                 "indices")
        if list(blocks) != sorted(set(blocks)) or any(not 0 <= b < self.depth for b in blocks):
            raise NmcDeployError(f"{where}: token_blocks ({blocks!r}) must be distinct increasing "
                                 f"block indices in 0..{self.depth - 1}")
        if keep < 1.0 and not blocks:
            raise NmcDeployError(f"{where}: token_keep ({keep}) < 1 needs token_blocks (the "
                                 "blocks that get a token selector)")

    def kept_tokens(self, p: int) -> int:
        """Tokens kept by the ``p``-th selector (1-based): ``max(1, floor(N r**p))``.

        One schedule for training targets and inference (rho_p = r**p), relative to the
        original N, as SparseSpikformer's ``token_ratio``.
        """
        return max(1, int(math.floor(self.num_tokens * self.token_keep ** p + 1e-9)))

    def _check_low_rank(self, where: str) -> None:
        if not isinstance(self.low_rank, tuple):
            raise NmcDeployError(
                f"{where}: low_rank ({self.low_rank!r}) must be a tuple of (path, rank) pairs")
        shapes = block_matrix_paths(self)
        seen = set()
        for item in self.low_rank:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
                    and isinstance(item[1], int) and not isinstance(item[1], bool)):
                raise NmcDeployError(
                    f"{where}: low_rank entry ({item!r}) must be a (path, rank) pair")
            path, rank = item
            if path not in shapes:
                raise NmcDeployError(
                    f"{where}: low_rank path '{path}' is not a block matrix; use e.g. "
                    f"'blocks.0.attn.q_linear' or 'blocks.0.mlp.fc1_linear' (depth {self.depth})")
            if path in seen:
                raise NmcDeployError(f"{where}: low_rank path '{path}' is given twice")
            seen.add(path)
            max_rank = min(shapes[path])
            if not 1 <= rank <= max_rank:
                raise NmcDeployError(
                    f"{where}: low_rank rank of '{path}' ({rank}) must be in 1..{max_rank}")

    @property
    def token_size(self) -> int:
        """Height (= width) of the token grid after SPS, in tokens."""
        return self.img_size // 2 ** sum(self.sps_pool)

    @property
    def num_tokens(self) -> int:
        """N, tokens per image: ``(img_size / 2**sum(sps_pool))**2``."""
        return self.token_size ** 2

    @property
    def head_dim(self) -> int:
        """d = D / h, channels per attention head."""
        return self.embed_dim // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the fields (tuples become lists).

        ``low_rank`` and ``neuron`` are left out while they hold their defaults, so the
        dict (and checkpoints and graph metadata) of a plain model is unchanged.
        """
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _OMITTED_AT_DEFAULT and value == f.default:
                continue
            if f.name == "low_rank":
                out[f.name] = [[path, rank] for path, rank in value]
            else:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SpikformerConfig":
        """Build a config from :meth:`to_dict` output; missing fields take their defaults.

        Raises
        ------
        CheckpointError
            If ``d`` is not a dict or holds a key that is not a field.
        NmcDeployError
            If the values are inconsistent.
        """
        if not isinstance(d, dict):
            raise CheckpointError(
                f"SpikformerConfig: expected a dict, got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        for key in d:
            if key not in names:
                raise CheckpointError(
                    f"SpikformerConfig: unknown key '{key}'; known keys are {', '.join(names)}")
        kwargs = dict(d)
        for key in ("sps_channels", "sps_pool", "token_blocks"):
            if isinstance(kwargs.get(key), list):
                kwargs[key] = tuple(kwargs[key])
        if isinstance(kwargs.get("low_rank"), (list, tuple)):
            kwargs["low_rank"] = tuple(
                tuple(item) if isinstance(item, (list, tuple)) else item
                for item in kwargs["low_rank"])
        for key in ("attn_scale", "tau", "v_threshold", "attn_v_threshold", "token_keep"):
            value = kwargs.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                kwargs[key] = float(value)
        return cls(**kwargs)


_OMITTED_AT_DEFAULT = ("low_rank", "neuron", "token_keep", "token_blocks")


def block_matrix_paths(cfg: SpikformerConfig) -> dict[str, tuple[int, int]]:
    """Module path -> ``(out_features, in_features)`` of every block weight matrix.

    These are the q/k/v/proj linears of every SSA and fc1/fc2 of every MLP, the matrices
    that L1P prunes and DSP factorises, in model order.
    """
    d, hidden = cfg.embed_dim, cfg.embed_dim * cfg.mlp_ratio
    out = {}
    for i in range(cfg.depth):
        for key in ("q", "k", "v", "proj"):
            out[f"blocks.{i}.attn.{key}_linear"] = (d, d)
        out[f"blocks.{i}.mlp.fc1_linear"] = (hidden, d)
        out[f"blocks.{i}.mlp.fc2_linear"] = (d, hidden)
    return out


@dataclass(frozen=True)
class PaperShape:
    """Input and SPS shape of one official code variant (docs: spikformer-and-pruning.md
    sections 1.3, 1.4, 1.8 and checkpoint-import.md, "Variants")."""

    img_size: int  # input height = width, pixels
    in_channels: int  # 3 RGB, 2 DVS polarities
    time_steps: int  # T: repeated image (cifar, imagenet) or event frames (dvs)
    num_classes: int
    sps_pool: tuple[bool, ...]  # MaxPool(3, 2, 1) after each of the 4 SPS stages
    attn_scale: float  # s of the official code


# The official variants' shapes. CIFAR: 32x32x3, T = 4, pools after stages 3 and 4 -> 64
# tokens; ImageNet: 224x224x3, T = 4, pools after every stage -> 196 tokens; CIFAR10-DVS:
# 128x128x2, 16 frames, pools after every stage -> 64 tokens, scale 0.25.
PAPER_SHAPES: dict[str, PaperShape] = {
    "cifar": PaperShape(32, 3, 4, 10, (False, False, True, True), 0.125),
    "imagenet": PaperShape(224, 3, 4, 1000, (True, True, True, True), 0.125),
    "dvs": PaperShape(128, 2, 16, 10, (True, True, True, True), 0.25),
}


def paper_config(variant: str, *, embed_dim: int, depth: int, num_heads: int,
                 **overrides: Any) -> SpikformerConfig:
    """An official-shaped :class:`SpikformerConfig`: the variant's input, T, pooling and
    scale (:data:`PAPER_SHAPES`), SPS channels ``D/8, D/4, D/2, D``, mlp_ratio 4.

    ``overrides`` replace any field (e.g. ``img_size=16`` for a reduced test model,
    ``num_classes``, ``token_keep``/``token_blocks``).

    Raises
    ------
    NmcDeployError
        If ``variant`` is unknown, ``embed_dim`` is not a multiple of 8 or the fields are
        inconsistent.
    """
    if variant not in PAPER_SHAPES:
        raise NmcDeployError(f"paper_config: variant ({variant!r}) is unknown; choose one of "
                             f"{', '.join(PAPER_SHAPES)}")
    if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim < 8 \
            or embed_dim % 8:
        raise NmcDeployError(f"paper_config: embed_dim ({embed_dim!r}) must be a positive "
                             "multiple of 8 (SPS channels D/8, D/4, D/2, D)")
    shape = PAPER_SHAPES[variant]
    fields = dict(img_size=shape.img_size, in_channels=shape.in_channels,
                  num_classes=shape.num_classes, embed_dim=embed_dim, num_heads=num_heads,
                  depth=depth, mlp_ratio=4, time_steps=shape.time_steps,
                  sps_channels=(embed_dim // 8, embed_dim // 4, embed_dim // 2, embed_dim),
                  sps_pool=shape.sps_pool, attn_scale=shape.attn_scale)
    fields.update(overrides)
    return SpikformerConfig(**fields)


PRESETS: dict[str, SpikformerConfig] = {
    # 8x8 digits: SPS 1->16->32(pool)->32 channels, 16 tokens of D=32, 2 blocks, T=4.
    # The wider SPS (the dataclass default is 8->16->32) lifts float test accuracy from
    # ~97 % (95.8-98.6 % over seeds 0-4, 40-60 epochs) to 98.1-100 % in 30 epochs.
    # LIF neurons per time step: SPS 16*64 + 32*64 (before the pool) + 32*16 + RPE 32*16
    # = 4096; per block 4*512 (q, k, v, proj) + 512 (attn) + 2048 (fc1) + 512 (fc2) = 5120;
    # total 14336.
    "digits": SpikformerConfig(sps_channels=(16, 32, 32)),
    # A minimal model for tests and smoke runs (2 time steps, one block, D=16).
    "tiny": SpikformerConfig(embed_dim=16, num_heads=2, depth=1, mlp_ratio=2, time_steps=2,
                             sps_channels=(4, 16), sps_pool=(True, False)),
    # The papers' models (docs: spikformer-and-pruning.md sections 1.7-1.9, 2.1, 2.2): shapes
    # only, no data needed. Spikformer-4-384 on CIFAR-10: 32x32x3, T = 4, 12 heads (d = 32),
    # 64 tokens, 9.33 M parameters.
    "cifar10-4-384": paper_config("cifar", embed_dim=384, depth=4, num_heads=12),
    # Spikformer-8-512 on ImageNet: 224x224x3, T = 4, 8 heads (d = 64), 196 tokens, 1000
    # classes, 29.7 M parameters.
    "imagenet-8-512": paper_config("imagenet", embed_dim=512, depth=8, num_heads=8),
    # Spikformer-2-256 on CIFAR10-DVS: 128x128x2, 16 frames, 16 heads (d = 16), 64 tokens.
    "cifar10dvs-2-256": paper_config("dvs", embed_dim=256, depth=2, num_heads=16),
    # SparseSpikformer's token-pruned releases: selectors before blocks 1, 2, 3 (the release's
    # pruning_loc = [1, 2, 3], as the importer places P = 3 selectors in 4 blocks), inference
    # keep ratio r**p: CIFAR-10 4-384 r = 0.9 (57, 51, 46 of 64 tokens), CIFAR10-DVS 4-256
    # r = 0.8 (51, 40, 32), DVS128 Gesture 4-256 (11 classes) r = 0.5 (32, 16, 8).
    "sparse-cifar10-4-384": paper_config("cifar", embed_dim=384, depth=4, num_heads=12,
                                         token_keep=0.9, token_blocks=(1, 2, 3)),
    "sparse-cifar10dvs-4-256": paper_config("dvs", embed_dim=256, depth=4, num_heads=16,
                                            token_keep=0.8, token_blocks=(1, 2, 3)),
    "sparse-dvs128-4-256": paper_config("dvs", embed_dim=256, depth=4, num_heads=16,
                                        num_classes=11, token_keep=0.5,
                                        token_blocks=(1, 2, 3)),
}

# The official code variant of each paper preset (its key layout and forward pass).
PRESET_VARIANTS: dict[str, str] = {
    "cifar10-4-384": "cifar", "imagenet-8-512": "imagenet", "cifar10dvs-2-256": "dvs",
    "sparse-cifar10-4-384": "cifar", "sparse-cifar10dvs-4-256": "dvs",
    "sparse-dvs128-4-256": "dvs",
}


def preset_config(name: str) -> SpikformerConfig:
    """Return the preset configuration called ``name``.

    Raises
    ------
    NmcDeployError
        If there is no such preset.
    """
    if name not in PRESETS:
        raise NmcDeployError(
            f"preset '{name}': unknown; choose one of {', '.join(sorted(PRESETS))}")
    return PRESETS[name]
