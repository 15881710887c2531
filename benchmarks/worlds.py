"""Worlds of 5 to 40 regions for the scaling benchmark, made from the 2024 rare-earth world.

World totals (capacity, demand, flows) stay the same; only the number of regions
changes, so the curve shows the cost of the region count, not of a larger market:
- fewer than 9 regions: the small producers (VNM, MYS, MMR, AUS, in that order) are
  merged into ROW (their plants, demand and flows become ROW's);
- more than 9: ROW is split into equal parts ROW, ROW02, ROW03, ... Each part gets
  1/k of ROW's plants, demand and flows; trade among the parts stays within each part.
For timing only: these worlds are not calibrated scenarios.
"""

from __future__ import annotations

import copy
from typing import Any

BASE = ["CHN", "USA", "EU", "JPN", "AUS", "MMR", "MYS", "VNM", "ROW"]
MERGE_ORDER = ["VNM", "MYS", "MMR", "AUS"]
MIN_REGIONS = 5


def _route(route: str) -> tuple[str, str]:
    o, d = (p.strip() for p in route.split("->"))
    return o, d


def _merge(world: dict[str, Any], gone: list[str]) -> None:
    def m(r: str) -> str:
        return "ROW" if r in gone else r

    for r in gone:
        world["regions"].pop(r)
    for fac in world["facilities"].values():
        fac["region"] = m(fac["region"])
    demand = world["demand"]["tonnes_per_year"]
    for r in gone:
        for sector, t in demand.pop(r, {}).items():
            demand["ROW"][sector] = demand["ROW"].get(sector, 0.0) + t
    for product, flows in world["trade"]["flows_tpy"].items():
        merged: dict[str, float] = {}
        for route, t in flows.items():
            o, d = _route(route)
            key = f"{m(o)}->{m(d)}"
            merged[key] = merged.get(key, 0.0) + t
        world["trade"]["flows_tpy"][product] = merged
    world["trade"]["transit_days"] = {
        route: days for route, days in world["trade"]["transit_days"].items()
        if not set(_route(route)) & set(gone)}


def _split(world: dict[str, Any], k: int) -> None:
    parts = ["ROW"] + [f"ROW{i:02d}" for i in range(2, k + 1)]
    row = world["regions"]["ROW"]
    for p in parts[1:]:
        world["regions"][p] = {**row, "name": f"Rest of world, part {p[3:]}"}
    for name, fac in list(world["facilities"].items()):
        if fac["region"] != "ROW":
            continue
        fac["capacity_tpy"] = fac["capacity_tpy"] / k
        for p in parts[1:]:
            world["facilities"][f"{name}_{p}"] = {**copy.deepcopy(fac), "region": p}
    demand = world["demand"]["tonnes_per_year"]
    row_demand = {s: t / k for s, t in demand["ROW"].items()}
    for p in parts:
        demand[p] = dict(row_demand)
    for product, flows in world["trade"]["flows_tpy"].items():
        new: dict[str, float] = {}
        for route, t in flows.items():
            o, d = _route(route)
            if o == "ROW" and d == "ROW":
                for p in parts:
                    new[f"{p}->{p}"] = t / k
            elif o == "ROW":
                for p in parts:
                    new[f"{p}->{d}"] = t / k
            elif d == "ROW":
                for p in parts:
                    new[f"{o}->{p}"] = t / k
            else:
                new[route] = t
        world["trade"]["flows_tpy"][product] = new


def scaled_world(world: dict[str, Any], n_regions: int) -> dict[str, Any]:
    """A copy of the rare-earth world config with `n_regions` regions (5 or more)."""
    if n_regions < MIN_REGIONS:
        raise ValueError(f"n_regions={n_regions}: at least {MIN_REGIONS}")
    if list(world["regions"]) != BASE:
        raise ValueError("scaled_world expects the rare_earths world's nine regions")
    w = copy.deepcopy(world)
    if n_regions < len(BASE):
        _merge(w, MERGE_ORDER[: len(BASE) - n_regions])
    elif n_regions > len(BASE):
        _split(w, n_regions - len(BASE) + 1)
    assert len(w["regions"]) == n_regions
    return w
