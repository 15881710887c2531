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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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
from .world import World, differences

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

# World fields that may differ between the replications of one batch (`worlds=`: uncertain
# parameters drawn per replication, runner.simulate_uncertain). Each is read per
# replication where it is used, with the same arithmetic as a replication run alone.
PER_REPLICATION = frozenset({
    "sector_elasticity", "sector_substitution_max", "sector_substitution_rate_per_year",
    "demand_growth_per_year", "supply.utilisation_price_elasticity", "fac_utilisation",
    "fac_expansion_lead_years", "fac_outage_rate_per_year", "fac_outage_mean_days",
    "fac_outage_share",
})
# ... and lever settings: these fields of every export control (Levers.export_controls[i])
PER_REPLICATION_LEVERS = frozenset({"delay_mean_days", "base_approval", "reimpose_per_month"})


def _per_replication_lever(path: str) -> bool:
    """`path` (as `differences` names it) is a setting in PER_REPLICATION_LEVERS."""
    kind, _, field = path.partition("].")
    return kind.startswith("export_controls[") and field in PER_REPLICATION_LEVERS


def not_per_replication(world: World, levers: Levers, other_world: World,
                        other_levers: Levers) -> list[str]:
    """The fields where a replication's world or levers differ from a batch's in a way the
    engine cannot take per replication ([]: the replication can join the batch)."""
    return ([d for d in differences(world, other_world) if d not in PER_REPLICATION]
            + [f"levers.{d}" for d in differences(levers, other_levers)
               if not _per_replication_lever(d)])

# Monthly region-product flows [R, month, N, K], recorded together (one block, one add a tick)
FLOWS = ("production", "input_use", "consumption", "demand", "unmet", "provenance_use")


