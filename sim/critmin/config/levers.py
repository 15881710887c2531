"""Check the `levers:` section of a config and compile it into `critmin.core.levers` objects.

Every problem raises `ConfigError` naming the key (e.g.
`levers.price_floors.mp.floor_usd_per_kg`), the value and what is allowed.
Dates become days since the run's start date; an open end is `inf`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from ..core.calendar import Calendar
from ..core.levers import (
    NEVER,
    CapacityAddition,
    ExportControl,
    ExportDiscount,
    Levers,
    Permitting,
    PriceClub,
    PriceFloor,
    Stockpile,
    Tariff,
)
from ..core.world import World
from . import schema
from .build import (
    ConfigError,
    Plain,
    _check,
    _non_negative,
    _number,
    _one_of,
    _positive,
    _share,
    parse_date,
    plain,
)
from .schema import FacilityConfig

FORMS = ("ban", "quota", "licensing")


def new_facility_name(region: str, recipe: str) -> str:
    return f"{region}_{recipe}_new"


def with_planned_facilities(world_cfg: Any, levers_cfg: Any) -> Plain:
    """Give every capacity addition a plant to grow: an existing plant of the same recipe in the
    region, else a new plant of zero capacity named REGION_recipe_new. Returns the world config
    as `Plain`, with the new plants if any (`world_cfg` itself is not changed)."""
    out, copied = plain(world_cfg), False
    for name, ca in plain(levers_cfg).capacity_additions.items():
        key = f"levers.capacity_additions.{name}"
        _one_of(ca.region, list(out.regions), f"{key}.region")
        _one_of(ca.recipe, list(out.recipes), f"{key}.recipe")
        _share(ca.utilisation, f"{key}.utilisation")
        if _find_facility(out, ca.region, ca.recipe) is None:
            if not copied:  # a copy of what changes
                out, copied = Plain(out, facilities=Plain(out.facilities)), True
            out.facilities[new_facility_name(ca.region, ca.recipe)] = plain(dataclasses.asdict(
                FacilityConfig(region=ca.region, recipe=ca.recipe, capacity_tpy=0.0,
                               utilisation=float(ca.utilisation),
                               source=f"planned plant of capacity addition {name}")))
    return out


def _find_facility(world_cfg: Any, region: str, recipe: str) -> str | None:
    for fname, fc in world_cfg.facilities.items():
        if fc.region == region and fc.recipe == recipe:
            return fname
    return None


class _Ctx:
    """What the checks need: the world's names and the calendar."""

    def __init__(self, world: World, cal: Calendar, stages: list[str]) -> None:
        self.w, self.cal, self.stages = world, cal, stages
        self.regions = list(world.regions)
        self.products = list(world.products)

    def day(self, value: Any, key: str, default: float | None = None) -> float:
        if value is None:
            if default is None:
                raise ConfigError(key, value, "must be an ISO date like 2025-04-04")
            return default
        return float(self.cal.day_of_date(parse_date(value, key)))

    def region(self, value: Any, key: str) -> int:
        _one_of(value, self.regions, key)
        return self.regions.index(value)

    def region_mask(self, values: Any, key: str, empty_means_all: bool = True) -> np.ndarray:
        mask = np.zeros(len(self.regions), dtype=bool)
        for v in values:
            mask[self.region(v, key)] = True
        if not len(values) and empty_means_all:
            mask[:] = True
        return mask

    def product_mask(self, values: Any, key: str) -> np.ndarray:
        mask = np.zeros(len(self.products), dtype=bool)
        for v in values:
            _one_of(v, self.products, key)
            mask[self.products.index(v)] = True
        if not len(values):
            mask[:] = True
        return mask

    def window(self, start: Any, end: Any, key: str, start_default: float | None = None
               ) -> tuple[float, float]:
        s = self.day(start, f"{key}.start_date", start_default)
        e = NEVER if end is None else self.day(end, f"{key}.end_date")
        _check(e > s, f"{key}.end_date", end, f"must be after start_date ({start})")
        return s, e


