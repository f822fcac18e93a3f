"""Shared fixtures: seeded rngs and tiny models/programs (factories, not mocks)."""
import warnings

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def make_tiny_spikformer(seed: int = 0, depth: int = 1, embed_dim: int = 16):
    """A small random Spikformer whose BatchNorms make every layer fire (so tests see spikes)."""
    from nmc_deploy.models.spikformer import SpikformerConfig

    cfg = SpikformerConfig(img_size=8, in_channels=1, num_classes=10, embed_dim=embed_dim,
                           num_heads=2, depth=depth, mlp_ratio=2, time_steps=4,
                           sps_channels=(4, 8, embed_dim), sps_pool=(False, True, False))
    return make_active_spikformer(cfg, seed)


def make_token_spikformer(seed: int = 0, keep: float = 0.7, depth: int = 2,
                          blocks: tuple = (0, 1)):
    """A small active Spikformer (16 tokens) with token selectors before ``blocks``."""
    from nmc_deploy.models.spikformer import SpikformerConfig

    cfg = SpikformerConfig(img_size=8, in_channels=1, num_classes=10, embed_dim=16,
                           num_heads=2, depth=depth, mlp_ratio=2, time_steps=4,
                           sps_channels=(4, 8, 16), sps_pool=(False, True, False),
                           token_keep=keep, token_blocks=tuple(blocks))
    return make_active_spikformer(cfg, seed)


def make_active_spikformer(cfg, seed: int = 0):
    """A random Spikformer of ``cfg`` whose weights and BatchNorms make every layer fire."""
    import torch
    from nmc_deploy.models.spikformer import Spikformer

    torch.manual_seed(seed)
    model = Spikformer(cfg)
    gen = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, torch.nn.Linear) and mod is not model.head:
            mod.weight.data.normal_(0.0, 1.0 / mod.in_features ** 0.5, generator=gen)
        if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = mod.num_features
            mod.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
            mod.running_var.copy_(torch.rand(n, generator=gen) * 0.04 + 0.02)
            mod.weight.data.copy_(torch.rand(n, generator=gen) * 0.5 + 0.5)
            mod.bias.data.copy_(torch.rand(n, generator=gen) * 1.2 + 0.3)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model():
    return make_tiny_spikformer()


@pytest.fixture(scope="session")
def tiny_graph(tiny_model):
    from nmc_deploy.export.spikformer import export_spikformer

    return export_spikformer(tiny_model, {"dataset": "digits", "input_levels": 16})


@pytest.fixture(scope="session")
def tiny_program(tiny_graph):
    from nmc_deploy.compile.lower import lower_graph
    from nmc_deploy.compile.quantize import quantize_program

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_program(lower_graph(tiny_graph))


@pytest.fixture(scope="session")
def digits():
    from nmc_deploy.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def small_digits():
    """64 training and 32 test digits (all classes present): for quick training tests."""
    from nmc_deploy.data import ImageDataset, load_dataset

    full = load_dataset("digits")
    return ImageDataset("digits-small", full.x_train[:64].copy(), full.y_train[:64].copy(),
                        full.x_test[:32].copy(), full.y_test[:32].copy(),
                        levels=full.levels, num_classes=full.num_classes)
