"""PruneRequest: every bad request is one line before any work; defaults are recorded."""
import pytest

from nmc_deploy.errors import NmcDeployError
from nmc_deploy.prune.request import PRUNE_METHODS, PruneRequest


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "magic"}, "unknown method 'magic'"),
    ({"method": "l1p", "token_keep": 1.0}, r"token keep ratio \(1.0\) must be in \(0, 1\)"),
    ({"method": "none"}, "method 'none' prunes nothing"),
    ({"method": "l1p", "token_keep": 0.5, "token_blocks": "0,x"}, "comma-separated"),
    ({"method": "l1p", "sparsity": 1.0}, r"sparsity \(1.0\) must be in \[0, 1\)"),
    ({"method": "dsp", "rank_budget": 0.0}, r"rank budget \(0.0\) must be in \(0, 1\]"),
])
def test_bad_requests_fail_in_one_line(kwargs, message):
    with pytest.raises(NmcDeployError, match=message) as exc:
        PruneRequest(**kwargs)
    assert "\n" not in str(exc.value)


def test_defaults_are_filled_in_and_blocks_parsed():
    assert PruneRequest(method="l1p").sparsity == 0.9
    assert PruneRequest(method="lth").sparsity == 0.9
    assert PruneRequest(method="dsp").energy == 0.9
    assert PruneRequest(method="dsp", rank_budget=0.5).energy is None
    r = PruneRequest(method="none", token_keep=0.7, token_blocks="1, 2")
    assert r.token_blocks == (1, 2) and r.selector_blocks(4) == (1, 2)
    assert PruneRequest(method="none", token_keep=0.7).selector_blocks(3) == (0, 1, 2)
    assert set(PRUNE_METHODS) == {"lth", "l1p", "dsp", "none"}