def _route_cover(ctx: _Ctx, exporter: int | None, dest: np.ndarray, origin: np.ndarray,
                 products: np.ndarray) -> np.ndarray:
    """(dest, origin, K) mask; a region never controls or taxes its own internal trade."""
    cover = dest[:, None, None] & origin[None, :, None] & products[None, None, :]
    n = len(ctx.regions)
    cover &= ~np.eye(n, dtype=bool)[:, :, None]
    return cover


def _dates_to_rates(ctx: _Ctx, table: Any, key: str, what: str) -> list[tuple[float, float]]:
    out = []
    for date, rate in table.items():
        day = ctx.day(date, f"{key}.{date}")
        _non_negative(rate, f"{key}.{date}", what)
        out.append((day, float(rate)))
    return sorted(out)


def build_export_control(ctx: _Ctx, name: str, ec: Any) -> ExportControl:
    key = f"levers.export_controls.{name}"
    exporter = ctx.region(ec.exporter, f"{key}.exporter")
    _one_of(ec.form, FORMS, f"{key}.form")
    products = ctx.product_mask(ec.products, f"{key}.products")
    dest = ctx.region_mask(ec.destinations, f"{key}.destinations")
    dest &= ~ctx.region_mask(ec.except_destinations, f"{key}.except_destinations", False)
    origin = np.zeros(len(ctx.regions), dtype=bool)
    origin[exporter] = True
    start, end = ctx.window(ec.start_date, ec.end_date, key)
    announce = ctx.day(ec.announce_date, f"{key}.announce_date", start)
    _check(announce <= start, f"{key}.announce_date", ec.announce_date,
           f"must be on or before start_date ({ec.start_date})")
    _share(ec.lift_probability, f"{key}.lift_probability")
    _non_negative(ec.front_loading_extra_cover_days, f"{key}.front_loading_extra_cover_days", "days")
    quota = 0.0
    if ec.form == "quota":
        _check(ec.quota_tpy is not None, f"{key}.quota_tpy", ec.quota_tpy,
               "a quota needs quota_tpy, the tonnes allowed per calendar year")
        _non_negative(ec.quota_tpy, f"{key}.quota_tpy", "t/yr")
        quota = float(ec.quota_tpy)
    elif ec.quota_tpy is not None:
        raise ConfigError(f"{key}.quota_tpy", ec.quota_tpy,
                          f"only used when form is quota (form is {ec.form})")
    if ec.form == "licensing":
        _positive(ec.licence_delay_days, f"{key}.licence_delay_days", "days")
    _non_negative(ec.licence_delay_days, f"{key}.licence_delay_days", "days")
    _non_negative(ec.licence_delay_cv, f"{key}.licence_delay_cv")
    _share(ec.approval_rate, f"{key}.approval_rate")
    approval = np.full(len(ctx.regions), np.nan)
    for region, rate in ec.approval_rate_by_destination.items():
        n = ctx.region(region, f"{key}.approval_rate_by_destination")
        _share(rate, f"{key}.approval_rate_by_destination.{region}")
        approval[n] = rate
    changes = _dates_to_rates(ctx, ec.approval_rate_changes, f"{key}.approval_rate_changes", "")
    for _, rate in changes:
        _share(rate, f"{key}.approval_rate_changes")
    suspend = NEVER if ec.suspend_date is None else ctx.day(ec.suspend_date, f"{key}.suspend_date")
    if suspend < NEVER:
        _check(start <= suspend < end, f"{key}.suspend_date", ec.suspend_date,
               "must fall between start_date and end_date")
    resume = NEVER if ec.resume_date is None else ctx.day(ec.resume_date, f"{key}.resume_date")
    if ec.resume_date is not None:
        _check(suspend < resume, f"{key}.resume_date", ec.resume_date,
               "must come after suspend_date (set suspend_date too)")
    _share(ec.reimpose_probability_per_month, f"{key}.reimpose_probability_per_month")
    _share(ec.leakage_share, f"{key}.leakage_share")
    _non_negative(ec.leakage_cost_usd_per_kg, f"{key}.leakage_cost_usd_per_kg", "US$/kg")
    _non_negative(ec.leakage_extra_days, f"{key}.leakage_extra_days", "days")
    cover = _route_cover(ctx, exporter, dest, origin, products)
    _check(cover.any(), f"{key}.destinations", list(ec.destinations),
           "the control covers no route: list destinations other than the exporter")
    return ExportControl(
        name=name, form=ec.form, exporter=exporter, cover=cover, start_day=start, end_day=end,
        lift_probability=float(ec.lift_probability), announce_day=announce,
        front_loading_cover_days=float(ec.front_loading_extra_cover_days), quota_tpy=quota,
        delay_mean_days=float(ec.licence_delay_days), delay_cv=float(ec.licence_delay_cv),
        approval=approval, approval_changes=tuple(changes), base_approval=float(ec.approval_rate),
        suspend_day=suspend, resume_day=resume,
        reimpose_per_month=float(ec.reimpose_probability_per_month),
        leakage_share=float(ec.leakage_share), leakage_cost_usd_per_kg=float(ec.leakage_cost_usd_per_kg),
        leakage_extra_days=float(ec.leakage_extra_days),
    )


