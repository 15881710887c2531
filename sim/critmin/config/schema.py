"""The typed schema of every critmin config.

Plain dataclasses registered in Hydra's ConfigStore: a typo in a YAML key or
a value of the wrong type fails at composition, naming the key. They are
mutable (Hydra overrides need that); `critmin.config.build` turns them into
frozen model objects and checks ranges and cross-references.

Naming rule (see docs/glossary.md): instants end in `_date` (ISO dates),
durations in `_days` or `_years`, rates in `_per_year`, quantities carry
their unit (`capacity_tpy` = tonnes per year, `price_usd_per_kg`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class RunConfig:
    """How a run is driven: horizon, replications, seed."""

    start_date: str = "2025-01-01"  # ISO date; day 0 of the simulation
    horizon_years: float = 20.0
    tick_days: int = 7  # days between market clearings, 1 to 28 (results are by calendar month)
    replications: int = 20
    seed: int = 12345  # root seed; every random stream derives from it
    # replications simulated together as one array batch: 20, so a default run (20
    # replications) is one batch. Per replication 23 ms vs 31 ms in batches of 10 (2024
    # world, 20 years), at ~2 MiB of arrays per replication (~24 MiB with 40 regions:
    # README, Performance); results do not depend on it (tests/test_determinism.py)
    batch_size: int = 20
    progress: bool = True  # progress bar on stderr
    # PNG plots next to the tables: true, false, or null (the default): yes for `critmin run`,
    # no for each job of a sweep, where `critmin compare` draws the comparison and a job's
    # plots took longer than its simulation (1.3 s against ~0.7-1.4 s for 20 replications)
    plots: bool | None = None
    # which series timeseries.parquet holds: "all", "compare" (only what `critmin compare`
    # reads: a fifth of the rows), "none" (KPIs only), a list of variable names, or null
    # (the default): all for `critmin run` (and a sweep job with run.plots=true), compare
    # for the other jobs of a sweep, where writing every series cost a third of a job's
    # simulation time (docs/results.md)
    timeseries: Any = None


@dataclass
class ProductConfig:
    """A traded good. Quantities are tonnes (of contained REO for concentrate)."""

    description: str = ""
    unit: str = "t"
    price_usd_per_kg: float = MISSING  # starting price in the reference market
    market_price_ratio: dict[str, float] = field(default_factory=dict)  # market -> ratio
    target_cover_days: float = 60.0  # buyers' target input stock, days of use


@dataclass
class RecipeConfig:
    """What a plant of one stage turns into what, per tonne of activity."""

    stage: str = MISSING
    inputs: dict[str, float] = field(default_factory=dict)  # t input per t activity
    outputs: dict[str, float] = field(default_factory=dict)  # t output per t activity
    unrecovered: float = 0.0  # t per t activity leaving the chain (losses, co-products)
    mass_balanced: bool = True  # require sum(inputs) == sum(outputs) + unrecovered
    input_decline_per_year: dict[str, float] = field(default_factory=dict)  # thrifting
    expansion_lead_years: float = 3.0  # lead time of a price-driven expansion
    # By-product recovery (gallium from alumina, germanium from zinc): output follows the host metal,
    # not its own price. Its plants do not respond to their price (no utilisation response, no
    # price-driven expansion) and their capacity grows with the host; dedicated recovery capacity
    # comes only as a capacity_additions lever, after its lead time. "" = a main product.
    byproduct_of: str = ""
    host_growth_per_year: Any = None  # the host's output growth; None: the world's capacity growth


@dataclass
class RegionConfig:
    name: str = MISSING
    market: str = MISSING  # price market this region buys and sells in
    zone: str = MISSING  # shipping zone, sets default transit times


@dataclass
class FacilityConfig:
    """Plants of one recipe in one region, aggregated."""

    region: str = MISSING
    recipe: str = MISSING
    capacity_tpy: float = MISSING  # tonnes of activity per year at start
    utilisation: float = 0.9  # share of capacity used at starting prices
    outage_rate_per_year: float | None = None  # None: world default
    outage_capacity_share: float | None = None  # share of capacity an outage takes
    source: str = ""


@dataclass
class SectorConfig:
    """An end use (EV motors, wind turbines...) and how it responds to price."""

    product: str = MISSING
    price_elasticity: float = 0.1  # short-run, positive number: demand ~ price^-e
    substitution_max_share: float = 0.3  # share of demand that can be substituted
    substitution_max_rate_per_year: float = 0.1  # Sprecher et al. 2017: ~10 %/yr


@dataclass
class DemandConfig:
    sectors: dict[str, SectorConfig] = field(default_factory=dict)
    # region -> sector -> t/yr (inner values checked by the builder: OmegaConf cannot type nested dicts)
    tonnes_per_year: dict[str, dict[str, Any]] = field(default_factory=dict)
    growth_per_year: float = 0.0
    noise_sd: float = 0.05  # weekly multiplicative demand noise


@dataclass
class TradeConfig:
    transit_days_domestic: float = 7.0
    transit_days_same_zone: float = 21.0
    transit_days_other_zone: float = 42.0
    transit_days: dict[str, float] = field(default_factory=dict)  # "ORIG->DEST" overrides
    transit_cv: float = 0.2  # coefficient of variation of transit times
    transport_cost_usd_per_kg: float = 0.2  # international freight and insurance
    flows_tpy: dict[str, dict[str, Any]] = field(default_factory=dict)  # product -> "O->D" -> t/yr
    openness: float = 0.05  # weight of the world market in each buyer's sourcing
    armington_elasticity: float = 4.0  # how strongly buyers switch on landed cost
    # dimensionless; ASSUMPTION: a route delivering half its orders keeps 1/4 of its pull
    reliability_exponent: float = 2.0  # how strongly buyers shun suppliers who fail to deliver
    # days; ASSUMPTION: offtake contracts of a few months to a year (half-life ~4 months)
    switch_days: float = 180.0  # time constant of sourcing changes (contract stickiness)
    review_days: float = 28.0  # days; ASSUMPTION: buyers look at their sourcing monthly


@dataclass
class MarketRuleConfig:
    """The price and ordering rule (docs/model.md, 'Markets and prices')."""

    # Every number of this rule is an ASSUMPTION of the 2024 worlds (Sterman 2000, ch. 17 and
    # 20, give the structure, not these values); the 2010-11 back-test fits three of them
    # (configs/world/rare_earths_2009.yaml, docs/calibration.md): cover_sensitivity 0.92,
    # price_adjust_days 15.1, long_run_anchor_days 248.5.
    price_adjust_days: float = 21.0  # days for spot prices to close most of the gap to the indicated price
    expectation_days: float = 365.0  # days: long-term contract prices adapt over about a year
    # Expected prices relax toward the long-run price (the starting price, real terms) with
    # this time constant: entry and exit of marginal producers that the model does not
    # represent plant by plant. 0 switches the anchor off.
    long_run_anchor_days: float = 1095.0  # days (3 years: new mines and plants take 3-10)
    cover_sensitivity: float = 1.0  # dimensionless: d ln(price) / d ln(stock cover)
    cover_ratio_floor: float = 0.05  # stock / target: below it an empty market moves no further
    cover_ratio_cap: float = 5.0  # stock / target: above it a glut moves no further
    price_min_multiple: float = 0.2  # x starting price: floor of any price (producers' cash cost)
    # x starting price: cap of any price, the choke price above which the model has no buyers'
    # data (2010-11: Dy oxide rose ~10x, Tb ~8x; a cap that binds says so in critmin run)
    price_max_multiple: float = 50.0
    use_smoothing_days: float = 28.0  # days over which buyers average their use
    stock_adjust_days: float = 56.0  # days to close a stock gap (two monthly order cycles)
    # days to close a supply-line gap: twice the stock's, so buyers do not overreact to goods
    # on the way (the structure of Sterman 2000 ch. 17; the values are ASSUMPTIONS)
    supply_line_adjust_days: float = 112.0
    seller_cover_days: float = 14.0  # days of output sellers hold before it ships


@dataclass
class SupplyResponseConfig:
    utilisation_price_elasticity: float = 0.3
    utilisation_min: float = 0.3  # share of capacity; ASSUMPTION: plants idle below it rather than run
    utilisation_max: float = 1.0
    # x target stock; ASSUMPTION: plants slow from half this, stop at this many x target stock
    unsold_stock_brake: float = 4.0
    capacity_growth_per_year: float = 0.0
    # Start plants at the rate of balanced growth: with demand growing at g, a stage must
    # make more than is used downstream to fill stocks and pipelines that grow with it
    # (docs/model.md, "Balanced-growth start"). false: use the utilisations as given.
    balanced_growth_start: bool = True
    invest_price_multiple: float = 1.5
    invest_share: float = 0.1
    invest_review_days: float = 91.0  # days; ASSUMPTION: owners review expansions quarterly
    lead_time_cv: float = 0.3  # coefficient of variation of expansion lead times; ASSUMPTION


@dataclass
class OutageConfig:
    rate_per_year: float = 0.2
    mean_days: float = 42.0
    capacity_share: float = 0.5


@dataclass
class WorldConfig:
    """A commodity world: its chain, regions, plants, demand and trade."""

    name: str = MISSING
    description: str = ""
    base_year: int = 2024
    provenance_region: str = "CHN"  # whose content is traced through the chain
    reference_market: str = "ex_china"
    markets: list[str] = field(default_factory=lambda: ["china_domestic", "ex_china"])
    stages: list[str] = field(default_factory=list)
    products: dict[str, ProductConfig] = field(default_factory=dict)
    recipes: dict[str, RecipeConfig] = field(default_factory=dict)
    regions: dict[str, RegionConfig] = field(default_factory=dict)
    facilities: dict[str, FacilityConfig] = field(default_factory=dict)
    demand: DemandConfig = field(default_factory=DemandConfig)
    trade: TradeConfig = field(default_factory=TradeConfig)
    market_rule: MarketRuleConfig = field(default_factory=MarketRuleConfig)
    supply_response: SupplyResponseConfig = field(default_factory=SupplyResponseConfig)
    outages: OutageConfig = field(default_factory=OutageConfig)


# ----------------------------------------------------------------------------- levers
# Each lever kind is a mapping of named instances (several can be active at once, e.g.
# two stockpiles). Dates are ISO dates; null means "not set" as documented per field.
# docs/levers.md explains every field with its unit and a real-world example.


@dataclass
class ExportControlConfig:
    """An exporter's control on exports of some products to some destinations."""

    exporter: str = "CHN"  # region that imposes the control
    form: str = "ban"  # ban | quota | licensing
    products: list[str] = field(default_factory=list)  # [] = every product
    destinations: list[str] = field(default_factory=list)  # [] = every other region
    except_destinations: list[str] = field(default_factory=list)  # "all but these"
    start_date: str = MISSING
    end_date: str | None = None  # null: open-ended
    lift_probability: float = 1.0  # chance the control really ends at end_date (a deal may fail)
    announce_date: str | None = None  # null: announced on start_date (no front-loading window)
    front_loading_extra_cover_days: float = 0.0  # buyers' extra stock target while announced
    quota_tpy: float | None = None  # form=quota: tonnes per calendar year, all covered routes
    licence_delay_days: float = 45.0  # form=licensing: mean processing time of a licence
    licence_delay_cv: float = 0.5  # coefficient of variation (lognormal) of that time
    approval_rate: float = 1.0  # form=licensing: share of licences granted
    approval_rate_by_destination: dict[str, float] = field(default_factory=dict)  # region -> rate
    approval_rate_changes: dict[str, float] = field(default_factory=dict)  # date -> new approval_rate
    suspend_date: str | None = None  # control suspended from this date (e.g. a truce)
    resume_date: str | None = None  # suspension ends on this date (null: lasts to end_date)
    reimpose_probability_per_month: float = 0.0  # chance per month the suspension is revoked
    leakage_share: float = 0.0  # share of blocked material reaching covered buyers via third countries
    leakage_cost_usd_per_kg: float = 0.0  # extra cost of that detour, paid by the buyer
    leakage_extra_days: float = 30.0  # extra transit time of the detour
    source: str = ""


