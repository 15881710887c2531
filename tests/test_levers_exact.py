"""Each lever's mechanism, traced exactly on a tiny deterministic two-country world.

World `TRADE` (conftest): A mines 104 t/yr and sells half to B; C mines 26 t/yr for
itself and B; prices are fixed (cover_sensitivity 0) so every money flow is a
product of tonnes and a known price. Expected numbers are worked out by hand.
"""

import numpy as np
import pytest
from conftest import simulate_levers, trade_world

A, B, C = 0, 1, 2
DAY0 = "2025-01-01"


def only_a_supplies_b():
    """B buys only from A (65 t/yr); C keeps its output."""
    return trade_world(**{
        "demand.tonnes_per_year": {"A": {"users": 52.0}, "B": {"users": 65.0}, "C": {"users": 13.0}},
        "facilities.A_mine.capacity_tpy": 117.0,
        "facilities.C_mine.capacity_tpy": 13.0,
        "trade.flows_tpy": {"metal": {"A->A": 52.0, "A->B": 65.0, "C->C": 13.0}},
    })


def arrivals_at(sim, dest: int, ticks: int) -> np.ndarray:
    """Tonnes arriving at `dest` at each daily tick, read from the pipeline before the tick."""
    due = np.zeros(ticks)
    for t in range(ticks):
        due[t] = sim.pipe[t % sim.Lp][0, dest].sum()
        sim.env.run(until=t + 0.5)
    return due


def test_a_licence_delay_of_30_days_delays_arrival_by_30_days():
    licensing = {"export_controls": {"lic": {
        "exporter": "A", "form": "licensing", "destinations": ["B"], "start_date": DAY0,
        "licence_delay_days": 30.0, "licence_delay_cv": 0.0, "approval_rate": 1.0}}}
    # without the control, what leaves A on day 0 arrives after the 14-day transit
    _, sim0, _ = simulate_levers(only_a_supplies_b(), {}, ticks=60, tick_days=1, run=False)
    arrivals0 = arrivals_at(sim0, B, 60)
    sent_day0 = 65.0 / 365.25  # steady state: B orders its daily use
    assert arrivals0[14] == pytest.approx(sent_day0, rel=1e-9)
    # with it, shipments wait 30 days for their licence: nothing arrives on days 14..43,
    # and day 0's shipment arrives on day 44 = 0 + 30 + 14
    _, sim, _ = simulate_levers(only_a_supplies_b(), licensing, ticks=60, tick_days=1, run=False)
    arrivals = arrivals_at(sim, B, 60)
    np.testing.assert_allclose(arrivals[:14], arrivals0[:14], rtol=1e-12)  # already at sea
    assert arrivals[14:44].sum() == 0.0
    assert arrivals[44] == pytest.approx(sent_day0, rel=1e-9)


def test_a_licensed_shipment_is_recorded_when_its_licence_is_granted():
    licensing = {"export_controls": {"lic": {
        "exporter": "A", "form": "licensing", "destinations": ["B"], "start_date": DAY0,
        "licence_delay_days": 30.0, "licence_delay_cv": 0.0, "approval_rate": 1.0}}}
    _, _, res = simulate_levers(only_a_supplies_b(), licensing, ticks=59, tick_days=1)
    # of January's dispatches to B only day 0's is licensed by 31 January (day 30): it is the
    # month's whole record; without the control January records 31 days of them
    sent_day0 = 65.0 / 365.25
    assert res.shipments[0, 0, B, A].sum() == pytest.approx(sent_day0, rel=1e-9)
    _, _, res0 = simulate_levers(only_a_supplies_b(), {}, ticks=59, tick_days=1)
    assert res0.shipments[0, 0, B, A].sum() == pytest.approx(31 * sent_day0, rel=1e-9)


def test_a_refused_licence_sends_the_material_back_to_the_exporter():
    refuse = {"export_controls": {"lic": {
        "exporter": "A", "form": "licensing", "destinations": ["B"], "start_date": DAY0,
        "licence_delay_days": 10.0, "licence_delay_cv": 0.0, "approval_rate": 0.0}}}
    _, sim, res = simulate_levers(only_a_supplies_b(), refuse, ticks=120, tick_days=1)
    # nothing A sends after day 0 ever reaches B: B lives off its stock and the 14 days at sea;
    # what waited for a licence and was refused never left A, so no shipment is recorded
    assert res.shipments[0, :, B, A].sum() == 0.0
    assert res.shipments[0, :, A, A].sum() > 0  # (A's own use still ships)
    assert sim.in_stock[0, B].sum() == pytest.approx(0.0, abs=1e-9)
    assert res.unmet[0, :, B].sum() > 0
    assert res.unmet[0, :, A].sum() == pytest.approx(0.0, abs=1e-12)


