"""IR node arrays are read-only and never alias an array someone else can still write."""
import dataclasses

import numpy as np

from nmc_deploy.ir import LIF, Affine


def test_a_writable_array_is_copied_and_frozen():
    w = np.ones((2, 3))
    node = Affine(weight=w, bias=np.zeros(2))
    assert node.weight is not w and not node.weight.flags.writeable
    w[0, 0] = 5.0
    assert node.weight[0, 0] == 1.0


def test_a_frozen_array_is_shared_not_copied():
    node = Affine(weight=np.ones((2, 3)), bias=np.zeros(2))
    again = dataclasses.replace(node, bias=np.ones(2))
    assert again.weight is node.weight  # frozen already: nothing can write to it
    fresh = np.arange(1.0, 5.0)
    fresh.setflags(write=False)  # as the NIR reader leaves arrays it read from a file
    lif = LIF(tau=fresh, r=np.ones(4), v_leak=np.zeros(4), v_threshold=np.ones(4),
              v_reset=np.zeros(4))
    assert lif.tau is fresh


def test_a_read_only_view_of_a_writable_array_is_copied():
    base = np.ones(4)
    view = base[:]
    view.setflags(write=False)
    lif = LIF(tau=view, r=np.ones(4), v_leak=np.zeros(4), v_threshold=np.ones(4),
              v_reset=np.zeros(4))
    base[0] = 7.0  # the view does not own its memory: the node holds a copy
    assert lif.tau[0] == 1.0
    as_int = np.arange(3)
    as_int.setflags(write=False)
    assert LIF(tau=as_int + 1, r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3),
               v_reset=np.zeros(3)).tau.dtype == np.float64