def pair(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.stack((a, b)) for two arrays of one shape, at a fraction of its call overhead."""
    return np.concatenate((a, b)).reshape(2, *a.shape)


@dataclass
class BatchResult:
    """Monthly outputs of a batch of replications (arrays [R, month, ...])."""

    replications: np.ndarray  # (R,) replication numbers
    months: list  # datetime.date of each month's first day
    ticks_in_month: np.ndarray  # (MT,) ticks that start in the month (prices are their mean)
    days_in_month: np.ndarray  # (MT,) days of the month recorded (Calendar.month_split)
    production: np.ndarray  # [R, MT, N, K] t
    input_use: np.ndarray  # [R, MT, N, K] t used by plants
    consumption: np.ndarray  # [R, MT, N, K] t used by end users
    demand: np.ndarray  # [R, MT, N, K] t end-use demand
    unmet: np.ndarray  # [R, MT, N, K] t end-use demand not served
    provenance_use: np.ndarray  # [R, MT, N, K] t of use that passed the provenance region
    inventory: np.ndarray  # [R, MT, N, K] t at month end (buy- and sell-side)
    price: np.ndarray  # [R, MT, M, K] USD/kg, monthly mean
    sector_demand: np.ndarray  # [R, MT, S] t
    sector_unmet: np.ndarray  # [R, MT, S] t
    sector_substitution: np.ndarray  # [R, MT, S] share of the sector's demand substituted away, month end
    capacity: np.ndarray  # [R, MT, F] t/yr at month end
    n_events: int  # SimPy events processed
    # [R, MT, dest, origin, K] t dispatched; None if not recorded (`record_shipments`)
    shipments: np.ndarray | None = None
    tariff_revenue: np.ndarray | None = None  # [R, MT, dest, origin, K] USD
    discount_cost: np.ndarray | None = None  # [R, MT, dest, origin, K] USD
    licences_pending: np.ndarray | None = None  # [R, MT, origin, K] t at month end
    lever_series: dict | None = None  # variable -> [R, MT, instance, K or 1] (LEVER_SERIES)


class Simulation:
    """One SimPy environment driving `len(replications)` replications in lockstep.

    `worlds` and `levers_each`, if given, are the world and levers of each replication:
    they may differ from `world` and `levers` in the fields of PER_REPLICATION and
    PER_REPLICATION_LEVERS only (else ValueError); `world` and `levers` give the rest.
    With `record_shipments` False, the monthly shipments per route are not kept
    (`BatchResult.shipments` is None): nothing else reads them, and with many regions
    or replications they are the largest record (R x months x N x N x K).
    """

    def __init__(
        self,
        world: World,
        calendar: Calendar,
        replications: Sequence[int],
        seed: int,
        progress: Callable[[float], None] | None = None,
        levers: Levers | None = None,
        worlds: Sequence[World] | None = None,
        levers_each: Sequence[Levers] | None = None,
        record_shipments: bool = True,
    ) -> None:
        self.w = w = world
        self.record_shipments = record_shipments
        self.lv = lv = levers if levers is not None else Levers()
        n = len(replications)
        if (worlds is not None and len(worlds) != n) or (levers_each is not None
                                                         and len(levers_each) != n):
            raise ValueError("one world and one set of levers per replication")
        self.own_worlds, self.own_levers = worlds is not None, levers_each is not None
        self.worlds = list(worlds) if worlds is not None else [world] * n
        self.levers_each = list(levers_each) if levers_each is not None else [lv] * n
        other = {d for x, y in zip(self.worlds, self.levers_each, strict=True)
                 if x is not w or y is not lv for d in not_per_replication(w, lv, x, y)}
        if other:
            raise ValueError(f"the replications differ in {sorted(other)}, which the engine "
                             "does not read per replication")
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
        # (the starting log price and -elasticity of each end use, gathered once for the tick)
        self.sec_lnp0 = np.log(w.price0_usd_per_kg).reshape(-1)[self.sec_price_idx]
        self.sec_neg_elasticity = -self._field(lambda x: x.sector_elasticity)  # [S] or [R, S]
        self.sec_subst_max = self._field(lambda x: x.sector_substitution_max)
        self.sec_subst_rate = self._field(lambda x: x.sector_substitution_rate_per_year)
        self.fac_util = self._field(lambda x: x.fac_utilisation)  # [F] or [R, F]
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
        # landed cost on each route at starting prices [1, dest, origin, K]
        self.landed0 = (self.p0_origin[None, :, :] + w.transport_usd_per_kg[:, :, None])[None]
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
        util_e = self._field(lambda x: x.supply.utilisation_price_elasticity)  # () or (R,)
        self.util_elasticity = np.where(w.fac_byproduct, 0.0,
                                        util_e[:, None] if self.own_worlds else util_e)
        t = np.arange(cal.n_ticks)
        self.sec_demand_tick = w.sector_demand_tpy / tpy
        # trend demand of each end use at each tick [T, S] (or [T, R, S] with own worlds),
        # before price, substitution and noise
        if self.own_worlds:
            growth = self._field(lambda x: x.demand_growth_per_year)
            self.demand_growth = (1.0 + growth[None, :]) ** (t[:, None] / tpy)  # T, R
            self.sec_demand_trend = self.sec_demand_tick[None, None, :] * self.demand_growth[..., None]
        else:
            self.demand_growth = (1.0 + w.demand_growth_per_year) ** (t / tpy)
            self.sec_demand_trend = self.sec_demand_tick[None, :] * self.demand_growth[:, None]

        # --- random draws, one named stream per activity and replication -------
        self.noise = np.empty((R, cal.n_ticks, S))
        for r, rep in enumerate(self.reps):
            z = stream(self.seed, int(rep), "demand").standard_normal((cal.n_ticks, S))
            self.noise[r] = np.maximum(0.0, 1.0 + w.demand_noise_sd * z)
        self.n_reviews = int(cal.horizon_days // tr.review_days) + 2
        sig = np.sqrt(np.log1p(tr.transit_cv**2))
        self.transit_sigma = sig
        self.lead_max = int(
            np.ceil(w.transit_days.max() * np.exp(4 * sig - 0.5 * sig**2) / dt_days)
        ) + 1
        # transit times of every contract review, in ticks [review, R, dest, origin]: drawn
        # up front, as the same arithmetic per review would give (see review_contracts), one
        # replication at a time so that no float temporaries of the full size are held
        self.review_lead_ticks = np.empty((self.n_reviews, R, N, N), dtype=np.int64)
        for r, rep in enumerate(self.reps):
            z = stream(self.seed, int(rep), "transit").standard_normal((self.n_reviews, N, N))
            lead = np.rint(w.transit_days[None] * np.exp(sig * z - 0.5 * sig * sig) / dt_days)
            np.maximum(lead, 1, out=lead)
            np.minimum(lead, self.lead_max, out=lead)
            self.review_lead_ticks[:, r] = lead
        self._init_calendar_years()

        # --- levers (core/policy.py) ----------------------------------------------
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
            wr = self.worlds[r]
            for f in range(F):
                if wr.fac_outage_rate_per_year[f] > 1e-9 and wr.fac_outage_share[f] > 0:
                    env.process(self.break_down(r, f))

    def _field(self, get: Callable[[World], Any]) -> np.ndarray:
        """A world field: as it is, or with own worlds, stacked over the replications."""
        if not self.own_worlds:
            return np.asarray(get(self.w))
        return np.stack([np.asarray(get(x)) for x in self.worlds])

    # ------------------------------------------------------------------ state
    def _init_state(self) -> None:
        """Start in the calibrated steady state: stocks at target, pipelines full."""
        w, R, N, K, F = self.w, self.R, self.N, self.K, self.F
        tpy = self.cal.ticks_per_year
        self.capacity = np.broadcast_to(w.fac_capacity_tpy / tpy, (R, F)).copy()  # t per tick
        self.available = np.ones((R, F))
        self.pending = np.zeros((R, F), dtype=bool)
        self.substitution = np.zeros((R, self.S))
        # the steady state of each replication's world ([1, N, K] if they share one)
        worlds = self.worlds if self.own_worlds else [w]
        activity0 = [w.fac_capacity_tpy / tpy * x.fac_utilisation for x in worlds]
        need0 = np.stack([(a @ self.FI0 + self.sec_demand_tick @ self.SE).reshape(N, K)
                          for a in activity0])
        prod0 = np.stack([(a @ self.FO).reshape(N, K) for a in activity0])
        self.base_sourcing = np.ascontiguousarray(np.transpose(w.base_sourcing, (1, 2, 0)))  # d,o,k
        self.sourcing = np.broadcast_to(self.base_sourcing, (R, N, N, K)).copy()
        self.lead_ticks = np.broadcast_to(self._mean_lead_ticks(), (R, N, N)).copy()
        self.lead_expected = np.einsum("rdok,rdo->rdk", self.sourcing, self.lead_ticks)
        self.lead_line = self.lead_expected - 1.0
        # expected use and output, one array so the tick smooths both in one go
        self.expected = np.empty((2, R, N, K))
        self.use_exp, self.prod_exp = self.expected
        self.use_exp[:] = need0
        self.prod_exp[:] = prod0
        # each stock and its provenance-traced part are one array, so the tick moves both
        # with one numpy call: ins = [in_stock, in_prov], outs = [out_stock, out_prov],
        # pipes = [pipe, pipe_prov] (the names are views and are only updated in place)
        self.ins = np.empty((2, R, N, K))
        self.outs = np.empty((2, R, N, K))
        self.in_stock, self.in_prov = self.ins
        self.out_stock, self.out_prov = self.outs
        np.multiply(self.use_exp, self.cover_ticks, out=self.in_stock)
        np.multiply(self.prod_exp, self.seller_cover_ticks, out=self.out_stock)
        self.reliability = np.ones((R, N, N, K))  # share of orders delivered, by route
        self.log_price = np.broadcast_to(self.lnp0, (R, self.M, K)).copy()
        self.prices = np.exp(self.log_price.reshape(R, -1))  # kept equal to exp(log_price)
        self.keep_share = 1.0 - self.substitution  # demand left after substitution
        self.log_expected = self.log_price.copy()
        # pipelines hold the steady flow of the last `lead` ticks of each route
        self.pipes = np.zeros((2, self.Lp, R, N, K))
        self.pipe, self.pipe_prov = self.pipes
        flow0 = need0[:, :, None, :] * self.base_sourcing  # (1 or R), d, o, k per tick
        lead0 = self.lead_ticks[0]
        for d in range(N):
            for o in range(N):
                for j in range(int(lead0[d, o])):  # due at ticks 0 .. lead-1
                    self.pipe[j % self.Lp, :, d, :] += flow0[:, d, o]
        self.in_transit = self.pipe.sum(0)
        # supply by region and product at start: sourcing follows capacity as it changes
        self.supply0 = (self.capacity * self.fac_util) @ self.FO  # R, N*K
        # provenance tracer: content that passed a mine or plant of the provenance region
        share_out = np.stack([self._steady_provenance_shares(x) for x in worlds])
        share_in = np.stack([np.einsum("dok,ok->dk", self.base_sourcing, so) for so in share_out])
        np.multiply(self.in_stock, share_in, out=self.in_prov)
        np.multiply(self.out_stock, share_out, out=self.out_prov)
        np.multiply(self.pipe, share_in, out=self.pipe_prov)
        # the flat pipeline index of each route, without the slot part
        r_idx = np.arange(R)[:, None, None, None]
        d_idx = np.arange(N)[None, :, None, None]
        k_idx = np.arange(K)[None, None, None, :]
        self.route_rest = ((r_idx * N + d_idx) * K + k_idx + np.zeros((1, 1, N, 1), np.int64))
        self.slot_size = R * N * K
        # shipments of this tick, [quantity, provenance] x [R, dest, origin, K]
        self.load = np.empty((2, R, N, N, K))
        self.shipped, self.ship_prov = self.load
        # the share of each input need the stock covers [R, N*K], and a last column of ones
        # that pads plants' input lists (fac_in_cols); the tick writes the first N*K columns
        self.cover_share_ext = np.ones((R, N * K + 1))
        half = np.arange(2)[:, None, None, None, None]
        self.ship_bins_rest = half * (self.Lp * self.slot_size) + self.route_rest[None]
        self._set_lead_ticks(self.lead_ticks)
        # mass-balance ledger per product
        self.initial_total = self._stock_total_by_product()
        self.produced = np.zeros((R, K))
        self.used = np.zeros((R, K))

    def _init_calendar_years(self) -> None:
        """For quotas: each tick's calendar year, the day that year starts and its length."""
        cal = self.cal  # (numpy's calendar types: a loop over dates took ~4 ms per batch)
        start = np.datetime64(cal.start_date, "D")
        year = (start + np.arange(cal.n_ticks, dtype=np.int64) * cal.tick_days).astype("datetime64[Y]")
        self.tick_year = year.astype(np.int64) + 1970
        first_day = year.astype("datetime64[D]")
        self.year_start_day = (first_day - start).astype(np.int64).astype(float)
        self.year_days = ((year + 1).astype("datetime64[D]") - first_day).astype(np.int64).astype(float)

    def _mean_lead_ticks(self) -> np.ndarray:
        return np.maximum(1, np.rint(self.w.transit_days / self.cal.tick_days)).astype(np.int64)

    def _steady_provenance_shares(self, w: World) -> np.ndarray:
        """Provenance share of each region's output at start in world `w` (the batch's or a
        replication's), by fixed-point over the chain."""
        N, K = self.N, self.K
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
        split = self.cal.month_split()
        self.month_of_tick, self.months = split.month_of_tick, split.months
        MT = len(self.months)
        self.days_in_month = split.days_in_month
        self.ticks_in_month = np.bincount(self.month_of_tick, minlength=MT)
        self.month_ends = np.append(self.month_of_tick[1:] != self.month_of_tick[:-1], True)
        # a tick's flows go to the months its days fall in: share_in_month[t] of them to its
        # month, the rest to the next (or, after the last month, beyond the record)
        self.tick_share = split.share_in_month
        self.share_now = 1.0  # of the tick being cleared (1.0 between ticks)
        z = lambda *shape: np.zeros((R, MT, *shape))  # noqa: E731
        # (the flows and the sectors' demand and unmet demand are views of one block each)
        self.rec_flows = np.zeros((len(FLOWS), R, MT, N, K))
        self.rec_sectors = np.zeros((2, R, MT, S))
        self.rec = dict(zip(FLOWS, self.rec_flows, strict=True))
        # the same blocks with a leading axis of flow x replication, for add_by_month
        self.rec_flows_by_month = self.rec_flows.reshape(-1, MT, N, K)
        self.rec_sectors_by_month = self.rec_sectors.reshape(-1, MT, S)
        self.rec["inventory"] = z(N, K)
        if self.record_shipments:
            self.rec["shipments"] = z(N, N, K)
            self.shipments_month = np.zeros((R, N, N, K))  # this month's, so far
        self.rec["price"] = z(M, K)
        self.rec["sector_demand"], self.rec["sector_unmet"] = self.rec_sectors
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
        """Add [R, K or 1] values of one lever instance to the current month's series (a flow
        during a tick that spans two months is split between them by days)."""
        rec = self.lever_rec[variable]
        if LEVER_SERIES[variable][3] == "last":
            rec[:, self.month_now, instance] = values
        else:
            self.add_by_month(rec[:, :, instance], values)

    def add_by_month(self, rec: np.ndarray, values: np.ndarray, cols: np.ndarray | None = None
                     ) -> None:
        """Add a flow of the current tick to a monthly record [R, month, ...] (its columns `cols`
        of the last axis, if given): to this month, or split by days between this month and
        the next when the tick spans both."""
        mi = self.month_now
        at = (slice(None), mi) if cols is None else (slice(None), mi, cols)
        first, rest = self._split_tick(values)
        rec[at] += first
        if rest is not None and mi + 1 < rec.shape[1]:
            rec[(slice(None), mi + 1, *at[2:])] += rest

    def _split_tick(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """A flow of the current tick as (its part in this month, its part in the next, or None
        if the tick lies in one month)."""
        if self.share_now == 1.0:
            return values, None
        first = values * self.share_now
        return first, values - first

    # ---------------------------------------------------------------- processes
    def clear_markets(self):
        """The weekly market: one tick of production, trade and pricing."""
        n = self.cal.n_ticks
        every = max(1, n // 100)
        for t in range(n):
            self.month_now, self.share_now = self.month_of_tick[t], self.tick_share[t]
            self._tick(t)
            self.month_now = self.month_of_tick[min(t + 1, n - 1)]  # for events between ticks
            self.share_now = 1.0
            if self.progress is not None and ((t + 1) % every == 0 or t + 1 == n):
                self.progress((t + 1) / n)
            yield self.env.timeout(self.cal.tick_days)

    def break_down(self, r: int, f: int):
        """Outages of plant `f` in replication `r`: random failures, random repair times."""
        w = self.worlds[r]
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
        i = 0
        while True:
            yield self.env.timeout(tr.review_days)
            i += 1
            # transit times drawn in __init__: mean * lognormal(sigma), in ticks, clipped
            self._set_lead_ticks(self.review_lead_ticks[min(i, self.n_reviews - 1)])
            target = self._sourcing_target()
            target -= self.sourcing
            target *= move
            self.sourcing += target  # sourcing += move * (target - sourcing)
            self._update_expected_lead()
            price_ratio = np.exp(
                self.log_expected.reshape(self.R, -1).take(self.sec_price_idx, axis=1)
                - self.sec_lnp0
            )
            self.substitution = rules.substitution_step(
                self.substitution, price_ratio, self.sec_subst_max, self.sec_subst_rate, years,
            )
            self.keep_share = 1.0 - self.substitution
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
        # orders are placed when a route of lead L holds L - 1 ticks of shipments (_tick)
        self.lead_line = self.lead_expected - 1.0

    def _base_weights(self) -> np.ndarray:
        """Buyers' base sourcing weights now: the 2024 pattern scaled by each origin's supply
        growth, new origins entering with their world-market share, contracts taken first."""
        w, R, N, K = self.w, self.R, self.N, self.K
        supply = (self.capacity * self.fac_util) @ self.FO  # R, N*K
        grown = np.divide(supply, self.supply0, out=np.zeros_like(supply), where=self.supply0 > 0)
        base = self.base_sourcing[None] * grown.reshape(R, 1, N, K)
        new = np.where(self.supply0 > 0, 0.0, supply).reshape(R, N, K)
        if new.any():  # (with no new origin the term below is + 0.0: skipped)
            world_total = supply.reshape(R, N, K).sum(axis=1, keepdims=True)
            new_share = np.divide(new, world_total, out=np.zeros_like(new), where=world_total > 0)
            base = base + w.trade.openness * new_share[:, None]
        total = rules.sum_over_origins(base)
        if (total > 0).all():
            base /= total
        else:
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
        price = self.prices.reshape(self.R, self.M, self.K)
        _, landed = self._landed_costs(price[:, w.region_market, :])
        landed /= self.landed0
        allowed = self.controls.allowed() if self.controls is not None else None
        return rules.sourcing_target(
            self._base_weights(), landed, self.reliability,
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
        w, sr = self.worlds[r], self.w.supply
        rng = stream(self.seed, int(self.reps[r]), f"investment/{w.facilities[f]}/{self.env.now}")
        mean = w.fac_expansion_lead_years[f] * 365.25 * self.lv.permitting.multiple(f, self.env.now)
        sig = np.sqrt(np.log1p(sr.lead_time_cv**2))
        lead_days = mean * np.exp(sig * rng.standard_normal() - 0.5 * sig * sig)
        added = self.capacity[r, f] * sr.invest_share
        yield self.env.timeout(lead_days)
        self.capacity[r, f] += added
        self.pending[r, f] = False

    # ---------------------------------------------------------------- the tick
    def _set_lead_ticks(self, lead_ticks: np.ndarray) -> None:
        """New transit times [R, dest, origin] in ticks (at the start and at each contract review)."""
        self.lead_ticks = lead_ticks
        self.ship_bins = self._ship_bins(lead_ticks[..., None])
        self.leak_bins = None  # for leaked shipments, made when first needed (_ship)

    def _ship_bins(self, lead: np.ndarray) -> np.ndarray:
        """For a load [2, R, dest, origin, K] shipped on routes of `lead` ticks ([R, dest, origin,
        1 or K]): the flat index of each element in the arrivals [2, lead, R, dest, K], for
        np.bincount. It only changes with transit times, so it is made at contract reviews."""
        # index = ((half * Lp + lead) * R + r) * N + d) * K + k = lead * slot_size + the rest
        bins = lead[None] * self.slot_size + self.ship_bins_rest
        return bins.reshape(-1)

    def _ship(self, t: int, load: np.ndarray, offer: np.ndarray | None,
              extra_ticks: np.ndarray | None = None) -> None:
        """Put shipments in transit: `load` is [quantity, provenance-traced part], each
        [R, dest, origin, K]; duties are charged as they leave."""
        Lp = self.Lp
        if extra_ticks is None:
            bins = self.ship_bins
        else:  # leaked shipments: their extra ticks are fixed, so the bins last a review
            if self.leak_bins is None or self.leak_bins[0] is not extra_ticks:
                self.leak_bins = (extra_ticks,
                                  self._ship_bins(self.lead_ticks[..., None] + extra_ticks[None]))
            bins = self.leak_bins[1]
        # due[:, j]: what arrives j ticks from now (summed over origins in order), which is
        # pipeline slot (t + j) % Lp: one bincount for both halves, then two slice adds
        due = np.bincount(bins, load.reshape(-1), minlength=self.pipes.size)
        due = due.reshape(self.pipes.shape)
        s = t % Lp
        self.pipes[:, s:] += due[:, :Lp - s]
        self.pipes[:, :s] += due[:, Lp - s:]
        if self.terms is not None and offer is not None:
            self.terms.charge(load[0], offer, self.rec["tariff_revenue"], self.rec["discount_cost"],
                              self.add_by_month)

    def _update_reliability(self, orders: np.ndarray, delivered: np.ndarray) -> None:
        """Buyers' memory of the share of their orders each route delivered.

        reliability += a * (delivered / orders - reliability) on routes with orders (elsewhere
        it stays); in place, as route arrays are the largest."""
        rel = self.reliability
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(orders > 0, delivered / orders, rel)
        step -= rel
        step *= self.a_line
        rel += step

    def _tick(self, t: int) -> None:
        # Every line is a few numpy calls on small arrays, so a tick costs about the number of
        # calls: constants are gathered once (__init__), what only changes at contract reviews
        # is kept from them, and stocks are held with their provenance part ([2, ...] arrays).
        w, R, N, K = self.w, self.R, self.N, self.K
        sr, mr = w.supply, w.market_rule
        NK = N * K
        controls, piles, floors, terms = self.controls, self.piles, self.floors, self.terms
        prices = self.prices  # exp(log_price), [R, M*K], as the last price move left it
        origin_price = offer = None
        if terms is not None or piles is not None:
            origin_price = prices.reshape(R, self.M, K)[:, w.region_market, :]  # R, o, K
        if terms is not None:
            offer = terms.offer_price(origin_price)

        # 1. arrivals; licences decided: granted ones ship, refused ones go back to the exporter
        arriving = self.pipes[:, t % self.Lp]  # [quantity, provenance]
        self.ins += arriving
        self.in_transit -= arriving[0]
        arriving[...] = 0.0
        decided = controls.decide_licences(t) if controls is not None and controls.has_licensing \
            else None
        granted = None  # shipments licensed this tick: they leave the exporter now
        if decided is not None:  # (None: nothing was due, so shipping it would add zeros)
            granted, granted_prov, refused, refused_prov = decided
            self._ship(t, pair(granted, granted_prov), offer)
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
            self.fac_util, self.util_elasticity,
            sr.utilisation_min, sr.utilisation_max,
        )
        out_flat = self.out_stock.reshape(R, NK)
        main_cols = self.fac_main_cols
        target_main = self.prod_exp.reshape(R, NK).take(main_cols, axis=1) * self.seller_cover_ticks
        unsold = rules.ratio_or(out_flat.take(main_cols, axis=1), target_main, 0.0)
        planned = self.capacity * self.available * util * rules.unsold_stock_brake(
            unsold, sr.unsold_stock_brake
        )

        # 3. plants and end users draw inputs, rationed pro rata (reserves may top up)
        lnp = self.log_price.reshape(R, -1)
        price_factor = np.exp(
            self.sec_neg_elasticity * (lnp.take(self.sec_price_idx, axis=1) - self.sec_lnp0)
        )
        demand = self.sec_demand_trend[t] * price_factor
        demand *= self.keep_share  # 1 - substitution
        demand *= self.noise[:, t]
        end_demand = demand @ self.SE  # end-use demand by region-product column
        need = planned @ self.FI + end_demand
        stock = self.in_stock.reshape(R, NK)
        if piles is not None:
            piles.release_to_market(need, stock, prices)
        # share of each need the stock covers; the last column (1) pads plants' input lists
        ratio_ext = self.cover_share_ext
        ratio = ratio_ext[:, :NK]
        np.minimum(rules.ratio_or(stock, need, 1.0), 1.0, out=ratio)
        activity = planned * np.minimum.reduce(ratio_ext.take(self.fac_in_cols, axis=1), axis=2)
        served = demand * ratio.take(self.sec_cols, axis=1)
        plant_use = activity @ self.FI
        end_use = served @ self.SE
        use = np.minimum(plant_use + end_use, stock)
        prov_flat = self.in_prov.reshape(R, NK)
        prov_share_in = rules.ratio_or(prov_flat, stock, 0.0)
        use_prov = use * prov_share_in
        stock -= use
        prov_flat -= use_prov
        used = use
        released = piles.release_to_members(demand, served) \
            if piles is not None and piles.any_members_only else None
        if released is not None:  # (None: nothing released, the sums below would add zeros)
            extra, extra_prov = released
            extra_used = extra @ self.SE
            end_use = end_use + extra_used
            use_prov = use_prov + extra_prov @ self.SE
            used = use + extra_used

        # 4. output to the sell-side stock, with its provenance; price floors settle
        fac_prov = np.maximum(prov_share_in @ self.fac_in_weight_T, self.fac_is_prov)
        made = np.concatenate((activity, activity * fac_prov)).reshape(2, R, -1) @ self.FO
        output = made[0]  # and made[1], its provenance-traced part
        self.outs += made.reshape(2, R, N, K)
        if floors is not None:
            seller_target = self.prod_exp.reshape(R, NK) * self.seller_cover_ticks
            floors.settle(activity, prices, self.out_stock, self.out_prov, seller_target)

        # 5. ordering and shipping
        now = np.concatenate((need, output)).reshape(2, R, N, K)
        self.expected += self.a_use * (now - self.expected)  # use_exp and prod_exp
        cover = self.cover_ticks
        if controls is not None:  # front-loading: buyers raise stock targets before a control
            cover = cover + controls.cover_extra_days / self.cal.tick_days
        # orders are placed after this tick's arrivals and before its dispatches, when a
        # route of lead L holds L - 1 ticks of shipments: that is the supply line to keep
        order = rules.order_quantity(
            self.use_exp, self.in_stock, self.in_transit, cover,
            self.lead_line, self.a_stock, self.a_line,
        )
        orders = order[:, :, None, :] * self.sourcing  # R, d, o, k
        if controls is not None:
            direct, leaked = controls.restrict(t, orders)
            ordered = direct.sum(axis=1) + leaked.sum(axis=1)
        else:
            direct, leaked = orders, None
            ordered = np.add.reduce(orders, axis=1)  # R, o, k
        if piles is not None:
            ok = 1.0 - controls.blocked - controls.licensing if controls is not None else \
                np.ones((R, N, N, K))
            ordered = ordered + piles.place_orders(self.sourcing, self.use_exp, ok,
                                                   origin_price).sum(axis=1)
        fill = rules.fill_ratio(self.out_stock, ordered)
        load = self.load  # [shipped, its provenance-traced part]
        shipped, ship_prov = self.shipped, self.ship_prov
        np.multiply(direct, fill[:, None, :, :], out=shipped)
        delivered = shipped if controls is None else shipped * controls.delivered_share()
        if leaked is not None:
            leaked = leaked * fill[:, None, :, :]
            delivered = delivered + leaked
        self._update_reliability(orders, delivered)
        sent = ordered * fill
        prov_share_out = rules.ratio_or(self.out_prov, self.out_stock, 0.0)
        self.outs -= np.concatenate((sent, sent * prov_share_out)).reshape(2, R, N, K)
        np.maximum(self.outs, 0.0, out=self.outs)
        if piles is not None:
            piles.receive(fill, prov_share_out, origin_price)
        in_transit_add = rules.sum_over_origins(shipped).reshape(R, N, K)
        np.multiply(shipped, prov_share_out[:, None, :, :], out=ship_prov)
        # the record counts what leaves an exporter: shipments waiting for a licence count
        # when it is granted (never, if refused), as duties are charged then (_ship)
        recorded = shipped
        if controls is not None:
            controls.count_quota(shipped)
            free, free_prov = controls.queue_for_licences(t, shipped, ship_prov)
            if free is not shipped:  # some wait for a licence
                load = pair(free, free_prov)
                recorded = free
            if leaked is not None and leaked.any():
                self._ship(t, pair(leaked, leaked * prov_share_out[:, None, :, :]), offer,
                           controls.leak_extra_ticks)
                in_transit_add = in_transit_add + leaked.sum(axis=2)
                if self.record_shipments:
                    recorded = recorded + leaked
            if granted is not None and self.record_shipments:
                recorded = recorded + granted
        self._ship(t, load, offer)
        self.in_transit += in_transit_add

        # 6. prices move with inventory cover in each market
        stock_total = self.in_stock + self.out_stock
        held = stock_total
        if controls is not None and controls.has_licensing:
            held = stock_total + controls.held_at_origin()  # waiting in the exporter's warehouses
        target_total = self.use_exp * cover + self.prod_exp * self.seller_cover_ticks
        stock_m = self.Mmat @ held
        target_m = self.Mmat @ target_total
        cover_ratio = rules.ratio_or(stock_m, target_m, 1.0)
        np.maximum(cover_ratio, mr.cover_ratio_floor, out=cover_ratio)
        np.minimum(cover_ratio, mr.cover_ratio_cap, out=cover_ratio)
        log_price = rules.log_price_step(self.log_price, self.log_expected, cover_ratio,
                                         mr.cover_sensitivity, self.a_price)
        np.maximum(log_price, self.lnp_min, out=log_price)
        np.minimum(log_price, self.lnp_max, out=log_price)
        self.log_price = log_price
        self.prices = np.exp(log_price.reshape(R, -1))
        self.log_expected += self.a_exp * (self.log_price - self.log_expected) \
            + self.a_anchor * (self.lnp0 - self.log_expected)
        if piles is not None:
            piles.account()

        # invariants and ledger
        check_non_negative(t, self.in_stock, self.out_stock, w)
        self.produced += np.add.reduce(output.reshape(R, N, K), axis=1)
        self.used += np.add.reduce(used.reshape(R, N, K), axis=1)

        # 7. record: flows add up over the month by days (one call for the region-product
        # ones; a tick that spans two months is split), prices are the mean of the month's
        # ticks, levels are taken at the month's last tick
        mi = self.month_of_tick[t]
        flows = np.concatenate((output, plant_use, end_use, end_demand, end_demand - end_use,
                                use_prov))
        self.add_by_month(self.rec_flows_by_month, flows.reshape(-1, N, K))
        self.add_by_month(self.rec_sectors_by_month,
                          np.concatenate((demand, demand - served)).reshape(2 * R, -1))
        self.rec["price"][:, mi] += self.prices.reshape(R, self.M, K)
        carry = None  # shipments of this tick that fall in the next month
        if self.record_shipments:
            first, carry = self._split_tick(recorded)
            self.shipments_month += first
        if self.month_ends[t]:
            self._record_month_end(mi, stock_total, carry)

    def _record_month_end(self, mi: int, stock_total: np.ndarray,
                          carry: np.ndarray | None) -> None:
        """Levels at the month's last tick, and the month's shipments (added up apart, as
        the monthly record of route arrays is large and far apart in memory; `carry` starts
        the next month's)."""
        rec = self.rec
        if self.record_shipments:
            rec["shipments"][:, mi] = self.shipments_month
            self.shipments_month[...] = 0.0 if carry is None else carry
        rec["inventory"][:, mi] = stock_total
        rec["sector_substitution"][:, mi] = self.substitution
        rec["capacity"][:, mi] = self.capacity * self.cal.ticks_per_year
        if "licences_pending" in rec:
            rec["licences_pending"][:, mi] = self.controls.held_at_origin()
        piles = self.piles
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
            days_in_month=self.days_in_month,
            n_events=n_events, lever_series=self.lever_rec or None, **rec,
        )