@dataclass
class TariffConfig:
    """An ad-valorem import duty levied by some importers on some origins and products."""

    importers: list[str] = MISSING  # regions that levy it
    origins: list[str] = field(default_factory=list)  # [] = every other region
    except_origins: list[str] = field(default_factory=list)  # "all origins except"
    products: list[str] = field(default_factory=list)  # [] = every product
    exempt_products: list[str] = field(default_factory=list)
    rate: float = MISSING  # share of the customs value (0.25 = 25 %)
    start_date: str | None = None  # null: from the start of the run
    end_date: str | None = None  # null: open-ended
    schedule: dict[str, float] = field(default_factory=dict)  # date -> new rate from that date
    source: str = ""


@dataclass
class StockpileConfig:
    """A strategic reserve: buys while calm, releases in a shortage."""

    holder: str = MISSING  # region whose reserve it is
    products: list[str] = MISSING
    initial_tonnes: dict[str, float] = field(default_factory=dict)  # product -> t held at start
    budget_usd: float = MISSING  # most it may spend on purchases over the run
    loan_usd: float = 0.0  # financing, for the fiscal account
    loan_rate_per_year: float = 0.0  # interest on the loan, paid by the state
    private_capital_usd: float = 0.0
    member_fees_usd_per_year: float = 0.0  # fees paid by member firms for access
    start_date: str | None = None  # purchases start (null: start of the run)
    target_days: float = 60.0  # days of the holder's use of each product
    max_purchase_days_per_year: float = 30.0  # buys at most this many days of use per year
    price_cap_multiple: float = 1.5  # buys only while price <= this x starting price
    buy_markets: list[str] = field(default_factory=list)  # [] = every market
    release_when_shortfall_above: float = 0.02  # share of eligible need unmet that triggers release
    release_when_price_above_multiple: float | None = None  # also release (sell) above this x start
    release_share_per_month: float = 0.25  # most it releases per month, as a share of its stock
    members: list[str] = field(default_factory=list)  # sector kinds that may draw; [] = all users
    sale_price_multiple: float | None = None  # members pay this x starting price (null: market)
    holding_cost_share_per_year: float = 0.02  # storage and insurance, share of value held
    source: str = ""


