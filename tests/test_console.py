"""The console: results and diagnostics apart, known third-party warnings hidden and counted
(also from forked workers), our own warnings shown."""
import io
import os
import warnings

import pytest

from nmc_deploy.console import (HARMLESS, NORMAL, QUIET, VERBOSE, Console, Result,
                                WarningGate, as_diagnostics, count_hidden, harmless_kind,
                                show_caught)


def _sparse_efficiency_warning():
    """scipy's own warning, raised by scipy: change a CSR matrix's sparsity structure."""
    import scipy.sparse

    m = scipy.sparse.csr_matrix((3, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # as in a fresh worker (its registry is empty)
        m[1, 2] = 1.0


def _kind(name):
    return [k for k, *_ in HARMLESS].index(name)


def test_known_kinds_and_ours():
    from scipy.sparse import SparseEfficiencyWarning

    from nmc_deploy.compile.quantize import QuantizationWarning

    assert harmless_kind("x", SparseEfficiencyWarning, "/s/scipy/sparse/_index.py") == \
        _kind("scipy SparseEfficiencyWarning")
    assert harmless_kind("Cannot import module 'lif' when importing", UserWarning,
                         "/s/lava/magma/compiler/compiler_graphs.py") == \
        _kind("lava 'Cannot import module'")
    assert harmless_kind("`torch.jit.script` is deprecated", DeprecationWarning,
                         "/s/torch/jit/_script.py") == _kind("torch deprecation")
    assert harmless_kind("x", DeprecationWarning, "/s/h5py/_hl/base.py") == \
        _kind("third-party deprecation")
    # ours, and anything not known, are never hidden
    assert harmless_kind("max error 0.400/4096", QuantizationWarning, "/w/nmc_deploy/q.py") is None
    assert harmless_kind("Cannot import module", UserWarning, "/w/nmc_deploy/x.py") is None
    assert harmless_kind("x", DeprecationWarning, "/w/nmc_deploy/x.py") is None
    assert harmless_kind("x", RuntimeWarning, "/s/scipy/optimize/x.py") is None


def test_gate_counts_scipy_warnings_also_of_forked_workers(capfd):
    gate = WarningGate(NORMAL)
    with gate.installed():
        _sparse_efficiency_warning()
        pid = os.fork()
        if pid == 0:  # a worker, as Lava's: inherits the gate, counts into the shared map
            try:
                _sparse_efficiency_warning()
                _sparse_efficiency_warning()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert gate.counts() == {"scipy SparseEfficiencyWarning": 3}
    assert gate.summary() == "3 third-party warnings hidden (1 kind); --verbose shows them"


def test_verbose_shows_them_on_one_line_each():
    stream = io.StringIO()
    gate = WarningGate(VERBOSE, stream)
    with gate.installed():
        _sparse_efficiency_warning()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and "SparseEfficiencyWarning" in lines[0]
    assert gate.summary() == ("1 third-party warning known to be harmless "
                              "(1 kind: scipy SparseEfficiencyWarning)")


def test_our_warnings_pass_through_and_quiet_hides_them():
    from nmc_deploy.compile.quantize import QuantizationWarning

    with warnings.catch_warnings(record=True) as caught:  # the caller's handler
        warnings.simplefilter("always")
        with WarningGate(NORMAL).installed():
            warnings.warn("x: voltage decay rounded", QuantizationWarning)
            _sparse_efficiency_warning()
        with WarningGate(QUIET).installed():
            warnings.warn("hidden by --quiet", QuantizationWarning)
    assert [str(w.message) for w in caught] == ["x: voltage decay rounded"]


def test_show_caught_logs_ours_and_counts_theirs():
    from nmc_deploy.compile.quantize import QuantizationWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("q: current decay rounded", QuantizationWarning)
        _sparse_efficiency_warning()
    lines, gate = [], WarningGate(NORMAL)
    with gate.installed():
        show_caught(caught, lines.append)
    assert lines == ["warning: q: current decay rounded"]
    assert sum(gate.counts().values()) == 1


def test_console_routes_results_and_diagnostics():
    out, err = io.StringIO(), io.StringIO()
    con = Console(NORMAL, out=out, err=err)
    con.log(Result("cores used: 3"))
    con.log("compiling m.nir")
    assert out.getvalue() == "cores used: 3\n" and err.getvalue() == "compiling m.nir\n"
    out, err = io.StringIO(), io.StringIO()
    con = Console(QUIET, as_json=True, out=out, err=err)
    con.log(Result("cores used: 3"))
    con.log("compiling m.nir")
    con.emit_json({"cores_used": 3})
    assert out.getvalue() == '{\n "cores_used": 3\n}\n' and err.getvalue() == ""
    seen = []
    as_diagnostics(seen.append)(Result("table"))
    assert seen == ["table"] and type(seen[0]) is str


def test_session_keeps_stdout_for_results(capfd):
    con = Console(NORMAL)
    with con.session():
        print("a library's print")
        con.log(Result("the result"))
    out, err = capfd.readouterr()
    assert out == "the result\n" and err == "a library's print\n"
    assert "TQDM_DISABLE" not in os.environ or os.environ["TQDM_DISABLE"] != "1"


@pytest.mark.parametrize("alpha", [0.75, 0.875, 0.5])
def test_exact_decays_in_float32_are_not_warned(alpha):
    """float32 alphas on the /4096 grid carry ~1e-4 of noise: no "max error 0.000" warning."""
    import numpy as np

    from nmc_deploy.compile import quantize

    noisy = np.nextafter(np.float32(alpha), np.float32(1))  # one float32 step off the grid
    assert 0 < abs(4096 * (1 - float(noisy)) - round(4096 * (1 - alpha))) < 5e-4
    pop = type("P", (), {"name": "p", "alpha": noisy, "alpha_syn": noisy})
    diag = {"decay_error": {}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dv, du = quantize._voltage_decay(pop, diag), quantize._current_decay(pop, diag)
    assert dv == round(4096 * (1 - alpha)) and du == round(4096 * (1 - alpha)) - 1
    assert diag["decay_error"] == {}
    pop.alpha = np.float32(0.9)  # 409.6: a real rounding, still warned
    with pytest.warns(quantize.QuantizationWarning, match=r"max error 0\.400/4096"):
        quantize._voltage_decay(pop, diag)


def test_the_lava_childs_count_joins_the_active_gate():
    count_hidden(5)  # no gate: nowhere (the Python API)
    gate = WarningGate(NORMAL)
    with gate.installed():
        count_hidden(36)
        count_hidden(0)
    count_hidden(7)
    assert gate.counts() == {"Lava child process": 36}
    assert gate.summary() == "36 third-party warnings hidden (1 kind); --verbose shows them"
    assert harmless_kind("x", UserWarning, "/s/lava/x.py") is None  # never matched itself


def test_quiet_session_prints_results_only(capfd):
    import sys

    con = Console(QUIET)
    with con.session():
        sys.stderr.write("relayed from a child\n")
        con.log("a diagnostic")
        con.log(Result("the result"))
        count_hidden(3)
    out, err = capfd.readouterr()
    assert out == "the result\n" and err == ""
