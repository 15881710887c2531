"""The compiled world: regions, products, plants, end uses and routes as arrays.

A `World` is a frozen, validated description of one commodity chain (rare
earths, gallium, ...). Nothing in it is specific to a mineral: stages,
products, yields and intensities are data. Index conventions:

- `n` region, `k` product, `m` price market, `f` facility, `s` end-use sector;
- routes are indexed `[dest, origin]` (buyer first), as in a sourcing table;
- flat region-product vectors use column `n * K + k`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass

import numpy as np


@dataclass(frozen=True)
class MarketRule:
    """Parameters of the price and ordering rule (docs/model.md)."""

    price_adjust_days: float
    expectation_days: float
    long_run_anchor_days: float
    cover_sensitivity: float
    cover_ratio_floor: float
    cover_ratio_cap: float
    price_min_multiple: float
    price_max_multiple: float
    use_smoothing_days: float
    stock_adjust_days: float
    supply_line_adjust_days: float
    seller_cover_days: float


@dataclass(frozen=True)
class SupplyResponse:
    utilisation_price_elasticity: float
    utilisation_min: float
    utilisation_max: float
    unsold_stock_brake: float
    capacity_growth_per_year: float
    invest_price_multiple: float
    invest_share: float
    invest_review_days: float
    lead_time_cv: float


@dataclass(frozen=True)
class TradeRule:
    transit_cv: float
    openness: float
    armington_elasticity: float
    reliability_exponent: float
    switch_days: float
    review_days: float


@dataclass(frozen=True)
class World:
    name: str
    regions: tuple[str, ...]
    region_names: tuple[str, ...]
    products: tuple[str, ...]
    product_units: tuple[str, ...]
    markets: tuple[str, ...]
    region_market: np.ndarray  # (N,) market index of each region
    provenance_region: int  # region whose content is traced (-1: none)
    price0_usd_per_kg: np.ndarray  # (M, K) starting prices
    cover_days: np.ndarray  # (K,) buyers' target cover
    # facilities
    facilities: tuple[str, ...]
    fac_region: np.ndarray  # (F,)
    fac_stage: tuple[str, ...]
    fac_capacity_tpy: np.ndarray  # (F,)
    fac_utilisation: np.ndarray  # (F,)
    fac_inputs: np.ndarray  # (F, K) t input per t activity at start
    fac_input_decline_per_year: np.ndarray  # (F, K)
    fac_outputs: np.ndarray  # (F, K) t output per t activity
    fac_unrecovered: np.ndarray  # (F,) t leaving the chain per t activity
    fac_main_output: np.ndarray  # (F,) product whose price drives the plant
    fac_expansion_lead_years: np.ndarray  # (F,)
    fac_byproduct: np.ndarray  # (F,) bool: output follows a host metal, not its own price
    fac_capacity_growth_per_year: np.ndarray  # (F,) the world's, or the host's for by-products
    fac_outage_rate_per_year: np.ndarray  # (F,)
    fac_outage_mean_days: np.ndarray  # (F,)
    fac_outage_share: np.ndarray  # (F,)
    # end uses
    sectors: tuple[str, ...]  # "REGION/sector"
    sector_region: np.ndarray  # (S,)
    sector_product: np.ndarray  # (S,)
    sector_kind: tuple[str, ...]  # "ev", "wind", ...
    sector_demand_tpy: np.ndarray  # (S,) at start
    sector_elasticity: np.ndarray  # (S,)
    sector_substitution_max: np.ndarray  # (S,)
    sector_substitution_rate_per_year: np.ndarray  # (S,)
    demand_growth_per_year: float
    demand_noise_sd: float
    # trade
    transit_days: np.ndarray  # (N, N) [dest, origin]
    transport_usd_per_kg: np.ndarray  # (N, N) [dest, origin]
    base_sourcing: np.ndarray  # (K, N, N) [k, dest, origin], rows sum to 1 where used
    # rules
    market_rule: MarketRule
    supply: SupplyResponse
    trade: TradeRule

    @property
    def n_regions(self) -> int:
        return len(self.regions)

    @property
    def n_products(self) -> int:
        return len(self.products)

    def region_index(self, code: str) -> int:
        return self.regions.index(code)

    def product_index(self, name: str) -> int:
        return self.products.index(name)


def differences(a: object, b: object, path: str = "") -> list[str]:
    """The dotted names of the fields where two worlds (or two levers, or any frozen
    dataclasses of arrays, tuples and numbers) differ; [] if they are equal."""
    if is_dataclass(a) and is_dataclass(b) and type(a) is type(b):
        out: list[str] = []
        for f in fields(a):
            out += differences(getattr(a, f.name), getattr(b, f.name),
                               f"{path}.{f.name}" if path else f.name)
        return out
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        if len(a) != len(b):
            return [path]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in differences(x, y, f"{path}[{i}]")]
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        x, y = np.asarray(a), np.asarray(b)
        if x.shape != y.shape or x.dtype.kind != y.dtype.kind:
            return [path]
        same = np.array_equal(x, y, equal_nan=x.dtype.kind in "fc")
        return [] if same else [path]
    return [] if a == b or (a != a and b != b) else [path]  # (NaN equals NaN here)
