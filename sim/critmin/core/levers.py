"""Compiled policy levers: frozen, validated, with dates turned into days since the start.

The builder (`critmin.config.levers`) makes these from the config; the engine's
lever processes (`critmin.core.policy`) act on them. Route masks are indexed
`[dest, origin, product]` like the sourcing table. A day of `inf` means "never".
docs/levers.md explains each lever in domain words.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NEVER = float("inf")


@dataclass(frozen=True)
class ExportControl:
    name: str
    form: str  # "ban" | "quota" | "licensing"
    exporter: int
    cover: np.ndarray  # (N, N, K) bool: routes and products it covers
    start_day: float
    end_day: float
    lift_probability: float
    announce_day: float
    front_loading_cover_days: float
    quota_tpy: float
    delay_mean_days: float
    delay_cv: float
    approval: np.ndarray  # (N,) base approval rate by destination (nan: use the base rate)
    approval_changes: tuple[tuple[float, float], ...]  # (day, base rate) from that day
    base_approval: float
    suspend_day: float
    resume_day: float
    reimpose_per_month: float
    leakage_share: float
    leakage_cost_usd_per_kg: float
    leakage_extra_days: float


@dataclass(frozen=True)
class Tariff:
    name: str
    cover: np.ndarray  # (N, N, K) bool
    schedule: tuple[tuple[float, float], ...]  # (day, rate); the last rate holds


@dataclass(frozen=True)
class PriceClub:
    name: str
    cover: np.ndarray  # (N, N, K) bool: imports of members from non-members
    floor_usd_per_kg: np.ndarray  # (K,)
    start_day: float
    end_day: float


@dataclass(frozen=True)
class ExportDiscount:
    name: str
    cover: np.ndarray  # (N, N, K) bool
    share: float
    start_day: float
    end_day: float


@dataclass(frozen=True)
class Stockpile:
    name: str
    holder: int
    products: np.ndarray  # (K,) bool
    initial_tonnes: np.ndarray  # (K,)
    budget_usd: float
    loan_usd: float
    loan_rate_per_year: float
    private_capital_usd: float
    member_fees_usd_per_year: float
    start_day: float
    target_days: float
    max_purchase_days_per_year: float
    price_cap_multiple: float
    buy_origins: np.ndarray  # (N,) bool: origins in the markets it buys from
    release_shortfall: float
    release_price_multiple: float  # inf: no price-triggered release
    release_share_per_month: float
    member_sectors: np.ndarray  # (S,) bool: end uses that may draw
    members_only: bool
    sale_price_multiple: float  # nan: market price
    holding_cost_share_per_year: float


@dataclass(frozen=True)
class PriceFloor:
    name: str
    facilities: np.ndarray  # (F,) bool
    product: int
    floor_usd_per_kg: float
    start_day: float
    end_day: float
    payer: int
    upside_share: float
    upside_above_usd_per_kg: float  # inf: no upside sharing
    offtake: bool


@dataclass(frozen=True)
class CapacityAddition:
    name: str
    facility: int
    capacity_tpy: float
    announce_day: float
    lead_days: float
    lead_cv: float
    failure_probability: float
    offtake: np.ndarray  # (N,) share of the new output contracted by each buyer region
    programme: str
    funding_usd: float
    payer: int


@dataclass(frozen=True)
class Permitting:
    lead_time_multiple: float = 1.0
    facilities: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # (F,) covered
    start_day: float = 0.0

    def multiple(self, facility: int, day: float) -> float:
        covered = facility < len(self.facilities) and bool(self.facilities[facility])
        return self.lead_time_multiple if covered and day >= self.start_day else 1.0


@dataclass(frozen=True)
class Levers:
    """All levers of a run. The default is "no levers": the status quo."""

    export_controls: tuple[ExportControl, ...] = ()
    tariffs: tuple[Tariff, ...] = ()
    price_clubs: tuple[PriceClub, ...] = ()
    export_discounts: tuple[ExportDiscount, ...] = ()
    stockpiles: tuple[Stockpile, ...] = ()
    price_floors: tuple[PriceFloor, ...] = ()
    capacity_additions: tuple[CapacityAddition, ...] = ()
    permitting: Permitting = field(default_factory=Permitting)

    @property
    def trade_terms(self) -> bool:
        return bool(self.tariffs or self.price_clubs or self.export_discounts)