@dataclass
class PriceFloorConfig:
    """A guaranteed minimum price for covered producers; the state pays the gap."""

    facilities: list[str] = MISSING  # covered plants (names in world.facilities)
    product: str = MISSING  # the covered output
    floor_usd_per_kg: float = MISSING
    start_date: str = MISSING
    years: float = 10.0  # term
    payer: str | None = None  # region whose state pays (null: the first plant's region)
    upside_share: float = 0.0  # state's share of the price above upside_above_usd_per_kg
    upside_above_usd_per_kg: float | None = None  # null: no upside sharing
    offtake: bool = False  # the state buys, at the floor, what the market does not take
    source: str = ""


@dataclass
class PriceClubConfig:
    """A plurilateral minimum price: members charge a duty on imports priced below it."""

    members: list[str] = MISSING  # regions in the club
    floor_usd_per_kg: dict[str, float] = MISSING  # product -> minimum import price
    start_date: str = MISSING
    end_date: str | None = None
    source: str = ""


@dataclass
class ExportDiscountConfig:
    """An exporter sells below its home price to some destinations (state-backed flooding)."""

    exporter: str = "CHN"
    products: list[str] = field(default_factory=list)  # [] = every product
    destinations: list[str] = field(default_factory=list)  # [] = every other region
    except_destinations: list[str] = field(default_factory=list)
    discount_share: float = MISSING  # 0.3 = offered at 70 % of the exporter's home price
    start_date: str = MISSING
    end_date: str | None = None
    source: str = ""


