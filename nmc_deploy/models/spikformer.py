"""Spikformer (Zhou et al., ICLR 2023), sized for small images.

The module structure follows the official CIFAR code (docs: spikformer-and-pruning.md
sections 1.2-1.6): spiking patch splitting (SPS) with a relative-position-embedding conv,
``depth`` blocks of spiking self-attention (SSA, no softmax) and a spiking MLP joined by
additive residuals (no LayerNorm), then token- and time-averaging and a linear head.

The attribute names of every module (``convs``, ``q_linear``, ``attn_lif`` ...) are part
of the interface: the exporter reads them.

Shapes: ``T`` time steps, ``B`` batch, ``N`` tokens, ``D`` embedding channels,
``h`` heads of ``d = D / h`` channels each.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NmcDeployError
from .config import (NEURON_KINDS, PRESETS, SpikformerConfig, block_matrix_paths,  # noqa: F401
                     preset_config)
from .lif import SLIF, MultiStepLIF

__all__ = [
    "SpikformerConfig", "PRESETS", "preset_config", "SPS", "SSA", "MLP", "Block", "Spikformer",
    "LowRankLinear", "NEURON_KINDS", "block_matrix_paths", "TokenPredictor", "TOKEN_MODES",
    "token_scores", "topk_keep_mask", "topk_token_index",
]

def _bn_over_rows(bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a BatchNorm1d over the last axis of ``x``, all other axes being rows."""
    return bn(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def _neuron(cfg: SpikformerConfig, slif: bool, channels: int, channel_dim: int,
            v_threshold: float) -> nn.Module:
    """A MultiStepLIF, or an SLIF initialised to the same dynamics when ``slif``."""
    if slif:
        return SLIF(channels, cfg.tau, v_threshold, channel_dim)
    return MultiStepLIF(cfg.tau, v_threshold)


class LowRankLinear(nn.Module):
    r"""A linear map factorised through ``rank`` channels: ``up(down(x))``.

    .. math::

        y = U (V x) + b, \qquad V \in \mathbb{R}^{r \times n_{in}},\;
        U \in \mathbb{R}^{n_{out} \times r}

    Stands in for an ``nn.Linear(in_features, out_features)`` (same call signature, and
    ``weight`` / ``bias`` give the equivalent dense matrix and bias), with
    ``rank * (in_features + out_features)`` instead of ``in_features * out_features``
    weights.

    Attributes
    ----------
    down : nn.Linear
        ``in_features -> rank``, no bias.
    up : nn.Linear
        ``rank -> out_features``, with the bias.
    """

    def __init__(self, in_features: int, out_features: int, rank: int):
        super().__init__()
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise NmcDeployError(f"LowRankLinear: rank ({rank!r}) must be a positive integer")
        self.in_features = in_features
        self.out_features = out_features
        self.rank = rank
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=True)

    @property
    def weight(self) -> torch.Tensor:
        """The equivalent dense matrix ``up.weight @ down.weight``, ``(out, in)``."""
        return self.up.weight @ self.down.weight

    @property
    def bias(self) -> torch.Tensor:
        """The bias, ``up.bias``."""
        return self.up.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"rank={self.rank}")


