"""program/io.py: the program directory round trips, written atomically, with one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from nmc_deploy.program.shared_weights import as_csr

from nmc_deploy.errors import InputFileError
from nmc_deploy.program import (PROGRAM_FORMAT, Population, Program, load_activity,
                                load_placement_summary, load_program, save_program)


def _assert_same_program(a: Program, b: Program) -> None:
    assert (a.input_shape, a.input_levels, a.time_steps) == (b.input_shape, b.input_levels,
                                                             b.time_steps)
    assert a.metadata == b.metadata
    assert a.attention == b.attention
    assert len(a.populations) == len(b.populations)
    for p, q in zip(a.populations, b.populations):
        for f in Population.__dataclass_fields__:
            assert np.array_equal(np.asarray(getattr(p, f)), np.asarray(getattr(q, f))), f
    assert len(a.groups) == len(b.groups)
    for g, h in zip(a.groups, b.groups):
        assert (g.name, g.source, g.target, g.weight_exp, g.num_message_bits, g.delay, g.layer,
                g.kind, g.lag) == (h.name, h.source, h.target, h.weight_exp,
                                   h.num_message_bits, h.delay, h.layer, h.kind, h.lag)
        assert type(g.weights) is type(h.weights)
        assert (as_csr(g.weights) != as_csr(h.weights)).nnz == 0
    assert a.readout.weights.keys() == b.readout.weights.keys()
    for k in a.readout.weights:
        assert (sp.csr_matrix(a.readout.weights[k]) != b.readout.weights[k]).nnz == 0
    assert np.array_equal(a.readout.bias, b.readout.bias)
    assert (a.readout.scale, a.readout.num_outputs, a.readout.cumulative) == \
        (b.readout.scale, b.readout.num_outputs, b.readout.cumulative)


def test_save_load_round_trip(tiny_program, tmp_path):
    save_program(tiny_program, tmp_path / "a")
    loaded = load_program(tmp_path / "a")
    _assert_same_program(tiny_program, loaded)
    # saving what was loaded gives the same manifest, byte for byte, and the same arrays
    save_program(loaded, tmp_path / "b")
    assert (tmp_path / "a" / "program.json").read_bytes() == \
        (tmp_path / "b" / "program.json").read_bytes()
    with np.load(tmp_path / "a" / "program.npz") as x, np.load(tmp_path / "b" / "program.npz") as y:
        assert sorted(x.files) == sorted(y.files)
        for k in x.files:
            assert x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k]), k
    manifest = json.loads((tmp_path / "a" / "program.json").read_text())
    assert manifest["format"] == PROGRAM_FORMAT
    # atomic writes leave no temporary files behind
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["program.json", "program.npz"]


def test_save_overwrites_in_place(tiny_program, tmp_path):
    save_program(tiny_program, tmp_path)
    first = (tmp_path / "program.json").read_bytes()
    save_program(tiny_program, tmp_path)
    assert (tmp_path / "program.json").read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["program.json", "program.npz"]


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "nope", "no such directory"),
    (lambda d: (d / "f").write_text("x") and d / "f", "not a directory"),
    (lambda d: d, r"no compiled program \(program.json/program.npz missing\)"),
])
def test_load_program_errors(tmp_path, make, message):
    with pytest.raises(InputFileError, match=message):
        load_program(make(tmp_path))


def test_load_program_corrupt(tiny_program, tmp_path):
    save_program(tiny_program, tmp_path)
    (tmp_path / "program.json").write_text('{"format": "other"}')
    with pytest.raises(InputFileError, match=r"program.json: format \('other'\) is not "
                                             r"'nmc-deploy-program'; give the program.json"):
        load_program(tmp_path)


def test_missing_placement_and_activity(tmp_path):
    with pytest.raises(InputFileError) as exc:
        load_placement_summary(tmp_path)
    assert str(exc.value) == f"{tmp_path}: placement.json missing; run `nmc-deploy compile` again"
    with pytest.raises(InputFileError) as exc:
        load_activity(tmp_path, "lava")
    assert str(exc.value) == (f"{tmp_path / 'activity_lava.json'}: no simulated activity; run "
                              f"`nmc-deploy simulate {tmp_path} --backend reference` first")


def test_source_kinds_name_every_group_source_once(tiny_program):
    from nmc_deploy.program import CONST, INPUT, SourceKind

    kinds = tiny_program.source_kinds()
    assert kinds[INPUT] is SourceKind.INPUT and kinds[CONST] is SourceKind.CONST
    assert {g.source for g in tiny_program.groups} <= set(kinds)
    assert {n for n, k in kinds.items() if k is SourceKind.ATTENTION} == \
        {op.name for op in tiny_program.attention}
    assert {n for n, k in kinds.items() if k is SourceKind.POPULATION} == \
        {p.name for p in tiny_program.populations}
    for g in tiny_program.groups:  # depth and size agree with the kind
        assert tiny_program.source_size(g.source) == g.weights.shape[1]


def test_readout_matrix_shared_by_sources_is_stored_once(tiny_program, tmp_path):
    """A head read by every population of a fan-in stream (one matrix, several sources) is
    written once and read back as one matrix with the same values."""
    import dataclasses

    from nmc_deploy.program import load_program, save_program

    ro = tiny_program.readout
    (first, m), *_ = ro.weights.items()
    others = [p.name for p in tiny_program.populations
              if p.size == m.shape[1] and p.name != first and p.spiking][:2]
    assert others
    shared = {first: m, **{name: m for name in others}}
    program = dataclasses.replace(tiny_program, readout=dataclasses.replace(ro, weights=shared))
    save_program(program, tmp_path)
    keys = [w["key"] for w in json.loads((tmp_path / "program.json").read_text())
            ["readout"]["weights"].values()]
    assert len(keys) == 1 + len(others) and len(set(keys)) == 1
    loaded = load_program(tmp_path).readout.weights
    assert len({id(w) for w in loaded.values()}) == 1
    assert (loaded[first] != as_csr(m)).nnz == 0