@dataclass
class CapacityAdditionConfig:
    """New capacity of one recipe in one region, announced on a date, online after a lead time."""

    region: str = MISSING
    recipe: str = MISSING
    capacity_tpy: float = MISSING  # t of activity per year
    announce_date: str = MISSING
    lead_years: float = MISSING  # mean time from announcement to output
    lead_cv: float = 0.3  # coefficient of variation (lognormal) of the lead time; ASSUMPTION
    failure_probability: float = 0.0  # chance the project never comes online
    # share of the new capacity used at starting prices; ASSUMPTION: as the worlds' base
    # utilisation of mines and separators (85 %, docs/calibration.md)
    utilisation: float = 0.85
    offtake: dict[str, float] = field(default_factory=dict)  # buyer region -> share of output
    programme: str = ""  # who funds it (DoD equity, DFC, US-Japan fund, ...)
    funding_usd: float = 0.0  # public money committed on the announce date
    payer: str | None = None  # region whose state funds it (null: the plant's region)
    source: str = ""


@dataclass
class PermittingConfig:
    """Faster (or slower) permitting: scales the lead times of some stages' new capacity."""

    lead_time_multiple: float = 1.0  # 0.5 = half the lead time
    stages: list[str] = field(default_factory=lambda: ["mining"])
    start_date: str | None = None  # applies to capacity announced from this date (null: always)
    source: str = ""