def test_a_quota_of_20_t_a_year_lets_exactly_20_t_through():
    cfg = only_a_supplies_b()
    cfg["demand"]["tonnes_per_year"]["B"]["users"] = 650.0  # B wants far more than the quota
    quota = {"export_controls": {"q": {
        "exporter": "A", "form": "quota", "quota_tpy": 20.0, "start_date": DAY0}}}
    _, _, res = simulate_levers(cfg, quota, ticks=365, tick_days=1)
    assert res.shipments[0, :, B, A].sum() == pytest.approx(20.0, rel=1e-9)
    # A's own buyers are not covered by its export quota
    assert res.unmet[0, :, A].sum() == pytest.approx(0.0, abs=1e-9)


def test_a_quota_year_is_the_calendar_year():
    cfg = only_a_supplies_b()
    cfg["demand"]["tonnes_per_year"]["B"]["users"] = 650.0
    quota = {"export_controls": {"q": {
        "exporter": "A", "form": "quota", "quota_tpy": 20.0, "start_date": "2025-07-01"}}}
    _, sim, res = simulate_levers(cfg, quota, ticks=365 + 181, tick_days=1)
    months = [m.isoformat() for m in res.months]
    h2_2025 = slice(months.index("2025-07-01"), months.index("2026-01-01"))
    y2026 = slice(months.index("2026-01-01"), None)
    # from 1 July: the rest of 2025's quota, pro rata (184 of 365 days); then 2026 afresh
    assert res.shipments[0, h2_2025, B, A].sum() == pytest.approx(20.0 * 184 / 365, rel=1e-9)
    assert res.shipments[0, y2026, B, A].sum() == pytest.approx(20.0 * 181 / 365, rel=1e-9)


def test_a_ban_stops_the_route_for_its_window_and_leakage_arrives_late():
    ban = {"export_controls": {"ban": {
        "exporter": "A", "form": "ban", "destinations": ["B"], "start_date": DAY0,
        "end_date": "2025-07-01"}}}
    _, _, res = simulate_levers(only_a_supplies_b(), ban, ticks=52)
    months = [m.isoformat() for m in res.months]
    july = months.index("2025-07-01")
    assert res.shipments[0, :july, B, A].sum() == 0.0
    assert res.shipments[0, july:, B, A].sum() > 0.0
    leaky = {"export_controls": {"ban": {
        "exporter": "A", "form": "ban", "destinations": ["B"], "start_date": DAY0,
        "leakage_share": 0.25, "leakage_extra_days": 28.0}}}
    _, sim, _ = simulate_levers(only_a_supplies_b(), leaky, ticks=60, tick_days=1, run=False)
    arrivals = arrivals_at(sim, B, 60)
    # a quarter of day 0's order goes round through third countries: 14 + 28 days
    assert arrivals[14:42].sum() == 0.0
    assert arrivals[42] == pytest.approx(0.25 * 65.0 / 365.25, rel=1e-9)


def test_a_suspended_control_comes_back_when_reimposed():
    truce = {"export_controls": {"ban": {
        "exporter": "A", "form": "ban", "destinations": ["B"], "start_date": DAY0,
        "suspend_date": "2025-03-01", "reimpose_probability_per_month": 1.0}}}
    _, _, res = simulate_levers(only_a_supplies_b(), truce, ticks=30)
    months = [m.isoformat() for m in res.months]
    flows = res.shipments[0, :, B, A, 0]
    # banned Jan-Feb, suspended from 1 March, re-imposed a month later for good
    assert flows[: months.index("2025-03-01")].sum() == 0.0
    assert flows[months.index("2025-03-01")] > 0.0
    assert flows[months.index("2025-05-01"):].sum() == 0.0


