"""Shared helpers: tiny worlds built from plain dicts, and a quick config composer."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from omegaconf import OmegaConf

from critmin.config.build import build_world
from critmin.config.schema import WorldConfig
from critmin.core.calendar import Calendar
from critmin.core.engine import Simulation

# A world of one region: a mine makes 1 t of ore a week, a refinery turns it into
# 0.5 t of metal (half unrecovered), end users need 0.5 t of metal a week.
# Nothing is random and nothing responds to price: every number can be worked out by hand.
TINY: dict[str, Any] = {
    "name": "tiny",
    "provenance_region": "A",
    "reference_market": "m",
    "markets": ["m"],
    "stages": ["mining", "refining"],
    "products": {
        "ore": {"price_usd_per_kg": 1.0, "target_cover_days": 14},
        "metal": {"price_usd_per_kg": 10.0, "target_cover_days": 14},
    },
    "recipes": {
        "mine": {"stage": "mining", "outputs": {"ore": 1.0}},
        "refine": {"stage": "refining", "inputs": {"ore": 1.0}, "outputs": {"metal": 0.5},
                   "unrecovered": 0.5},
    },
    "regions": {"A": {"name": "Aland", "market": "m", "zone": "z"}},
    "facilities": {
        "A_mine": {"region": "A", "recipe": "mine", "capacity_tpy": 52.0, "utilisation": 1.0},
        "A_refinery": {"region": "A", "recipe": "refine", "capacity_tpy": 52.0,
                       "utilisation": 1.0},
    },
    "demand": {
        "growth_per_year": 0.0, "noise_sd": 0.0,
        "sectors": {"users": {"product": "metal", "price_elasticity": 0.0,
                              "substitution_max_share": 0.0}},
        "tonnes_per_year": {"A": {"users": 26.0}},
    },
    "trade": {"transit_cv": 0.0, "openness": 0.0},
    "supply_response": {"utilisation_price_elasticity": 0.0, "invest_share": 0.0},
    "outages": {"rate_per_year": 0.0},
}

# 365.25 / 7 ticks a year: capacities in t/yr that give round weekly numbers
WEEKS_PER_YEAR = 365.25 / 7


def tiny_world(**changes: Any) -> dict[str, Any]:
    """A deep copy of TINY with dotted-key changes, e.g. tiny_world(**{"demand.noise_sd": 0.1})."""
    return with_changes(TINY, changes)


def with_changes(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `base` with dotted-key changes."""
    cfg = copy.deepcopy(base)
    for key, value in changes.items():
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return cfg


def build(cfg: dict[str, Any]):
    merged = OmegaConf.merge(OmegaConf.structured(WorldConfig), OmegaConf.create(cfg))
    return build_world(merged)


def simulate(cfg: dict[str, Any], weeks: int, reps: int = 1, seed: int = 1):
    world = build(cfg)
    cal = Calendar(dt.date(2025, 1, 1), 7, weeks)
    sim = Simulation(world, cal, list(range(reps)), seed)
    return world, sim, sim.run()


@pytest.fixture
def weekly() -> float:
    return WEEKS_PER_YEAR


def build_with_levers(cfg: dict[str, Any], levers: dict[str, Any], calendar: Calendar):
    """World and levers from plain dicts, as `critmin.config.model.build_model` does."""
    from critmin.config.levers import build_levers, with_planned_facilities
    from critmin.config.schema import LeversConfig

    world_cfg = OmegaConf.merge(OmegaConf.structured(WorldConfig), OmegaConf.create(cfg))
    lever_cfg = OmegaConf.merge(OmegaConf.structured(LeversConfig), OmegaConf.create(levers))
    world_cfg = with_planned_facilities(world_cfg, lever_cfg)
    world = build_world(world_cfg)
    return world, build_levers(lever_cfg, world, calendar, world_cfg)


def simulate_levers(cfg: dict[str, Any], levers: dict[str, Any], ticks: int, tick_days: int = 7,
                    reps: int = 1, seed: int = 1, start: dt.date = dt.date(2025, 1, 1),
                    run: bool = True):
    """(world, simulation, results); with run=False the simulation is not started (results None)."""
    cal = Calendar(start, tick_days, ticks)
    world, lv = build_with_levers(cfg, levers, cal)
    sim = Simulation(world, cal, list(range(reps)), seed, levers=lv)
    return world, sim, sim.run() if run else None


# Two regions, one good: A mines metal and sells it to B's end users (B also has a small
# mine of its own, C a spare one). Deterministic, prices fixed (cover_sensitivity 0)
# unless a test changes that.
TRADE: dict[str, Any] = {
    "name": "trade",
    "provenance_region": "A",
    "reference_market": "abroad",
    "markets": ["home", "abroad"],
    "products": {"metal": {"price_usd_per_kg": 10.0, "target_cover_days": 14}},
    "stages": ["mining"],
    "recipes": {"mine": {"stage": "mining", "outputs": {"metal": 1.0}}},
    "regions": {"A": {"name": "Aland", "market": "home", "zone": "z1"},
                "B": {"name": "Bland", "market": "abroad", "zone": "z2"},
                "C": {"name": "Cland", "market": "abroad", "zone": "z3"}},
    "facilities": {
        "A_mine": {"region": "A", "recipe": "mine", "capacity_tpy": 104.0, "utilisation": 1.0},
        "C_mine": {"region": "C", "recipe": "mine", "capacity_tpy": 26.0, "utilisation": 1.0},
    },
    "demand": {
        "growth_per_year": 0.0, "noise_sd": 0.0,
        "sectors": {"users": {"product": "metal", "price_elasticity": 0.0,
                              "substitution_max_share": 0.0},
                    "defence": {"product": "metal", "price_elasticity": 0.0,
                                "substitution_max_share": 0.0}},
        "tonnes_per_year": {"A": {"users": 52.0}, "B": {"users": 52.0, "defence": 13.0},
                            "C": {"users": 13.0}},
    },
    "trade": {"transit_cv": 0.0, "openness": 0.0, "transit_days_other_zone": 14.0,
              "flows_tpy": {"metal": {"A->A": 52.0, "A->B": 52.0, "C->B": 13.0, "C->C": 13.0}}},
    "market_rule": {"cover_sensitivity": 0.0},
    "supply_response": {"utilisation_price_elasticity": 0.0, "invest_share": 0.0},
    "outages": {"rate_per_year": 0.0},
}


def trade_world(**changes: Any) -> dict[str, Any]:
    return with_changes(TRADE, changes)