@dataclass
class LeversConfig:
    export_controls: dict[str, ExportControlConfig] = field(default_factory=dict)
    tariffs: dict[str, TariffConfig] = field(default_factory=dict)
    stockpiles: dict[str, StockpileConfig] = field(default_factory=dict)
    price_floors: dict[str, PriceFloorConfig] = field(default_factory=dict)
    price_clubs: dict[str, PriceClubConfig] = field(default_factory=dict)
    export_discounts: dict[str, ExportDiscountConfig] = field(default_factory=dict)
    capacity_additions: dict[str, CapacityAdditionConfig] = field(default_factory=dict)
    permitting: PermittingConfig = field(default_factory=PermittingConfig)


@dataclass
class UncertainConfig:
    """A parameter drawn per replication (docs/uncertainty.md). Fields by `dist`:
    uniform: low, high; triangular: low, mode, high; normal: mean, sd (optional low/high
    truncate); lognormal: median, sd_log; choice: values (optional weights)."""

    key: str = MISSING  # dotted config key of a number, e.g. world.demand.growth_per_year
    dist: str = MISSING  # uniform | triangular | normal | lognormal | choice
    low: Any = None
    high: Any = None
    mode: Any = None
    mean: Any = None
    sd: Any = None
    median: Any = None
    sd_log: Any = None
    values: list[Any] = field(default_factory=list)
    weights: list[Any] = field(default_factory=list)
    source: str = ""  # where the range comes from, or ASSUMPTION: why
    skip_if_absent: bool = False  # e.g. a lever's field: drawn only when that lever is chosen
    # drawn only in these worlds (world.name), where its range and source hold; [] = every world
    worlds: list[str] = field(default_factory=list)


@dataclass
class CritminConfig:
    """The root config. Its defaults list lives in configs/config.yaml."""

    world: WorldConfig = MISSING
    run: RunConfig = field(default_factory=RunConfig)
    levers: LeversConfig = field(default_factory=LeversConfig)
    uncertain: dict[str, UncertainConfig] = field(default_factory=dict)  # name -> parameter
    scenario_name: str = "status_quo"
    scenario_question: str = ""


def register() -> None:
    """Register the schema so that `config.yaml` and world files are type-checked."""
    cs = ConfigStore.instance()
    cs.store(name="critmin_schema", node=CritminConfig)