def build_tariff(ctx: _Ctx, name: str, tc: Any) -> Tariff:
    key = f"levers.tariffs.{name}"
    _check(len(tc.importers) > 0, f"{key}.importers", list(tc.importers), "list at least one region")
    dest = ctx.region_mask(tc.importers, f"{key}.importers")
    origin = ctx.region_mask(tc.origins, f"{key}.origins")
    origin &= ~ctx.region_mask(tc.except_origins, f"{key}.except_origins", False)
    products = ctx.product_mask(tc.products, f"{key}.products")
    for p in tc.exempt_products:
        _one_of(p, ctx.products, f"{key}.exempt_products")
        products[ctx.products.index(p)] = False
    _non_negative(tc.rate, f"{key}.rate", "(a share: 0.25 = 25 %)")
    start, end = ctx.window(tc.start_date, tc.end_date, key, start_default=-math.inf)
    schedule = [(start, float(tc.rate))]
    for day, rate in _dates_to_rates(ctx, tc.schedule, f"{key}.schedule", "(a share)"):
        _check(start <= day < end, f"{key}.schedule", ctx.cal.date_of_day(day).isoformat(),
               "dates must fall between start_date and end_date")
        schedule.append((day, rate))
    if end < NEVER:
        schedule.append((end, 0.0))
    return Tariff(name=name, cover=_route_cover(ctx, None, dest, origin, products),
                  schedule=tuple(schedule))