@pytest.mark.parametrize("lift, back", [(0.0, True), (1.0, False)])
def test_a_truce_that_is_not_extended_brings_the_control_back_at_its_end(lift, back):
    truce = {"export_controls": {"ban": {
        "exporter": "A", "form": "ban", "destinations": ["B"], "start_date": DAY0,
        "suspend_date": "2025-03-01", "end_date": "2025-05-01", "lift_probability": lift}}}
    _, _, res = simulate_levers(only_a_supplies_b(), truce, ticks=40)
    months = [m.isoformat() for m in res.months]
    flows = res.shipments[0, :, B, A, 0]
    assert flows[: months.index("2025-03-01")].sum() == 0.0
    assert flows[months.index("2025-03-01")] > 0.0  # suspended
    # a tick is a week of dispatches, recorded by day: the last one before the control
    # returns on 1 May (30 April) has 6 of its days in May; none is dispatched after it
    after = flows[months.index("2025-06-01"):].sum()
    assert (after == 0.0) if back else (after > 0.0)


def test_front_loading_raises_imports_between_announcement_and_start():
    control = {"exporter": "A", "form": "ban", "destinations": ["B"], "start_date": "2025-04-01",
               "announce_date": "2025-02-01"}
    _, _, quiet = simulate_levers(only_a_supplies_b(), {"export_controls": {"ban": control}}, ticks=13)
    rush = dict(control, front_loading_extra_cover_days=30.0)
    _, _, res = simulate_levers(only_a_supplies_b(), {"export_controls": {"ban": rush}}, ticks=13)
    jan, feb_mar = 0, slice(1, 3)
    assert res.shipments[0, jan, B, A].sum() == pytest.approx(quiet.shipments[0, jan, B, A].sum())
    # B adds 30 days of its use (65 t/yr) to its stock target: ~5.3 t more ordered
    extra = res.shipments[0, feb_mar, B, A].sum() - quiet.shipments[0, feb_mar, B, A].sum()
    assert extra > 0.5 * 30 * 65.0 / 365.25


def test_a_tariff_earns_its_rate_times_the_value_shipped():
    tariff = {"tariffs": {"t": {"importers": ["B"], "origins": ["A"], "rate": 0.25}}}
    _, _, res = simulate_levers(trade_world(), tariff, ticks=52)
    value = res.shipments[0, :, B, A, 0].sum() * 10.0 * 1000  # t x US$/kg x kg/t
    assert res.tariff_revenue[0].sum() == pytest.approx(0.25 * value, rel=1e-12)
    assert res.tariff_revenue[0, :, B, C].sum() == 0.0


def test_a_tariff_schedule_changes_the_rate_on_its_dates():
    tariff = {"tariffs": {"t": {"importers": ["B"], "origins": ["A"], "rate": 0.5,
                                "schedule": {"2025-03-01": 0.1}, "end_date": "2025-05-01"}}}
    _, _, res = simulate_levers(trade_world(), tariff, ticks=26)
    months = [m.isoformat() for m in res.months]
    value = res.shipments[0, :, B, A, 0] * 10.0 * 1000
    rev = res.tariff_revenue[0, :, B, A, 0]
    feb, mar, apr, jun = (months.index(d) for d in ("2025-02-01", "2025-03-01", "2025-04-01",
                                                     "2025-06-01"))
    assert rev[feb] == pytest.approx(0.5 * value[feb], rel=1e-12)
    # weekly ticks are recorded by day: March holds 4 days of the week dispatched on
    # 26 February at 50 %, and May 6 days of the week dispatched on 30 April at 10 %
    assert 0.1 * value[mar] < rev[mar] < 0.5 * value[mar]
    assert rev[apr] == pytest.approx(0.1 * value[apr], rel=1e-12)
    assert rev[jun:].sum() == 0.0


def test_a_club_minimum_price_charges_the_gap_below_it():
    club = {"price_clubs": {"c": {"members": ["B", "C"], "floor_usd_per_kg": {"metal": 12.5},
                                  "start_date": DAY0}}}
    _, _, res = simulate_levers(trade_world(), club, ticks=26)
    # A's price is 10 US$/kg: B pays a 2.5 US$/kg duty on A's metal; C is a member
    assert res.tariff_revenue[0].sum() == pytest.approx(
        2.5 * 1000 * res.shipments[0, :, B, A].sum(), rel=1e-12)


