"""`nmc-deploy prune` from the command line: bad requests fail in one line, writing nothing."""
import subprocess
import sys

import pytest
import torch


def run(*args):
    r = subprocess.run([sys.executable, "-m", "nmc_deploy.cli", *map(str, args)],
                       capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from conftest import make_tiny_spikformer
    from nmc_deploy.models.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, make_tiny_spikformer(), {"dataset": "digits", "input_levels": 16})
    return path


@pytest.mark.parametrize("args,needle", [
    (["--method", "magic"], "unknown method 'magic'"),
    (["--method", "l1p", "--sparsity", "1.0"], "sparsity (1.0) must be in [0, 1)"),
    (["--method", "lth", "--sparsity", "-0.1"], "sparsity (-0.1) must be in [0, 1)"),
    (["--method", "none", "--token-keep", "1.5"], "token keep ratio (1.5)"),
    (["--method", "none"], "give --token-keep"),
    (["--method", "none", "--token-keep", "0.5", "--token-blocks", "a,b"], "token blocks"),
    (["--method", "none", "--token-keep", "0.5", "--token-blocks", "3"], "token_blocks"),
])
def test_bad_prune_requests_fail_in_one_line(tmp_path, tiny_ckpt, args, needle):
    out = tmp_path / "out.pt"
    rc, stdout, err = run("prune", tiny_ckpt, *args, "-o", out)
    lines = [line for line in err.strip().splitlines() if line]
    assert rc == 1 and "Traceback" not in err + stdout
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_prune_refuses_a_checkpoint_that_is_not_a_spikformer(tmp_path):
    other = tmp_path / "linear.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), other)
    rc, stdout, err = run("prune", other, "--method", "l1p", "-o", tmp_path / "out.pt")
    assert rc == 1 and "Traceback" not in err + stdout
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert not (tmp_path / "out.pt").exists()


def test_prune_adds_trained_token_selectors(tmp_path, tiny_ckpt):
    from nmc_deploy.models.checkpoint import load_checkpoint

    out = tmp_path / "tok.pt"
    rc, stdout, err = run("prune", tiny_ckpt, "--method", "none", "--token-keep", "0.5",
                          "--token-epochs", "1", "-o", out)
    assert rc == 0, err
    model, meta = load_checkpoint(out)
    assert model.config.token_blocks == (0,) and model.config.token_keep == 0.5
    assert meta["pruning"]["token_keep"] == 0.5
