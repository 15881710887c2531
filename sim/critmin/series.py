"""The series a run can write to `timeseries.parquet`, and `run.timeseries`'s choices.

Writing every series is most of a sweep job's cost beyond its simulation (benchmarks/),
so a run can keep only some: `all` (the default of `critmin run`), `compare` (what
`critmin compare` reads; the default of a sweep's jobs), `none` (KPIs only), or a list of
variable names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .core.engine import LEVER_SERIES

REGION_SERIES = ("production", "input_use", "consumption", "demand", "unmet_demand",
                 "china_content_of_use", "inventory", "imports", "exports")
OTHER_SERIES = ("supply_by_origin", "price", "substitution_share", "capacity")
LEVER_ONLY = ("tariff_revenue", "export_discount_cost", "licences_pending")
ALL = (*REGION_SERIES, *OTHER_SERIES, *LEVER_SERIES, *LEVER_ONLY)
ALL_SET = frozenset(ALL)
# made from the monthly shipments per route, which a run records only if it writes one
SHIPMENT_SERIES = frozenset({"imports", "exports", "supply_by_origin"})
PRESETS: dict[str, tuple[str, ...]] = {
    "all": ALL,
    # critmin compare's fan charts: the market price, unmet demand and China's share of use
    "compare": ("price", "unmet_demand", "china_content_of_use", "input_use", "consumption"),
    "none": (),
}


def select_series(value: Any, key: str = "run.timeseries") -> frozenset[str]:
    """The variable names to write, from a preset name or a list of names."""
    from .config.build import ConfigError

    if isinstance(value, str):
        if value not in PRESETS:
            raise ConfigError(key, value, f"must be one of {', '.join(PRESETS)} or a list of "
                              "variable names, e.g. [price,unmet_demand]")
        return frozenset(PRESETS[value])
    if not isinstance(value, Iterable):
        raise ConfigError(key, value, f"must be one of {', '.join(PRESETS)} or a list of "
                          "variable names")
    names = [str(v) for v in value]
    unknown = [n for n in names if n not in ALL]
    if unknown:
        raise ConfigError(key, unknown[0], f"not a series; the series are {', '.join(ALL)}")
    return frozenset(names)