class SPS(nn.Module):
    r"""Spiking patch splitting: conv stages, then a relative-position-embedding conv.

    For stage ``i`` (conv 3x3, stride 1, padding 1, no bias)::

        x = pool_i( LIF_i( BN_i( conv_i(x) ) ) )     # pool_i: MaxPool(3, 2, 1) or identity
        x = x + LIF_rpe( BN_rpe( conv_rpe(x) ) )     # after the last stage; values in {0, 1, 2}

    Convs, BN and pooling act on the flattened ``(T*B, C, H, W)`` tensor (BN statistics are
    shared over time), the LIFs on ``(T, B, C, H, W)``. The output is the token sequence
    ``(T, B, N, D)`` with token ``n = row * W + col``.
    """

    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        channels = (cfg.in_channels, *cfg.sps_channels)
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1, bias=False)
            for c_in, c_out in zip(channels[:-1], channels[1:]))
        self.bns = nn.ModuleList(nn.BatchNorm2d(c) for c in cfg.sps_channels)
        slif = cfg.neuron == "slif_all"
        self.lifs = nn.ModuleList(
            _neuron(cfg, slif, c, 2, cfg.v_threshold) for c in cfg.sps_channels)
        self.pools = nn.ModuleList(
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if pool else nn.Identity()
            for pool in cfg.sps_pool)
        d = cfg.embed_dim
        self.rpe_conv = nn.Conv2d(d, d, kernel_size=3, stride=1, padding=1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(d)
        self.rpe_lif = _neuron(cfg, slif, d, 2, cfg.v_threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(T, B, C, H, W)`` images to ``(T, B, N, D)`` tokens."""
        t, b = x.shape[:2]
        for conv, bn, lif, pool in zip(self.convs, self.bns, self.lifs, self.pools):
            y = bn(conv(x.flatten(0, 1)))
            y = lif(y.reshape(t, b, *y.shape[1:]))
            y = pool(y.flatten(0, 1))
            x = y.reshape(t, b, *y.shape[1:])
        x_feat = x
        y = self.rpe_bn(self.rpe_conv(x.flatten(0, 1)))
        x = self.rpe_lif(y.reshape(x.shape)) + x_feat
        # (T, B, D, H, W) -> (T, B, D, N) -> (T, B, N, D), n = row * W + col
        return x.flatten(-2).transpose(-1, -2).contiguous()


class SSA(nn.Module):
    r"""Spiking self-attention without softmax.

    .. math::

        Q = \mathrm{LIF}(\mathrm{BN}(X W_Q^T + b_Q)), \; K, V \text{ alike}, \qquad
        Y_h = \mathrm{LIF}_{attn}\big( (Q_h K_h^T \cdot s)\, V_h \big), \qquad
        \mathrm{out} = \mathrm{LIF}(\mathrm{BN}(Y W_O^T + b_O))

    Head ``h`` holds channels ``h*d .. h*d + d - 1``; BN1d normalises each channel over all
    ``T*B*N`` rows; ``LIF_attn`` uses ``attn_v_threshold``.
    """

    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        d = cfg.embed_dim
        self.num_heads = cfg.num_heads
        self.scale = float(cfg.attn_scale)
        self.q_linear = nn.Linear(d, d, bias=True)
        self.k_linear = nn.Linear(d, d, bias=True)
        self.v_linear = nn.Linear(d, d, bias=True)
        self.proj_linear = nn.Linear(d, d, bias=True)
        self.q_bn = nn.BatchNorm1d(d)
        self.k_bn = nn.BatchNorm1d(d)
        self.v_bn = nn.BatchNorm1d(d)
        self.proj_bn = nn.BatchNorm1d(d)
        slif = cfg.neuron in ("slif_blocks", "slif_all")
        self.q_lif = _neuron(cfg, slif, d, -1, cfg.v_threshold)
        self.k_lif = _neuron(cfg, slif, d, -1, cfg.v_threshold)
        self.v_lif = _neuron(cfg, slif, d, -1, cfg.v_threshold)
        self.proj_lif = _neuron(cfg, slif, d, -1, cfg.v_threshold)
        self.attn_lif = _neuron(cfg, slif, d, -1, cfg.attn_v_threshold)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        t, b, n, d = x.shape
        return x.reshape(t, b, n, self.num_heads, d // self.num_heads).transpose(2, 3)

    def forward(self, x: torch.Tensor, policy: torch.Tensor | None = None) -> torch.Tensor:
        """Map ``(T, B, N, D)`` to ``(T, B, N, D)`` spikes.

        ``policy`` (B, N), 1 = kept token, masks the attention map as SparseSpikformer's
        training pass: ``M[i, j] = policy[j] + (1 - policy[j]) [i == j]`` (kept keys are seen
        by every query, a dropped token only sees itself), ``attn = attn * M``.
        """
        q = self.q_lif(_bn_over_rows(self.q_bn, self.q_linear(x)))
        k = self.k_lif(_bn_over_rows(self.k_bn, self.k_linear(x)))
        v = self.v_lif(_bn_over_rows(self.v_bn, self.v_linear(x)))
        q, k, v = self._split_heads(q), self._split_heads(k), self._split_heads(v)
        attn = (q @ k.transpose(-2, -1)) * self.scale  # (T, B, h, N, N)
        if policy is not None:
            n = policy.shape[1]
            eye = torch.eye(n, dtype=attn.dtype, device=attn.device)
            keep_j = policy[:, None, :].to(attn.dtype)  # (B, 1, N): column j
            mask = keep_j + (1.0 - keep_j) * eye  # (B, N, N)
            attn = attn * mask[None, :, None]
        y = attn @ v  # (T, B, h, N, d)
        y = y.transpose(2, 3).reshape(x.shape)  # channel = head * d + j
        y = self.attn_lif(y)
        return self.proj_lif(_bn_over_rows(self.proj_bn, self.proj_linear(y)))


class MLP(nn.Module):
    """Two spiking linear layers: ``LIF(BN(fc2(LIF(BN(fc1(x))))))``, D -> mlp_ratio*D -> D."""

    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        d, hidden = cfg.embed_dim, cfg.embed_dim * cfg.mlp_ratio
        slif = cfg.neuron in ("slif_blocks", "slif_all")
        self.fc1_linear = nn.Linear(d, hidden)
        self.fc1_bn = nn.BatchNorm1d(hidden)
        self.fc1_lif = _neuron(cfg, slif, hidden, -1, cfg.v_threshold)
        self.fc2_linear = nn.Linear(hidden, d)
        self.fc2_bn = nn.BatchNorm1d(d)
        self.fc2_lif = _neuron(cfg, slif, d, -1, cfg.v_threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(T, B, N, D)`` to ``(T, B, N, D)`` spikes."""
        x = self.fc1_lif(_bn_over_rows(self.fc1_bn, self.fc1_linear(x)))
        return self.fc2_lif(_bn_over_rows(self.fc2_bn, self.fc2_linear(x)))


class Block(nn.Module):
    """One transformer block with additive residuals: ``x += SSA(x); x += MLP(x)``."""

    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        self.attn = SSA(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, policy: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(x, policy)
        return x + self.mlp(x)


class TokenPredictor(nn.Module):
    r"""SparseSpikformer's token selector: ``Linear(D, D/2) -> GELU -> Linear(D/2, 2)``.

    Input: the previous block's output averaged over time, ``(B, N, D)`` (average firing
    rate per token and channel). Output: logits ``(B, N, 2)``, index 0 = keep. A token's
    score is ``logit_0 - logit_1``, which orders tokens as ``log p(keep)`` does.
    """

    def __init__(self, dim: int):
        super().__init__()
        hidden = max(1, dim // 2)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, 2)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(feat)))


TOKEN_MODES = ("gumbel", "mask", "remove")


def token_scores(logits: torch.Tensor) -> torch.Tensor:
    """Score of every token, ``logit_keep - logit_drop`` (B, N)."""
    return logits[..., 0] - logits[..., 1]


def topk_keep_mask(scores: torch.Tensor, k: int, prev: torch.Tensor | None = None) -> torch.Tensor:
    """(B, N) 0/1 mask of the ``k`` highest scores among tokens with ``prev == 1``.

    Ties go to the lower token index (stable sort), as :func:`topk_token_index`.
    """
    if prev is not None:
        scores = scores.masked_fill(prev <= 0, float("-inf"))
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    mask = torch.zeros_like(scores).scatter(1, order, 1.0)
    return mask if prev is None else mask * (prev > 0).to(mask.dtype)


def topk_token_index(scores: torch.Tensor, k: int) -> torch.Tensor:
    """(B, k) positions of the ``k`` highest scores, in increasing position order."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    return torch.sort(order, dim=1).values


class Spikformer(nn.Module):
    """Spikformer classifier: SPS, ``depth`` blocks, mean over tokens and time, linear head.

    Parameters
    ----------
    cfg : SpikformerConfig
        Model hyper-parameters (kept as the ``config`` attribute).

    Notes
    -----
    Initialisation as the official code: ``nn.Linear`` weights truncated-normal with
    std 0.02 and zero bias; convs and BN keep PyTorch defaults.

    ``cfg.low_rank`` paths are :class:`LowRankLinear` modules (under the same attribute
    names, so BN/LIF wiring is unchanged) and ``cfg.neuron`` selects where :class:`SLIF`
    neurons replace :class:`MultiStepLIF`; both only matter for loading pruned models,
    whose weights then come from a checkpoint.
    """

    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        if not isinstance(cfg, SpikformerConfig):
            raise NmcDeployError(
                f"Spikformer: expected a SpikformerConfig, got {type(cfg).__name__}")
        self.config = cfg
        self.patch_embed = SPS(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes)
        self.token_predictors = nn.ModuleList(
            TokenPredictor(cfg.embed_dim) for _ in cfg.token_blocks)
        # None: "gumbel" in train mode, "remove" in eval mode (see forward_features)
        self.token_mode: str | None = None
        self.token_keep_masks: list[torch.Tensor] = []  # per selector, (B, N), last forward
        self.token_index: list[torch.Tensor] = []  # per selector, (B, k_p) original positions
        for path, rank in cfg.low_rank:
            parent_path, _, name = path.rpartition(".")
            dense = self.get_submodule(path)
            setattr(self.get_submodule(parent_path), name,
                    LowRankLinear(dense.in_features, dense.out_features, rank))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def embed(self, img: torch.Tensor) -> torch.Tensor:
        """Token stream ``(T, B, N, D)`` of float images ``(B, C, H, W)``: the image is
        repeated T times (direct encoding) and split into tokens by :class:`SPS`."""
        cfg = self.config
        expected = (cfg.in_channels, cfg.img_size, cfg.img_size)
        if img.ndim != 4 or tuple(img.shape[1:]) != expected:
            raise NmcDeployError(
                f"Spikformer: input shape ({tuple(img.shape)}) must be (B, {expected[0]}, "
                f"{expected[1]}, {expected[2]})")
        return self.patch_embed(img.unsqueeze(0).repeat(cfg.time_steps, 1, 1, 1, 1))

    def forward_features(self, img: torch.Tensor) -> torch.Tensor:
        """Return the residual stream ``(T, B, N, D)`` after the last block."""
        return self.forward_blocks(self.embed(img))[0]

    def forward_blocks(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the blocks on a token stream; before each of ``token_blocks`` a selector decides.

        The ``p``-th selector (p = 1 .. P, before block ``token_blocks[p-1]``) scores every
        token still present from the stream averaged over time, ``x.mean(0)`` (B, N_cur, D),
        with ``token_predictors[p-1]``. Modes (``self.token_mode``; default "gumbel" when
        training, else "remove"):

        * "gumbel" (training, as SparseSpikformer): ``keep = hard Gumbel-softmax(log p)[0]
          * prev`` (straight-through), the block masks attention with it; all tokens stay
          in the tensor.
        * "mask": as "gumbel" but with the deterministic top-k of "remove".
        * "remove" (inference, as the release's eval pass): the ``k_p = cfg.kept_tokens(p)``
          tokens of highest score (:func:`token_scores`; ties to the lower position) are
          gathered, in position order, the others are gone.

        Records per selector ``token_keep_masks`` ("gumbel", "mask": (B, N)) and
        ``token_index`` ("mask", "remove": (B, k_p) original positions of the kept tokens).
        Without ``token_blocks`` the blocks simply run in order.

        Parameters
        ----------
        x : torch.Tensor
            Token stream ``(T, B, N, D)``: :meth:`embed` of images, or ``patch_embed`` of T
            event frames ``(T, B, C, H, W)``.

        Returns
        -------
        x : torch.Tensor
            The stream after the last block, ``(T, B, N_L, D)`` (N_L < N after removal).
        policy : torch.Tensor or None
            (B, N) keep policy of the last selector for the pooling before the head
            ("gumbel", "mask"); None: pool every token present.
        """
        cfg = self.config
        self.token_keep_masks, self.token_index = [], []
        if not cfg.token_blocks:
            for block in self.blocks:
                x = block(x)
            return x, None
        mode = self.token_mode or ("gumbel" if self.training else "remove")
        if mode not in TOKEN_MODES:
            raise NmcDeployError(f"Spikformer: token_mode ({mode!r}) must be one of "
                                 f"{', '.join(TOKEN_MODES)}")
        b, n = x.shape[1], x.shape[2]
        keep = None
        index = torch.arange(n).expand(b, n)
        p = 0
        for i, block in enumerate(self.blocks):
            if i in cfg.token_blocks:
                p += 1
                logits = self.token_predictors[p - 1](x.mean(0))
                if mode == "gumbel":
                    hard = F.gumbel_softmax(F.log_softmax(logits, dim=-1), tau=1.0, hard=True)
                    keep = hard[..., 0] if keep is None else hard[..., 0] * keep
                    self.token_keep_masks.append(keep)
                elif mode == "mask":
                    keep = topk_keep_mask(token_scores(logits).detach(), cfg.kept_tokens(p), keep)
                    self.token_keep_masks.append(keep)
                    self.token_index.append(torch.nonzero(keep > 0)[:, 1].reshape(b, -1))
                else:
                    sel = topk_token_index(token_scores(logits), cfg.kept_tokens(p))
                    x = torch.gather(x, 2, sel[None, :, :, None].expand(
                        x.shape[0], b, sel.shape[1], x.shape[3]))
                    index = torch.gather(index, 1, sel)
                    self.token_index.append(index)
            x = block(x, keep if mode != "remove" else None)
        return x, keep

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, classes)`` of a token stream ``(T, B, N, D)``.

        :meth:`forward_blocks` (with the token selectors), then the mean over time and over
        the tokens present (in "gumbel"/"mask" mode weighted by the keep policy), then the
        head. ``model.forward_tokens(model.patch_embed(frames))`` classifies T event frames
        ``(T, B, C, H, W)``.
        """
        x, policy = self.forward_blocks(x)
        if policy is None:
            return self.head(x.mean(2).mean(0))
        weights = policy / policy.sum(1, keepdim=True).clamp(min=1.0)  # (B, N)
        return self.head((x.mean(0) * weights[..., None]).sum(1))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """Map float images ``(B, C, H, W)`` (already divided by ``levels``) to logits.

        ``forward_tokens(embed(img))``: features are averaged over time and over the tokens
        present (with token selection: the kept tokens; in "gumbel"/"mask" mode weighted by
        the keep policy).
        """
        return self.forward_tokens(self.embed(img))
