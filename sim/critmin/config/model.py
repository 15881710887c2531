"""From a composed config to the model's inputs: run spec, world and levers, all checked."""

from __future__ import annotations

from typing import Any

from ..core.levers import Levers
from ..core.world import World
from .build import RunSpec, build_run, build_world, plain
from .levers import build_levers, with_planned_facilities


def build_model(cfg: Any, check_uncertain: bool = False,
                ranges_checked: set[str] | None = None) -> tuple[RunSpec, World, Levers]:
    """Check and compile a root config (`CritminConfig`). Raises `ConfigError` on bad input.

    With `check_uncertain`, also the declared uncertain parameters and their ranges;
    `ranges_checked` remembers the ranges already found good (`check_ranges`).
    """
    spec = build_run(cfg)
    levers_cfg = plain(cfg.levers)  # read as plain Python: ~10x faster than OmegaConf
    world_cfg = with_planned_facilities(cfg.world, levers_cfg)
    world = build_world(world_cfg)
    levers = build_levers(levers_cfg, world, spec.calendar, world_cfg)
    if check_uncertain:
        from .uncertain import check_ranges, parse_uncertain

        check_ranges(cfg, parse_uncertain(cfg), build_model, ranges_checked)
    return spec, world, levers
