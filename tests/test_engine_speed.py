"""The engine's fast paths compute exactly what the plain numpy forms they replace compute."""

import numpy as np
from conftest import simulate, tiny_world

from critmin.core import rules


def test_sum_over_origins_is_bit_for_bit_the_numpy_sum():
    rng = np.random.default_rng(0)
    for shape in [(1, 9, 9, 5), (3, 40, 40, 5), (2, 7, 7, 2)]:  # small: numpy; large: bincount
        x = rng.random(shape) * (rng.random(shape) > 0.3)
        assert np.array_equal(rules.sum_over_origins(x), x.sum(axis=-2, keepdims=True))


def test_ratio_or_matches_np_where_and_does_not_warn():
    num = np.array([1.0, 2.0, 3.0, 0.0, 5.0])
    den = np.array([2.0, 0.0, -1.0, 0.0, 3.0])
    with np.errstate(all="raise"):
        got = rules.ratio_or(num, den, 7.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        want = np.where(den > 0, num / den, 7.0)
    assert np.array_equal(got, want)


def test_stock_views_share_their_arrays():
    """The tick updates a stock and its provenance part through one array: the names must stay views."""
    _, sim, _ = simulate(tiny_world(), weeks=6)
    assert np.shares_memory(sim.in_stock, sim.ins) and np.shares_memory(sim.in_prov, sim.ins)
    assert np.shares_memory(sim.out_stock, sim.outs) and np.shares_memory(sim.pipe, sim.pipes)
    assert np.shares_memory(sim.use_exp, sim.expected)
    np.testing.assert_array_equal(sim.prices, np.exp(sim.log_price.reshape(sim.R, -1)))