def test_a_reserve_for_members_serves_exactly_its_stock_in_a_shortage():
    ban = {"exporter": "A", "form": "ban", "destinations": ["B"], "start_date": DAY0}
    reserve = {"holder": "B", "products": ["metal"], "initial_tonnes": {"metal": 5.0},
               "budget_usd": 0.0, "members": ["defence"], "release_share_per_month": 1.0,
               "release_when_shortfall_above": 0.0}
    cfg = trade_world()
    _, _, without = simulate_levers(cfg, {"export_controls": {"ban": ban}}, ticks=52)
    _, _, res = simulate_levers(cfg, {"export_controls": {"ban": ban},
                                      "stockpiles": {"r": reserve}}, ticks=52)
    sectors = ["B/users", "B/defence"]
    defence = sectors.index("B/defence") + 1  # sectors: A/users, B/users, B/defence, C/users
    users = sectors.index("B/users") + 1
    assert without.sector_unmet[0, :, defence].sum() > 5.0
    averted = without.sector_unmet[0, :, defence].sum() - res.sector_unmet[0, :, defence].sum()
    assert averted == pytest.approx(5.0, rel=1e-9)
    assert res.lever_series["stockpile_release"][0].sum() == pytest.approx(5.0, rel=1e-9)
    # other users of B are not served from a members' reserve
    np.testing.assert_allclose(res.sector_unmet[0, :, users], without.sector_unmet[0, :, users])


def test_a_reserve_buys_toward_its_target_within_its_budget():
    reserve = {"holder": "B", "products": ["metal"], "budget_usd": 20_000.0, "target_days": 60.0,
               "max_purchase_days_per_year": 365.0, "price_cap_multiple": 2.0}
    _, _, res = simulate_levers(trade_world(), {"stockpiles": {"r": reserve}}, ticks=52)
    bought = res.lever_series["stockpile_purchases"][0].sum()
    # 20,000 US$ at 10 US$/kg buys 2 t, less than the 60-day target (~10.7 t)
    assert bought == pytest.approx(2.0, rel=1e-9)
    # spent: the purchases, plus at most a year's holding cost of 2 % of 2 t x 10 US$/kg
    spent = res.lever_series["stockpile_cash_spent"][0].sum()
    assert 20_000.0 < spent <= 20_000.0 + 0.02 * 2.0 * 10.0 * 1000


def test_a_price_floor_pays_the_gap_on_covered_output():
    floor = {"facilities": ["C_mine"], "product": "metal", "floor_usd_per_kg": 14.0,
             "start_date": DAY0, "years": 5}
    world, _, res = simulate_levers(trade_world(), {"price_floors": {"f": floor}}, ticks=52)
    made = res.production[0, :, C, 0].sum()
    assert made == pytest.approx(26.0 * 52 / (365.25 / 7), rel=1e-9)
    assert res.lever_series["floor_gap_payments"][0].sum() == pytest.approx(4.0 * 1000 * made,
                                                                            rel=1e-12)


def test_new_capacity_comes_online_after_its_lead_time_or_never():
    plant = {"region": "B", "recipe": "mine", "capacity_tpy": 52.0, "announce_date": DAY0,
             "lead_years": 0.5, "lead_cv": 0.0, "funding_usd": 1e6}
    world, _, res = simulate_levers(trade_world(), {"capacity_additions": {"p": plant}}, ticks=52)
    f = world.facilities.index("B_mine_new")
    months = [m.isoformat() for m in res.months]
    # online on day 182.6: the tick of 8 July is the first to use it
    assert res.capacity[0, months.index("2025-06-01"), f] == 0.0
    assert res.capacity[0, months.index("2025-07-01"), f] == pytest.approx(52.0, rel=1e-12)
    assert res.lever_series["capacity_funding"][0].sum() == pytest.approx(1e6)
    assert res.production[0, months.index("2025-08-01"):, B].sum() > 0
    failed = dict(plant, failure_probability=1.0)
    _, _, res = simulate_levers(trade_world(), {"capacity_additions": {"p": failed}}, ticks=52,
                                reps=3)
    assert res.capacity[:, :, f].max() == 0.0


def test_permitting_scales_the_lead_time_of_covered_stages():
    plant = {"region": "B", "recipe": "mine", "capacity_tpy": 52.0, "announce_date": DAY0,
             "lead_years": 1.0, "lead_cv": 0.0}
    fast = {"capacity_additions": {"p": plant},
            "permitting": {"lead_time_multiple": 0.5, "stages": ["mining"]}}
    world, _, res = simulate_levers(trade_world(), fast, ticks=52)
    f = world.facilities.index("B_mine_new")
    months = [m.isoformat() for m in res.months]
    assert res.capacity[0, months.index("2025-06-01"), f] == 0.0
    assert res.capacity[0, months.index("2025-07-01"), f] > 0.0