def build_stockpile(ctx: _Ctx, name: str, sc: Any) -> Stockpile:
    key = f"levers.stockpiles.{name}"
    w = ctx.w
    holder = ctx.region(sc.holder, f"{key}.holder")
    _check(len(sc.products) > 0, f"{key}.products", list(sc.products), "list at least one product")
    products = ctx.product_mask(sc.products, f"{key}.products")
    initial = np.zeros(len(ctx.products))
    for p, t in sc.initial_tonnes.items():
        _one_of(p, list(sc.products), f"{key}.initial_tonnes")
        _non_negative(t, f"{key}.initial_tonnes.{p}", "t")
        initial[ctx.products.index(p)] = t
    for field in ("budget_usd", "loan_usd", "private_capital_usd", "member_fees_usd_per_year"):
        _non_negative(getattr(sc, field), f"{key}.{field}", "US$")
    _non_negative(sc.loan_rate_per_year, f"{key}.loan_rate_per_year", "per year")
    start = ctx.day(sc.start_date, f"{key}.start_date", 0.0)
    _non_negative(sc.target_days, f"{key}.target_days", "days of the holder's use")
    _non_negative(sc.max_purchase_days_per_year, f"{key}.max_purchase_days_per_year", "days per year")
    _positive(sc.price_cap_multiple, f"{key}.price_cap_multiple", "x starting price")
    buy = np.zeros(len(ctx.regions), dtype=bool)
    markets = list(w.markets)
    for m in sc.buy_markets:
        _one_of(m, markets, f"{key}.buy_markets")
        buy |= w.region_market == markets.index(m)
    if not len(sc.buy_markets):
        buy[:] = True
    _share(sc.release_when_shortfall_above, f"{key}.release_when_shortfall_above")
    price_x = NEVER
    if sc.release_when_price_above_multiple is not None:
        _positive(sc.release_when_price_above_multiple, f"{key}.release_when_price_above_multiple",
                  "x starting price")
        price_x = float(sc.release_when_price_above_multiple)
    rate = _number(sc.release_share_per_month, f"{key}.release_share_per_month")
    _check(0.0 < rate <= 1.0, f"{key}.release_share_per_month", sc.release_share_per_month,
           "must be a share of the stock in (0, 1]: a reserve cannot release more than it holds")
    kinds = set(w.sector_kind)
    for m in sc.members:
        _one_of(m, sorted(kinds), f"{key}.members")
    in_region = w.sector_region == holder
    members = in_region & np.isin(np.array(w.sector_kind), list(sc.members)) if len(sc.members) \
        else in_region
    sale = math.nan
    if sc.sale_price_multiple is not None:
        _positive(sc.sale_price_multiple, f"{key}.sale_price_multiple", "x starting price")
        sale = float(sc.sale_price_multiple)
    _non_negative(sc.holding_cost_share_per_year, f"{key}.holding_cost_share_per_year", "per year")
    return Stockpile(
        name=name, holder=holder, products=products, initial_tonnes=initial,
        budget_usd=float(sc.budget_usd), loan_usd=float(sc.loan_usd),
        loan_rate_per_year=float(sc.loan_rate_per_year),
        private_capital_usd=float(sc.private_capital_usd),
        member_fees_usd_per_year=float(sc.member_fees_usd_per_year), start_day=start,
        target_days=float(sc.target_days), max_purchase_days_per_year=float(sc.max_purchase_days_per_year),
        price_cap_multiple=float(sc.price_cap_multiple), buy_origins=buy,
        release_shortfall=float(sc.release_when_shortfall_above), release_price_multiple=price_x,
        release_share_per_month=rate, member_sectors=members, members_only=bool(len(sc.members)),
        sale_price_multiple=sale, holding_cost_share_per_year=float(sc.holding_cost_share_per_year),
    )


def build_price_floor(ctx: _Ctx, name: str, fc: Any) -> PriceFloor:
    key = f"levers.price_floors.{name}"
    w = ctx.w
    _check(len(fc.facilities) > 0, f"{key}.facilities", list(fc.facilities),
           "list at least one plant from world.facilities")
    _one_of(fc.product, ctx.products, f"{key}.product")
    k = ctx.products.index(fc.product)
    mask = np.zeros(len(w.facilities), dtype=bool)
    for f in fc.facilities:
        _one_of(f, list(w.facilities), f"{key}.facilities")
        i = w.facilities.index(f)
        _check(w.fac_outputs[i, k] > 0, f"{key}.product", fc.product,
               f"plant {f} does not make {fc.product}")
        mask[i] = True
    regions = {int(w.fac_region[i]) for i in np.flatnonzero(mask)}
    _check(len(regions) == 1, f"{key}.facilities", list(fc.facilities),
           "covered plants must be in one region (make one floor per region)")
    value = _number(fc.floor_usd_per_kg, f"{key}.floor_usd_per_kg")
    _check(value >= 0, f"{key}.floor_usd_per_kg", fc.floor_usd_per_kg, "must be >= 0 US$/kg")
    start = ctx.day(fc.start_date, f"{key}.start_date")
    _positive(fc.years, f"{key}.years", "years")
    payer = ctx.region(fc.payer, f"{key}.payer") if fc.payer is not None else regions.pop()
    _share(fc.upside_share, f"{key}.upside_share")
    above = NEVER
    if fc.upside_above_usd_per_kg is not None:
        _non_negative(fc.upside_above_usd_per_kg, f"{key}.upside_above_usd_per_kg", "US$/kg")
        above = float(fc.upside_above_usd_per_kg)
    return PriceFloor(
        name=name, facilities=mask, product=k, floor_usd_per_kg=value, start_day=start,
        end_day=start + float(fc.years) * 365.25, payer=payer, upside_share=float(fc.upside_share),
        upside_above_usd_per_kg=above, offtake=bool(fc.offtake),
    )


