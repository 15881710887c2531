"""The discrete-event simulation of one batch of replications of a world.

What is truly discrete is a SimPy process: the weekly market clearing, plant
outages and repairs, buyers' contract reviews, investment reviews and new
capacity coming online. Flows, stocks, prices and goods in transit are numpy
arrays with a leading replication axis, updated once per market tick, so the
cost of a tick does not grow with the number of shipments.

One market tick, in order (docs/model.md):
  1. shipments due this tick arrive in the buyers' input stocks;
  2. plants plan output from capacity, outages, expected price and unsold stock;
  3. plants and end users draw inputs; scarce inputs are rationed pro rata;
  4. plants deliver output to their region's sell-side stock;
  5. each region orders inputs (stock-management rule) from its origins in
     proportion to its sourcing shares; sellers ship pro rata from stock;
  6. prices in each market move with inventory cover;
  7. the recorder adds the tick to its calendar month.
Policy levers (core/policy.py) act at fixed points of this tick: licences are decided
after arrivals (1), price floors raise covered plants' revenue (2), reserves release
before rationing or to their members after it (3), floors settle on output (4), export
controls restrict orders, reserves buy, duties are charged on what ships (5).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import simpy

from . import rules
from .calendar import Calendar
from .invariants import check_mass_balance, check_non_negative
from .levers import Levers
from .policy import (
    CapacityDeals,
    ExportControls,
    PriceFloors,
    Stockpiles,
    TradeTerms,
    apply_contracts,
)
from .streams import stream
from .world import World

# Lever time series: variable -> (lever kind, unit, per product?, "sum" over the month or "last")
LEVER_SERIES = {
    "stockpile_level": ("stockpiles", "t", True, "last"),
    "stockpile_days_of_cover": ("stockpiles", "days", True, "last"),
    "stockpile_purchases": ("stockpiles", "t/month", True, "sum"),
    "stockpile_release": ("stockpiles", "t/month", True, "sum"),
    "stockpile_cash_spent": ("stockpiles", "USD/month", False, "sum"),
    "stockpile_cash_received": ("stockpiles", "USD/month", False, "sum"),
    "floor_covered_output": ("price_floors", "t/month", False, "sum"),
    "floor_gap_payments": ("price_floors", "USD/month", False, "sum"),
    "floor_upside_received": ("price_floors", "USD/month", False, "sum"),
    "floor_offtake": ("price_floors", "t/month", False, "sum"),
    "floor_offtake_cost": ("price_floors", "USD/month", False, "sum"),
    "capacity_funding": ("capacity_additions", "USD/month", False, "sum"),
    "capacity_online": ("capacity_additions", "t/yr", False, "sum"),
}

TOL = 1e-9


@dataclass
class BatchResult:
    """Monthly outputs of a batch of replications (arrays [R, month, ...])."""

    replications: np.ndarray  # (R,) replication numbers
    months: list  # datetime.date of each month's first day
    ticks_in_month: np.ndarray  # (MT,)
    production: np.ndarray  # [R, MT, N, K] t
    input_use: np.ndarray  # [R, MT, N, K] t used by plants
    consumption: np.ndarray  # [R, MT, N, K] t used by end users
    demand: np.ndarray  # [R, MT, N, K] t end-use demand
    unmet: np.ndarray  # [R, MT, N, K] t end-use demand not served
    provenance_use: np.ndarray  # [R, MT, N, K] t of use that passed the provenance region
    inventory: np.ndarray  # [R, MT, N, K] t at month end (buy- and sell-side)
    shipments: np.ndarray  # [R, MT, dest, origin, K] t dispatched
    price: np.ndarray  # [R, MT, M, K] USD/kg, monthly mean
    sector_demand: np.ndarray  # [R, MT, S] t
    sector_unmet: np.ndarray  # [R, MT, S] t
    sector_substitution: np.ndarray  # [R, MT, S] share of the sector's demand substituted away, month end
    capacity: np.ndarray  # [R, MT, F] t/yr at month end
    n_events: int  # SimPy events processed
    tariff_revenue: np.ndarray | None = None  # [R, MT, dest, origin, K] USD
    discount_cost: np.ndarray | None = None  # [R, MT, dest, origin, K] USD
    licences_pending: np.ndarray | None = None  # [R, MT, origin, K] t at month end
    lever_series: dict | None = None  # variable -> [R, MT, instance, K or 1] (LEVER_SERIES)


class Simulation:
    """One SimPy environment driving `len(replications)` replications in lockstep."""

    def __init__(
        self,
        world: World,
        calendar: Calendar,
        replications: Sequence[int],
        seed: int,
        progress: Callable[[float], None] | None = None,
        levers: Levers | None = None,
    ) -> None:
        self.w = w = world
        self.lv = lv = levers if levers is not None else Levers()
        self.cal = cal = calendar
        self.reps = np.asarray(replications, dtype=np.int64)
        self.seed = int(seed)
        self.progress = progress
        self.env = simpy.Environment()
        R, N, K, F, S, M = (
            len(self.reps), w.n_regions, w.n_products, len(w.facilities), len(w.sectors),
            len(w.markets),
        )
        self.R, self.N, self.K, self.F, self.S, self.M = R, N, K, F, S, M
        dt_days = cal.tick_days
        tpy = cal.ticks_per_year
        mr, sr, tr = w.market_rule, w.supply, w.trade

        # --- constant matrices -------------------------------------------------
        NK = N * K
        self.fac_main_cols = w.fac_region * K + w.fac_main_output  # flat column of main output
        self.FI0 = np.zeros((F, NK))  # plant inputs placed at their region's columns
        self.FO = np.zeros((F, NK))
        for f in range(F):
            base = w.fac_region[f] * K
            self.FI0[f, base:base + K] = w.fac_inputs[f]
            self.FO[f, base:base + K] = w.fac_outputs[f]
        self.FI = self.FI0.copy()
        self.thrifting = bool(np.any(w.fac_input_decline_per_year > 0))
        # the columns a plant draws inputs from (padded with a column of ones)
        n_in = max(1, int((w.fac_inputs > 0).sum(1).max(initial=0)))
        self.fac_in_cols = np.full((F, n_in), NK, dtype=np.int64)
        for f in range(F):
            ks = np.flatnonzero(w.fac_inputs[f] > 0)
            self.fac_in_cols[f, : len(ks)] = w.fac_region[f] * K + ks
        # input mix weights, for tracing provenance through a plant
        w_in = np.zeros((F, NK))
        for f in range(F):
            tot = w.fac_inputs[f].sum()
            if tot > 0:
                w_in[f] = self.FI0[f] / tot
        self.fac_in_weight_T = w_in.T.copy()
        prov = w.provenance_region
        self.fac_is_prov = (w.fac_region == prov).astype(float)
        self.SE = np.zeros((S, NK))  # end use -> region-product column
        for s in range(S):
            self.SE[s, w.sector_region[s] * K + w.sector_product[s]] = 1.0
        self.sec_cols = w.sector_region * K + w.sector_product  # flat column of each end use
        self.Mmat = np.zeros((M, N))
        self.Mmat[w.region_market, np.arange(N)] = 1.0
        # flat (market, product) index of a plant's main output and an end use's product
        self.fac_price_idx = w.region_market[w.fac_region] * K + w.fac_main_output
        self.sec_price_idx = w.region_market[w.sector_region] * K + w.sector_product
        # revenue and input cost per tonne of activity, priced in the plant's own market
        # (prices_flat @ self.REV, prices_flat @ self.COST); the value added at starting
        # prices stands for the plant's own processing cost
        self.REV = np.zeros((M * K, F))
        self.COST = np.zeros((M * K, F))
        for f in range(F):
            m = w.region_market[w.fac_region[f]]
            self.REV[m * K:(m + 1) * K, f] = w.fac_outputs[f]
            self.COST[m * K:(m + 1) * K, f] = w.fac_inputs[f]
        p0_flat = w.price0_usd_per_kg.reshape(-1)
        self.value_added0 = p0_flat @ self.REV - p0_flat @ self.COST
        assert np.all(self.value_added0 > 0), "the builder rejects loss-making plants"
        self.p0_flat = w.price0_usd_per_kg.reshape(-1)
        self.p0_origin = w.price0_usd_per_kg[w.region_market]  # (origin, K)
        self.SEK = np.zeros((S, K))  # end use -> its product
        self.SEK[np.arange(S), w.sector_product] = 1.0
        self.lnp0 = np.log(w.price0_usd_per_kg)  # (M, K)
        self.lnp0_flat = self.lnp0.reshape(-1)
        self.lnp_min = self.lnp0 + np.log(mr.price_min_multiple)
        self.lnp_max = self.lnp0 + np.log(mr.price_max_multiple)
        self.cover_ticks = w.cover_days / dt_days  # (K,)
        self.seller_cover_ticks = mr.seller_cover_days / dt_days

        # --- rates per tick ----------------------------------------------------
        self.a_use = rules.smoothing_weight(dt_days, mr.use_smoothing_days)
        self.a_stock = rules.smoothing_weight(dt_days, mr.stock_adjust_days)
        self.a_line = rules.smoothing_weight(dt_days, mr.supply_line_adjust_days)
        self.a_price = rules.smoothing_weight(dt_days, mr.price_adjust_days)
        self.a_exp = rules.smoothing_weight(dt_days, mr.expectation_days)
        self.a_anchor = (
            rules.smoothing_weight(dt_days, mr.long_run_anchor_days)
            if mr.long_run_anchor_days > 0 else 0.0
        )
        self.cap_growth_tick = (1.0 + w.fac_capacity_growth_per_year) ** (1.0 / tpy)  # (F,)
        # by-product plants do not respond to their own price (output follows the host metal)
        self.util_elasticity = np.where(w.fac_byproduct, 0.0, sr.utilisation_price_elasticity)
        t = np.arange(cal.n_ticks)
        self.demand_growth = (1.0 + w.demand_growth_per_year) ** (t / tpy)
        self.sec_demand_tick = w.sector_demand_tpy / tpy

        # --- random draws, one named stream per activity and replication -------
        self.noise = np.empty((R, cal.n_ticks, S))
        for r, rep in enumerate(self.reps):
            z = stream(self.seed, int(rep), "demand").standard_normal((cal.n_ticks, S))
            self.noise[r] = np.maximum(0.0, 1.0 + w.demand_noise_sd * z)
        self.n_reviews = int(cal.horizon_days // tr.review_days) + 2
        sig = np.sqrt(np.log1p(tr.transit_cv**2))
        self.transit_z = np.empty((R, self.n_reviews, N, N))
        for r, rep in enumerate(self.reps):
            self.transit_z[r] = stream(self.seed, int(rep), "transit").standard_normal(
                (self.n_reviews, N, N)
            )
        self.transit_sigma = sig
        self.lead_max = int(
            np.ceil(w.transit_days.max() * np.exp(4 * sig - 0.5 * sig**2) / dt_days)
        ) + 1
        self._init_calendar_years()

        # --- levers (core/policy.py) ----------------------------------------------
        self.route_index4 = np.arange(R * N * N * K).reshape(R, N, N, K)
        self.slot_size4 = R * N * N * K
        self.controls = ExportControls(self, lv.export_controls) if lv.export_controls else None
        self.terms = TradeTerms(self, lv) if lv.trade_terms else None
        self.piles = Stockpiles(self, lv) if lv.stockpiles else None
        self.floors = PriceFloors(self, lv) if lv.price_floors else None
        self.deals = CapacityDeals(self, lv) if lv.capacity_additions else None
        extra = self.controls.extra_lead_max if self.controls is not None else 0
        self.Lp = self.lead_max + extra + 1

        # --- state ---------------------------------------------------------------
        self._init_state()
        self._init_recorder()

        # --- processes -----------------------------------------------------------
        # levers first: one dated on or before day 0 acts on the first tick
        env = self.env
        for part in (self.controls, self.terms, self.deals):
            if part is not None:
                for proc in part.processes():
                    env.process(proc)
        env.process(self.clear_markets())
        env.process(self.review_contracts())
        if sr.invest_share > 0:
            env.process(self.review_investment())
        for r in range(R):
            for f in range(F):
                if w.fac_outage_rate_per_year[f] > 1e-9 and w.fac_outage_share[f] > 0:
                    env.process(self.break_down(r, f))

    # ------------------------------------------------------------------ state
    def _init_state(self) -> None:
        """Start in the calibrated steady state: stocks at target, pipelines full."""
        w, R, N, K, F = self.w, self.R, self.N, self.K, self.F
        tpy = self.cal.ticks_per_year
        self.capacity = np.broadcast_to(w.fac_capacity_tpy / tpy, (R, F)).copy()  # t per tick
        self.available = np.ones((R, F))
        self.pending = np.zeros((R, F), dtype=bool)
        self.substitution = np.zeros((R, self.S))
        activity0 = w.fac_capacity_tpy / tpy * w.fac_utilisation
        need0 = (activity0 @ self.FI0 + self.sec_demand_tick @ self.SE).reshape(N, K)
        prod0 = (activity0 @ self.FO).reshape(N, K)
        self.base_sourcing = np.ascontiguousarray(np.transpose(w.base_sourcing, (1, 2, 0)))  # d,o,k
        self.sourcing = np.broadcast_to(self.base_sourcing, (R, N, N, K)).copy()
        self.lead_ticks = np.broadcast_to(self._mean_lead_ticks(), (R, N, N)).copy()
        self.lead_expected = np.einsum("rdok,rdo->rdk", self.sourcing, self.lead_ticks)
        self.use_exp = np.broadcast_to(need0, (R, N, K)).copy()
        self.prod_exp = np.broadcast_to(prod0, (R, N, K)).copy()
        self.in_stock = self.use_exp * self.cover_ticks
        self.out_stock = self.prod_exp * self.seller_cover_ticks
        self.reliability = np.ones((R, N, N, K))  # share of orders delivered, by route
        self.log_price = np.broadcast_to(self.lnp0, (R, self.M, K)).copy()
        self.log_expected = self.log_price.copy()
        # pipelines hold the steady flow of the last `lead` ticks of each route
        self.pipe = np.zeros((self.Lp, R, N, K))
        flow0 = need0[:, None, :] * self.base_sourcing  # d,o,k per tick
        lead0 = self.lead_ticks[0]
        for d in range(N):
            for o in range(N):
                for j in range(int(lead0[d, o])):  # due at ticks 0 .. lead-1
                    self.pipe[j % self.Lp, :, d, :] += flow0[d, o]
        self.in_transit = self.pipe.sum(0)
        # supply by region and product at start: sourcing follows capacity as it changes
        self.supply0 = (self.capacity * w.fac_utilisation) @ self.FO  # R, N*K
        # provenance tracer: content that passed a mine or plant of the provenance region
        share_out = self._steady_provenance_shares(need0)
        share_in = np.einsum("dok,ok->dk", self.base_sourcing, share_out)
        self.in_prov = self.in_stock * share_in
        self.out_prov = self.out_stock * share_out
        self.pipe_prov = self.pipe * share_in
        # the flat pipeline index of each route, without the slot part
        r_idx = np.arange(R)[:, None, None, None]
        d_idx = np.arange(N)[None, :, None, None]
        k_idx = np.arange(K)[None, None, None, :]
        self.route_rest = ((r_idx * N + d_idx) * K + k_idx + np.zeros((1, 1, N, 1), np.int64))
        self.slot_size = R * N * K
        # mass-balance ledger per product
        self.initial_total = self._stock_total_by_product()
        self.produced = np.zeros((R, K))
        self.used = np.zeros((R, K))

    def _init_calendar_years(self) -> None:
        """For quotas: each tick's calendar year, the day that year starts and its length."""
        cal = self.cal
        self.tick_year = np.empty(cal.n_ticks, dtype=np.int64)
        self.year_start_day = np.empty(cal.n_ticks)
        self.year_days = np.empty(cal.n_ticks)
        for t in range(cal.n_ticks):
            y = cal.date_of_day(t * cal.tick_days).year
            self.tick_year[t] = y
            self.year_start_day[t] = cal.day_of_date(dt.date(y, 1, 1))
            self.year_days[t] = (dt.date(y + 1, 1, 1) - dt.date(y, 1, 1)).days

    def _mean_lead_ticks(self) -> np.ndarray:
        return np.maximum(1, np.rint(self.w.transit_days / self.cal.tick_days)).astype(np.int64)

    def _steady_provenance_shares(self, need0: np.ndarray) -> np.ndarray:
        """Provenance share of each region's output at start, by fixed-point over the chain."""
        w, N, K = self.w, self.N, self.K
        share_out = np.zeros((N, K))
        if w.provenance_region < 0:
            return share_out
        for _ in range(12):
            share_in = np.einsum("dok,ok->dk", self.base_sourcing, share_out)
            fac_share = share_in.reshape(-1) @ self.fac_in_weight_T
            fac_share = np.maximum(fac_share, self.fac_is_prov)
            act = w.fac_capacity_tpy * w.fac_utilisation
            prov_out = ((act * fac_share) @ self.FO).reshape(N, K)
            tot_out = (act @ self.FO).reshape(N, K)
            share_out = np.divide(prov_out, tot_out, out=np.zeros_like(tot_out), where=tot_out > 0)
        return share_out

    def _stock_total_by_product(self) -> np.ndarray:
        total = (self.in_stock + self.out_stock).sum(1) + self.pipe.sum((0, 2))
        if self.controls is not None:
            total = total + self.controls.held_by_product()
        if self.piles is not None:
            total = total + self.piles.total_by_product()
        if self.floors is not None:
            total = total + self.floors.total_by_product()
        return total

    def _init_recorder(self) -> None:
        R, N, K, S, M, F = self.R, self.N, self.K, self.S, self.M, self.F
        self.month_of_tick, self.months = self.cal.month_index()
        MT = len(self.months)
        self.ticks_in_month = np.bincount(self.month_of_tick, minlength=MT)
        z = lambda *shape: np.zeros((R, MT, *shape))  # noqa: E731
        self.rec = {
            name: z(N, K)
            for name in ("production", "input_use", "consumption", "demand", "unmet",
                         "provenance_use", "inventory")
        }
        self.rec["shipments"] = z(N, N, K)
        self.rec["price"] = z(M, K)
        self.rec["sector_demand"] = z(S)
        self.rec["sector_unmet"] = z(S)
        self.rec["sector_substitution"] = z(S)
        self.rec["capacity"] = z(F)
        if self.terms is not None:
            self.rec["tariff_revenue"] = z(N, N, K)
            self.rec["discount_cost"] = z(N, N, K)
        if self.controls is not None and self.controls.has_licensing:
            self.rec["licences_pending"] = z(N, K)
        counts = {"stockpiles": len(self.lv.stockpiles), "price_floors": len(self.lv.price_floors),
                  "capacity_additions": len(self.lv.capacity_additions)}
        self.lever_rec = {
            var: z(counts[kind], K if per_product else 1)
            for var, (kind, _, per_product, _) in LEVER_SERIES.items() if counts[kind]
        }
        self.month_now = 0

    def record_lever(self, variable: str, instance: int, values: np.ndarray) -> None:
        """Add [R, K or 1] values of one lever instance to the current month's series."""
        if LEVER_SERIES[variable][3] == "last":
            self.lever_rec[variable][:, self.month_now, instance] = values
        else:
            self.lever_rec[variable][:, self.month_now, instance] += values

    # ---------------------------------------------------------------- processes
    def clear_markets(self):
        """The weekly market: one tick of production, trade and pricing."""
        n = self.cal.n_ticks
        every = max(1, n // 100)
        for t in range(n):
            self.month_now = self.month_of_tick[t]
            self._tick(t)
            self.month_now = self.month_of_tick[min(t + 1, n - 1)]  # for events between ticks
            if self.progress is not None and ((t + 1) % every == 0 or t + 1 == n):
                self.progress((t + 1) / n)
            yield self.env.timeout(self.cal.tick_days)

    def break_down(self, r: int, f: int):
        """Outages of plant `f` in replication `r`: random failures, random repair times."""
        w = self.w
        rng = stream(self.seed, int(self.reps[r]), f"outage/{w.facilities[f]}")
        mean_gap_days = 365.25 / w.fac_outage_rate_per_year[f]
        while True:
            yield self.env.timeout(rng.exponential(mean_gap_days))
            self.available[r, f] = 1.0 - w.fac_outage_share[f]
            yield self.env.timeout(rng.exponential(w.fac_outage_mean_days[f]))
            self.available[r, f] = 1.0

    def review_contracts(self):
        """Buyers review sourcing, transit times are re-drawn, end uses substitute."""
        w, tr = self.w, self.w.trade
        years = tr.review_days / 365.25
        move = min(1.0, tr.review_days / tr.switch_days)
        mean_days = w.transit_days[None]
        sig = self.transit_sigma
        i = 0
        while True:
            yield self.env.timeout(tr.review_days)
            i += 1
            z = self.transit_z[:, min(i, self.n_reviews - 1)]
            days = mean_days * np.exp(sig * z - 0.5 * sig * sig)
            self.lead_ticks = np.clip(
                np.rint(days / self.cal.tick_days), 1, self.lead_max
            ).astype(np.int64)
            target = self._sourcing_target()
            self.sourcing += move * (target - self.sourcing)
            self._update_expected_lead()
            price_ratio = np.exp(
                self.log_expected.reshape(self.R, -1)[:, self.sec_price_idx]
                - self.lnp0_flat[self.sec_price_idx]
            )
            self.substitution = rules.substitution_step(
                self.substitution, price_ratio, w.sector_substitution_max,
                w.sector_substitution_rate_per_year, years,
            )
            if self.thrifting:
                elapsed = self.env.now / 365.25
                factor = (1.0 - w.fac_input_decline_per_year) ** elapsed
                for f in range(self.F):
                    base = w.fac_region[f] * self.K
                    self.FI[f, base:base + self.K] = w.fac_inputs[f] * factor[f]

    def _update_expected_lead(self) -> None:
        """Buyers' expected lead time by product: transit plus licence delays where licensed."""
        if self.controls is None:
            self.lead_expected = np.einsum("rdok,rdo->rdk", self.sourcing, self.lead_ticks)
        else:
            lead = self.lead_ticks[..., None] + self.controls.expected_delay_ticks()
            self.lead_expected = np.einsum("rdok,rdok->rdk", self.sourcing, lead)

    def _base_weights(self) -> np.ndarray:
        """Buyers' base sourcing weights now: the 2024 pattern scaled by each origin's supply
        growth, new origins entering with their world-market share, contracts taken first."""
        w, R, N, K = self.w, self.R, self.N, self.K
        supply = (self.capacity * w.fac_utilisation) @ self.FO  # R, N*K
        grown = np.divide(supply, self.supply0, out=np.zeros_like(supply), where=self.supply0 > 0)
        new = np.where(self.supply0 > 0, 0.0, supply).reshape(R, N, K)
        world_total = supply.reshape(R, N, K).sum(axis=1, keepdims=True)
        new_share = np.divide(new, world_total, out=np.zeros_like(new), where=world_total > 0)
        base = self.base_sourcing[None] * grown.reshape(R, 1, N, K) \
            + w.trade.openness * new_share[:, None]
        total = base.sum(axis=2, keepdims=True)
        base = np.divide(base, total, out=np.broadcast_to(self.base_sourcing, base.shape).copy(),
                         where=total > 0)
        if self.deals is not None:
            base = apply_contracts(base, self.deals.contracted, self.use_exp)
        return base

    def _landed_costs(self, origin_price: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(offer price, landed cost) on each route, US$/kg [R, dest, origin, K]."""
        transport = self.w.transport_usd_per_kg[None, :, :, None]
        if self.terms is None:
            offer = np.broadcast_to(origin_price[:, None], (self.R, self.N, self.N, self.K))
            landed = offer + transport
        else:
            offer = self.terms.offer_price(origin_price)
            landed = offer + self.terms.duty_per_kg(offer) + transport
        if self.controls is not None:
            landed = landed + self.controls.blocked * self.controls.leak_cost
        return offer, landed

    def _sourcing_target(self) -> np.ndarray:
        w = self.w
        price = np.exp(self.log_price)  # R, M, K
        _, landed = self._landed_costs(price[:, w.region_market, :])
        landed0 = self.p0_origin[None, :, :] + w.transport_usd_per_kg[:, :, None]
        allowed = self.controls.allowed() if self.controls is not None else 1.0
        return rules.sourcing_target(
            self._base_weights(), landed / landed0[None], self.reliability,
            allowed, w.trade.armington_elasticity, w.trade.reliability_exponent,
        )

    def review_investment(self):
        """Owners expand plants whose output price has stayed high; capacity comes after a lead time."""
        sr = self.w.supply
        while True:
            yield self.env.timeout(sr.invest_review_days)
            ratio = np.exp(self.log_expected.reshape(self.R, -1)[:, self.fac_price_idx]
                           - self.lnp0_flat[self.fac_price_idx])
            if self.floors is not None:
                ratio = self.floors.expected_price_ratio(ratio)
            go = (ratio >= sr.invest_price_multiple) & ~self.pending & ~self.w.fac_byproduct
            for r, f in zip(*np.nonzero(go), strict=True):
                self.pending[r, f] = True
                self.env.process(self.commission(int(r), int(f)))

    def commission(self, r: int, f: int):
        """Build an expansion of plant `f`; it comes online after a random lead time."""
        w, sr = self.w, self.w.supply
        rng = stream(self.seed, int(self.reps[r]), f"investment/{w.facilities[f]}/{self.env.now}")
        mean = w.fac_expansion_lead_years[f] * 365.25 * self.lv.permitting.multiple(f, self.env.now)
        sig = np.sqrt(np.log1p(sr.lead_time_cv**2))
        lead_days = mean * np.exp(sig * rng.standard_normal() - 0.5 * sig * sig)
        added = self.capacity[r, f] * sr.invest_share
        yield self.env.timeout(lead_days)
        self.capacity[r, f] += added
        self.pending[r, f] = False

    # ---------------------------------------------------------------- the tick
    def _ship(self, t: int, qty: np.ndarray, prov: np.ndarray, offer: np.ndarray | None,
              extra_ticks: np.ndarray | None = None) -> None:
        """Put shipments [R, dest, origin, K] in transit; duties are charged as they leave."""
        lead = self.lead_ticks[..., None]
        if extra_ticks is not None:
            lead = lead + extra_ticks[None]
        slots = ((t + lead) % self.Lp) * self.slot_size + self.route_rest
        flat = slots.reshape(-1)
        size = self.pipe.size
        self.pipe.reshape(-1)[:] += np.bincount(flat, qty.reshape(-1), minlength=size)
        self.pipe_prov.reshape(-1)[:] += np.bincount(flat, prov.reshape(-1), minlength=size)
        if self.terms is not None and offer is not None:
            mi = self.month_of_tick[t]
            self.rec["tariff_revenue"][:, mi] += qty * self.terms.duty_per_kg(offer) * 1000
            self.rec["discount_cost"][:, mi] += qty * (offer / np.maximum(
                1.0 - self.terms.discount[None], 1e-12)) * self.terms.discount[None] * 1000

    def _tick(self, t: int) -> None:
        w, R, N, K = self.w, self.R, self.N, self.K
        sr, mr = w.supply, w.market_rule
        NK = N * K
        controls, piles, floors = self.controls, self.piles, self.floors
        prices = np.exp(self.log_price.reshape(R, -1))
        origin_price = prices.reshape(R, self.M, K)[:, w.region_market, :]  # R, o, K
        offer = self.terms.offer_price(origin_price) if self.terms is not None else None
        extra_used = np.zeros((R, NK))

        # 1. arrivals; licences decided: granted ones ship, refused ones go back to the exporter
        slot = t % self.Lp
        arriving = self.pipe[slot]
        self.in_stock += arriving
        self.in_prov += self.pipe_prov[slot]
        self.in_transit -= arriving
        self.pipe[slot] = 0.0
        self.pipe_prov[slot] = 0.0
        if controls is not None and controls.has_licensing:
            granted, granted_prov, refused, refused_prov = controls.decide_licences(t)
            self._ship(t, granted, granted_prov, offer)
            self.out_stock += refused.sum(axis=1)
            self.out_prov += refused_prov.sum(axis=1)
            self.in_transit -= refused.sum(axis=2)

        # 2. plants plan output
        self.capacity *= self.cap_growth_tick
        # operators respond to spot prices; owners invest on expected prices (below)
        revenue = prices @ self.REV
        if floors is not None:
            revenue = revenue + floors.revenue_bonus(prices)
        util = rules.utilisation(
            revenue / (prices @ self.COST + self.value_added0),
            w.fac_utilisation, self.util_elasticity,
            sr.utilisation_min, sr.utilisation_max,
        )
        out_flat = self.out_stock.reshape(R, NK)
        seller_target = self.prod_exp.reshape(R, NK) * self.seller_cover_ticks
        main_cols = self.fac_main_cols
        with np.errstate(divide="ignore", invalid="ignore"):
            unsold = np.where(
                seller_target[:, main_cols] > 0,
                out_flat[:, main_cols] / seller_target[:, main_cols], 0.0,
            )
        planned = self.capacity * self.available * util * rules.unsold_stock_brake(
            unsold, sr.unsold_stock_brake
        )

        # 3. plants and end users draw inputs, rationed pro rata (reserves may top up)
        lnp = self.log_price.reshape(R, -1)
        price_factor = np.exp(
            -w.sector_elasticity * (lnp[:, self.sec_price_idx] - self.lnp0_flat[self.sec_price_idx])
        )
        demand = (self.sec_demand_tick * self.demand_growth[t]) * price_factor \
            * (1.0 - self.substitution) * self.noise[:, t]
        end_demand = demand @ self.SE  # end-use demand by region-product column
        need = planned @ self.FI + end_demand
        stock = self.in_stock.reshape(R, NK)
        if piles is not None:
            piles.release_to_market(need, stock, prices)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(need > 0.0, np.minimum(1.0, stock / need), 1.0)
        ratio_ext = np.concatenate([ratio, np.ones((R, 1))], axis=1)
        activity = planned * ratio_ext[:, self.fac_in_cols].min(axis=2)
        served = demand * ratio[:, self.sec_cols]
        plant_use = activity @ self.FI
        end_use = served @ self.SE
        use = np.minimum(plant_use + end_use, stock)
        prov_flat = self.in_prov.reshape(R, NK)
        with np.errstate(divide="ignore", invalid="ignore"):
            prov_share_in = np.where(stock > 0, prov_flat / stock, 0.0)
        use_prov = use * prov_share_in
        stock -= use
        prov_flat -= use_prov
        if piles is not None and piles.any_members_only:
            extra, extra_prov = piles.release_to_members(demand, served)
            extra_used = extra @ self.SE
            end_use = end_use + extra_used
            use_prov = use_prov + extra_prov @ self.SE

        # 4. output to the sell-side stock, with its provenance; price floors settle
        output = activity @ self.FO
        fac_prov = np.maximum(prov_share_in @ self.fac_in_weight_T, self.fac_is_prov)
        output_prov = (activity * fac_prov) @ self.FO
        out_flat += output
        self.out_prov.reshape(R, NK)[:] += output_prov
        if floors is not None:
            floors.settle(activity, prices, self.out_stock, self.out_prov, seller_target)

        # 5. ordering and shipping
        need3 = need.reshape(R, N, K)
        self.use_exp += self.a_use * (need3 - self.use_exp)
        self.prod_exp += self.a_use * (output.reshape(R, N, K) - self.prod_exp)
        cover = self.cover_ticks
        if controls is not None:  # front-loading: buyers raise stock targets before a control
            cover = cover + controls.cover_extra_days / self.cal.tick_days
        # orders are placed after this tick's arrivals and before its dispatches, when a
        # route of lead L holds L - 1 ticks of shipments: that is the supply line to keep
        order = rules.order_quantity(
            self.use_exp, self.in_stock, self.in_transit, cover,
            self.lead_expected - 1.0, self.a_stock, self.a_line,
        )
        orders = order[:, :, None, :] * self.sourcing  # R, d, o, k
        if controls is not None:
            direct, leaked = controls.restrict(t, orders)
            ordered = direct.sum(axis=1) + leaked.sum(axis=1)
        else:
            direct, leaked = orders, None
            ordered = orders.sum(axis=1)  # R, o, k
        if piles is not None:
            ok = 1.0 - controls.blocked - controls.licensing if controls is not None else \
                np.ones((R, N, N, K))
            ordered = ordered + piles.place_orders(self.sourcing, self.use_exp, ok,
                                                   origin_price).sum(axis=1)
        fill = rules.fill_ratio(self.out_stock, ordered)
        shipped = direct * fill[:, None, :, :]
        delivered = shipped if controls is None else shipped * controls.delivered_share()
        if leaked is not None:
            leaked = leaked * fill[:, None, :, :]
            delivered = delivered + leaked
        with np.errstate(divide="ignore", invalid="ignore"):
            self.reliability += self.a_line * (
                np.where(orders > 0, delivered / orders, self.reliability) - self.reliability
            )
        sent = ordered * fill
        with np.errstate(divide="ignore", invalid="ignore"):
            prov_share_out = np.where(self.out_stock > 0, self.out_prov / self.out_stock, 0.0)
        self.out_stock -= sent
        np.maximum(self.out_stock, 0.0, out=self.out_stock)
        self.out_prov -= sent * prov_share_out
        np.maximum(self.out_prov, 0.0, out=self.out_prov)
        if piles is not None:
            piles.receive(fill, prov_share_out, origin_price)
        in_transit_add = shipped.sum(axis=2)
        ship_prov = shipped * prov_share_out[:, None, :, :]
        recorded = shipped
        if controls is not None:
            controls.count_quota(shipped)
            shipped, ship_prov = controls.queue_for_licences(t, shipped, ship_prov)
            if leaked is not None and leaked.any():
                self._ship(t, leaked, leaked * prov_share_out[:, None, :, :], offer,
                           controls.leak_extra_ticks)
                in_transit_add = in_transit_add + leaked.sum(axis=2)
                recorded = recorded + leaked
        self._ship(t, shipped, ship_prov, offer)
        self.in_transit += in_transit_add

        # 6. prices move with inventory cover in each market
        stock_total = self.in_stock + self.out_stock
        held = stock_total
        if controls is not None and controls.has_licensing:
            held = stock_total + controls.held_at_origin()  # waiting in the exporter's warehouses
        target_total = self.use_exp * cover + self.prod_exp * self.seller_cover_ticks
        stock_m = self.Mmat @ held
        target_m = self.Mmat @ target_total
        with np.errstate(divide="ignore", invalid="ignore"):
            cover_ratio = np.where(target_m > 0, stock_m / target_m, 1.0)
        cover_ratio = np.clip(cover_ratio, mr.cover_ratio_floor, mr.cover_ratio_cap)
        self.log_price = np.clip(
            rules.log_price_step(self.log_price, self.log_expected, cover_ratio,
                                 mr.cover_sensitivity, self.a_price),
            self.lnp_min, self.lnp_max,
        )
        self.log_expected += self.a_exp * (self.log_price - self.log_expected) \
            + self.a_anchor * (self.lnp0 - self.log_expected)
        if piles is not None:
            piles.account()

        # invariants and ledger
        check_non_negative(t, self.in_stock, self.out_stock, w)
        self.produced += output.reshape(R, N, K).sum(1)
        self.used += (use + extra_used).reshape(R, N, K).sum(1)

        # 7. record
        mi = self.month_of_tick[t]
        rec = self.rec
        rec["production"][:, mi] += output.reshape(R, N, K)
        rec["input_use"][:, mi] += plant_use.reshape(R, N, K)
        rec["consumption"][:, mi] += end_use.reshape(R, N, K)
        rec["demand"][:, mi] += end_demand.reshape(R, N, K)
        rec["unmet"][:, mi] += (end_demand - end_use).reshape(R, N, K)
        rec["provenance_use"][:, mi] += use_prov.reshape(R, N, K)
        rec["inventory"][:, mi] = stock_total
        rec["shipments"][:, mi] += recorded
        rec["price"][:, mi] += np.exp(self.log_price)
        rec["sector_demand"][:, mi] += demand
        rec["sector_unmet"][:, mi] += demand - served
        rec["sector_substitution"][:, mi] = self.substitution
        rec["capacity"][:, mi] = self.capacity * self.cal.ticks_per_year
        if "licences_pending" in rec:
            rec["licences_pending"][:, mi] = controls.held_at_origin()
        if piles is not None:
            self.lever_rec["stockpile_level"][:, mi] = piles.level
            per_day = self.use_exp[:, [sp.holder for sp in piles.piles]] / self.cal.tick_days
            self.lever_rec["stockpile_days_of_cover"][:, mi] = np.divide(
                piles.level, per_day, out=np.zeros_like(per_day), where=per_day > 0)

    def run(self) -> BatchResult:
        w = self.w
        self.env.run(until=self.cal.horizon_days - 0.5 * self.cal.tick_days + 1e-9)
        check_mass_balance(
            w, self.initial_total, self.produced, self.used, self._stock_total_by_product(),
        )
        rec = self.rec
        rec["price"] /= self.ticks_in_month[None, :, None, None]
        # SimPy does not count events; every event is scheduled through `schedule`,
        # so its internal event id counter is the number of events created.
        n_events = int(self.env._eid.__next__())  # type: ignore[attr-defined]
        return BatchResult(
            replications=self.reps, months=self.months, ticks_in_month=self.ticks_in_month,
            n_events=n_events, lever_series=self.lever_rec or None, **rec,
        )
