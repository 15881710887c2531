"""Decision rules of producers, buyers and markets, as pure array functions.

Each rule is one equation of docs/model.md and can be called and tested
without SimPy. Arrays broadcast over a leading replication axis.
"""

from __future__ import annotations

import numpy as np


def smoothing_weight(tick_days: float, time_constant_days: float) -> float:
    """Weight of the newest value in first-order exponential smoothing."""
    return float(min(1.0, tick_days / max(time_constant_days, tick_days)))


def utilisation(
    revenue_cost_ratio: np.ndarray,
    base_utilisation: np.ndarray,
    elasticity: float | np.ndarray,
    lowest: float,
    highest: float,
) -> np.ndarray:
    """Plants run harder when output pays well relative to what it costs to make.

    x = revenue / (input cost + value added at starting prices)   (x = 1 at start)
    u = clip(u0 * x ** elasticity, lowest, highest)
    For a mine x is the price ratio p / p0; a processor with a thin margin is not
    thrown between full and idle by small price moves (as a margin ratio would).
    """
    ratio = np.maximum(revenue_cost_ratio, 1e-6)
    return np.clip(base_utilisation * ratio**elasticity, lowest, highest)


def unsold_stock_brake(unsold_ratio: np.ndarray, brake: float) -> np.ndarray:
    """Share of planned output still made when unsold stock is `unsold_ratio` x target.

    Plants tolerate a buffer: full output up to brake/2 x target, falling
    linearly to 0 at brake x target (they stop rather than pile up stock).
    """
    return np.clip((brake - unsold_ratio) / (0.5 * brake), 0.0, 1.0)


def order_quantity(
    expected_use: np.ndarray,
    stock: np.ndarray,
    in_transit: np.ndarray,
    cover_ticks: np.ndarray,
    lead_ticks: np.ndarray,
    stock_weight: float,
    line_weight: float,
) -> np.ndarray:
    """Stock-management ordering rule (Sterman 2000, ch. 17).

    order = max(0, use_exp + (cover*use_exp - stock)*a_s + (lead*use_exp - in_transit)*a_l)
    """
    gap_stock = expected_use * cover_ticks - stock
    gap_line = expected_use * lead_ticks - in_transit
    return np.maximum(0.0, expected_use + gap_stock * stock_weight + gap_line * line_weight)


def fill_ratio(available: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    """Share of orders a seller can serve from its stock (pro rata rationing)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ordered > 0.0, available / ordered, 1.0)
    return np.minimum(ratio, 1.0)


def sourcing_target(
    base_weight: np.ndarray,
    landed_ratio: np.ndarray,
    reliability: np.ndarray,
    allowed: np.ndarray,
    elasticity: float,
    reliability_exponent: float,
) -> np.ndarray:
    """Buyers' preferred origin shares (Armington-style, normalised over origins).

    w*_{d,o} ∝ w0_{d,o} * (landed_{d,o} / landed0_{d,o}) ** -sigma * reliability_o ** gamma
    Arrays are [..., dest, origin, product]; shares sum to 1 over origin.
    Where no origin is attractive, the base weights are kept.
    """
    attraction = base_weight * landed_ratio ** (-elasticity) * reliability**reliability_exponent
    attraction = attraction * allowed
    total = attraction.sum(axis=-2, keepdims=True)
    base_total = base_weight.sum(axis=-2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        fallback = base_weight / np.where(base_total > 0, base_total, 1.0)
        shares = np.where(total > 0.0, attraction / total, fallback)
    return shares


def log_price_step(
    log_price: np.ndarray,
    log_expected: np.ndarray,
    cover_ratio: np.ndarray,
    sensitivity: float,
    adjust_weight: float,
) -> np.ndarray:
    """Price moves toward the indicated price set by inventory cover (Sterman 2000, ch. 20).

    ln p_ind = ln p_exp - s * ln(cover / target);  ln p <- ln p + a * (ln p_ind - ln p)
    """
    indicated = log_expected - sensitivity * np.log(cover_ratio)
    return log_price + adjust_weight * (indicated - log_price)


def substitution_step(
    current: np.ndarray,
    price_ratio: np.ndarray,
    max_share: np.ndarray,
    max_rate_per_year: np.ndarray,
    years: float,
) -> np.ndarray:
    """Substitution and thrifting of an end use, slow and rate-limited.

    target = max_share * max(0, 1 - p0/p_exp); the share moves toward the target
    by at most max_rate_per_year * years (Sprecher et al. 2017: ~10 %/yr).
    """
    target = max_share * np.maximum(0.0, 1.0 - 1.0 / np.maximum(price_ratio, 1e-12))
    step = np.clip(target - current, -max_rate_per_year * years, max_rate_per_year * years)
    return current + step