def build_price_club(ctx: _Ctx, name: str, cc: Any) -> PriceClub:
    key = f"levers.price_clubs.{name}"
    _check(len(cc.members) > 0, f"{key}.members", list(cc.members), "list at least one region")
    members = ctx.region_mask(cc.members, f"{key}.members")
    floor = np.zeros(len(ctx.products))
    for p, v in cc.floor_usd_per_kg.items():
        _one_of(p, ctx.products, f"{key}.floor_usd_per_kg")
        value = _number(v, f"{key}.floor_usd_per_kg.{p}")
        _check(value >= 0, f"{key}.floor_usd_per_kg.{p}", v, "must be >= 0 US$/kg")
        floor[ctx.products.index(p)] = value
    start, end = ctx.window(cc.start_date, cc.end_date, key)
    cover = _route_cover(ctx, None, members, ~members, floor > 0)
    return PriceClub(name=name, cover=cover, floor_usd_per_kg=floor, start_day=start, end_day=end)


def build_export_discount(ctx: _Ctx, name: str, dc: Any) -> ExportDiscount:
    key = f"levers.export_discounts.{name}"
    exporter = ctx.region(dc.exporter, f"{key}.exporter")
    products = ctx.product_mask(dc.products, f"{key}.products")
    dest = ctx.region_mask(dc.destinations, f"{key}.destinations")
    dest &= ~ctx.region_mask(dc.except_destinations, f"{key}.except_destinations", False)
    origin = np.zeros(len(ctx.regions), dtype=bool)
    origin[exporter] = True
    share = _number(dc.discount_share, f"{key}.discount_share")
    _check(0.0 <= share < 1.0, f"{key}.discount_share", dc.discount_share, "must be a share in [0, 1)")
    start, end = ctx.window(dc.start_date, dc.end_date, key)
    return ExportDiscount(name=name, cover=_route_cover(ctx, exporter, dest, origin, products),
                          share=share, start_day=start, end_day=end)


def build_capacity_addition(ctx: _Ctx, name: str, ca: Any, world_cfg: Any) -> CapacityAddition:
    key = f"levers.capacity_additions.{name}"
    w = ctx.w
    fname = _find_facility(world_cfg, ca.region, ca.recipe)
    f = w.facilities.index(fname)
    _non_negative(ca.capacity_tpy, f"{key}.capacity_tpy", "t/yr")
    announce = ctx.day(ca.announce_date, f"{key}.announce_date")
    _positive(ca.lead_years, f"{key}.lead_years", "years")
    _non_negative(ca.lead_cv, f"{key}.lead_cv")
    _share(ca.failure_probability, f"{key}.failure_probability")
    offtake = np.zeros(len(ctx.regions))
    for region, share in ca.offtake.items():
        n = ctx.region(region, f"{key}.offtake")
        _share(share, f"{key}.offtake.{region}")
        offtake[n] = share
    if not len(ca.offtake):
        offtake[w.fac_region[f]] = 1.0
    _check(offtake.sum() <= 1.0 + 1e-9, f"{key}.offtake", dict(ca.offtake),
           "shares of the output must add up to at most 1")
    _non_negative(ca.funding_usd, f"{key}.funding_usd", "US$")
    payer = ctx.region(ca.payer, f"{key}.payer") if ca.payer is not None else int(w.fac_region[f])
    return CapacityAddition(
        name=name, facility=f, capacity_tpy=float(ca.capacity_tpy), announce_day=announce,
        lead_days=float(ca.lead_years) * 365.25, lead_cv=float(ca.lead_cv),
        failure_probability=float(ca.failure_probability), offtake=offtake,
        programme=str(ca.programme), funding_usd=float(ca.funding_usd), payer=payer,
    )


