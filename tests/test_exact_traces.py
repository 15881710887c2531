"""Exact traces on tiny deterministic worlds: every expected number is worked out by hand."""

import calendar
import datetime as dt

import numpy as np
import pytest
from conftest import WEEKS_PER_YEAR, simulate, tiny_world

from critmin.core.calendar import Calendar


def per_week(tonnes_per_week: float) -> float:
    """Capacity in t/yr that makes `tonnes_per_week` each weekly tick."""
    return tonnes_per_week * WEEKS_PER_YEAR


def test_one_mine_one_refinery_one_user_runs_in_exact_steady_state():
    cfg = tiny_world(**{
        "facilities.A_mine.capacity_tpy": per_week(1.0),
        "facilities.A_refinery.capacity_tpy": per_week(1.0),
        "demand.tonnes_per_year": {"A": {"users": per_week(0.5)}},
    })
    world, sim, res = simulate(cfg, weeks=10)
    ore, metal = world.product_index("ore"), world.product_index("metal")
    # 10 weeks: 1 t ore a week mined and refined; 0.5 t metal made and used; nothing unmet
    assert res.production[0, :, 0, ore].sum() == pytest.approx(10.0, abs=1e-9)
    assert res.production[0, :, 0, metal].sum() == pytest.approx(5.0, abs=1e-9)
    assert res.input_use[0, :, 0, ore].sum() == pytest.approx(10.0, abs=1e-9)
    assert res.consumption[0, :, 0, metal].sum() == pytest.approx(5.0, abs=1e-9)
    assert res.unmet.sum() == pytest.approx(0.0, abs=1e-12)
    # stocks stay at target: 14 days = 2 weeks of use on the buy side, 14 days of
    # output on the sell side, so prices never move
    np.testing.assert_allclose(sim.in_stock[0, 0], [2.0, 1.0], atol=1e-9)
    np.testing.assert_allclose(res.price[0, :, 0], np.tile([1.0, 10.0], (res.price.shape[1], 1)),
                               rtol=1e-12)
    # January 2025 has 5 ticks (days 0..28), February the rest; the 70 days are 31 in
    # January, 28 in February and 11 in March
    assert list(res.ticks_in_month) == [5, 4, 1]
    assert list(res.days_in_month) == [31, 28, 11]
    # flows are recorded by day: 1/7 t of ore a day, so each month holds its days' worth
    np.testing.assert_allclose(res.production[0, :, 0, ore], np.array([31, 28, 11]) / 7, rtol=1e-12)


def test_shipment_arrives_after_its_transit_time():
    # A mines, B refines and uses; 14 days = 2 weekly ticks A->B
    cfg = tiny_world(**{
        "regions": {"A": {"name": "A", "market": "m", "zone": "z1"},
                    "B": {"name": "B", "market": "m", "zone": "z2"}},
        "facilities": {
            "A_mine": {"region": "A", "recipe": "mine", "capacity_tpy": per_week(1.0),
                       "utilisation": 1.0},
            "B_refinery": {"region": "B", "recipe": "refine", "capacity_tpy": per_week(1.0),
                           "utilisation": 1.0},
        },
        "demand.tonnes_per_year": {"B": {"users": per_week(0.5)}},
        "trade.transit_days_other_zone": 14.0,
        "trade.flows_tpy": {"ore": {"A->B": 1.0}},
    })
    world, sim, res = simulate(cfg, weeks=8)
    a, b = world.region_index("A"), world.region_index("B")
    ore = world.product_index("ore")
    # two weeks of ore are always on the water
    assert sim.in_transit[0, b, ore] == pytest.approx(2.0, abs=1e-9)
    # every tick ships 1 t from A to B, 1/7 t a day: 31 days of January, and of the fifth
    # tick (28 January to 3 February) the 4 days in February, so 25 days of February
    np.testing.assert_allclose(res.shipments[0, :, b, a, ore], [31 / 7, 25 / 7], atol=1e-9)
    assert res.unmet.sum() == pytest.approx(0.0, abs=1e-12)


def test_missing_capacity_shows_up_as_unmet_demand_once_stocks_run_out():
    # the refinery can make only 0.25 t a week against 0.5 t of demand; metal stock
    # starts at 2 weeks of planned use (1 t of metal). Supply + stock over 10 weeks is
    # 10 * 0.25 + stock, the rest is unmet.
    cfg = tiny_world(**{
        "facilities.A_mine.capacity_tpy": per_week(0.5),
        "facilities.A_refinery.capacity_tpy": per_week(0.5),
        "demand.tonnes_per_year": {"A": {"users": per_week(0.5)}},
        "market_rule.seller_cover_days": 7.0,
    })
    world, sim, res = simulate(cfg, weeks=10)
    metal = world.product_index("metal")
    demand = res.demand[0, :, 0, metal].sum()
    used = res.consumption[0, :, 0, metal].sum()
    assert demand == pytest.approx(5.0, abs=1e-9)
    produced = res.production[0, :, 0, metal].sum()
    assert produced == pytest.approx(2.5, abs=1e-9)
    # initial metal: 2 weeks buy-side (2 * 0.5) + 1 week sell-side (0.25) + one week of
    # planned use already on its way (domestic transit is one tick: 0.5) = 1.75 t
    final = sim.in_stock[0, 0, metal] + sim.out_stock[0, 0, metal] + sim.in_transit[0, 0, metal]
    assert used == pytest.approx(1.75 + produced - final, abs=1e-9)
    assert res.unmet[0, :, 0, metal].sum() == pytest.approx(demand - used, abs=1e-9)
    assert res.unmet[0, -1, 0, metal] > 0  # by the end, users go short


def test_twenty_years_of_weekly_ticks_record_240_whole_calendar_months():
    split = Calendar.from_horizon(dt.date(2025, 1, 1), 20, 7).month_split()
    assert len(split.months) == 240
    assert list(split.days_in_month) == [calendar.monthrange(m.year, m.month)[1]
                                         for m in split.months]
    # a tick that starts on the 29th of a 31-day month has 3 of its 7 days in that month
    assert split.share_in_month[4] == pytest.approx(3 / 7)  # the fifth tick, 29 January 2025
    assert split.share_in_month[:4].tolist() == [1.0] * 4


def test_a_run_that_starts_mid_month_records_a_partial_first_month():
    split = Calendar(dt.date(2025, 4, 15), 7, 10).month_split()
    assert [m.isoformat() for m in split.months] == ["2025-04-01", "2025-05-01", "2025-06-01"]
    assert list(split.days_in_month) == [16, 31, 23]  # 15-30 April, May, 1-23 June