def build_permitting(ctx: _Ctx, pc: Any) -> Permitting:
    key = "levers.permitting"
    _positive(pc.lead_time_multiple, f"{key}.lead_time_multiple", "x lead time")
    for s in pc.stages:
        _one_of(s, ctx.stages, f"{key}.stages")
    covered = np.isin(np.array(ctx.w.fac_stage), list(pc.stages))
    start = ctx.day(pc.start_date, f"{key}.start_date", -math.inf)
    return Permitting(lead_time_multiple=float(pc.lead_time_multiple), facilities=covered,
                      start_day=start)


def _check_fields(levers_cfg: Any) -> None:
    """Refuse fields the schema does not know (`+levers.x.y.typo=1` slips past composition)."""
    kinds = {f.name: f.type for f in dataclasses.fields(schema.LeversConfig)}
    for kind in kinds:
        node = levers_cfg[kind]
        instances = [("", node)] if kind == "permitting" else list(node.items())
        cls = schema.PermittingConfig if kind == "permitting" else _INSTANCE_TYPES[kind]
        known = [f.name for f in dataclasses.fields(cls)]
        for name, inst in instances:
            for key in inst.keys():
                if key not in known:
                    where = f"levers.{kind}" + (f".{name}" if name else "")
                    raise ConfigError(f"{where}.{key}", inst[key],
                                      f"unknown field; the fields are {', '.join(known)}")


_INSTANCE_TYPES = {
    "export_controls": schema.ExportControlConfig, "tariffs": schema.TariffConfig,
    "stockpiles": schema.StockpileConfig, "price_floors": schema.PriceFloorConfig,
    "price_clubs": schema.PriceClubConfig, "export_discounts": schema.ExportDiscountConfig,
    "capacity_additions": schema.CapacityAdditionConfig,
}


def build_levers(levers_cfg: Any, world: World, cal: Calendar, world_cfg: Any) -> Levers:
    """Check every lever and compile them; `world` must be built from `world_cfg` as
    `with_planned_facilities` returns it."""
    levers_cfg, world_cfg = plain(levers_cfg), plain(world_cfg)
    _check_fields(levers_cfg)
    ctx = _Ctx(world, cal, list(world_cfg.stages))
    lc = levers_cfg
    return Levers(
        export_controls=tuple(build_export_control(ctx, n, c) for n, c in lc.export_controls.items()),
        tariffs=tuple(build_tariff(ctx, n, c) for n, c in lc.tariffs.items()),
        price_clubs=tuple(build_price_club(ctx, n, c) for n, c in lc.price_clubs.items()),
        export_discounts=tuple(build_export_discount(ctx, n, c)
                               for n, c in lc.export_discounts.items()),
        stockpiles=tuple(build_stockpile(ctx, n, c) for n, c in lc.stockpiles.items()),
        price_floors=tuple(build_price_floor(ctx, n, c) for n, c in lc.price_floors.items()),
        capacity_additions=tuple(build_capacity_addition(ctx, n, c, world_cfg)
                                 for n, c in lc.capacity_additions.items()),
        permitting=build_permitting(ctx, lc.permitting),
    )
