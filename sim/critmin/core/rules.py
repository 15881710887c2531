"""Decision rules of producers, buyers and markets, as pure array functions.

Each rule is one equation of docs/model.md and can be called and tested
without SimPy. Arrays broadcast over a leading replication axis.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

# Rules run every market tick on small arrays, where the cost of a numpy call is its
# overhead: they use plain ufuncs (np.minimum(np.maximum(...)) for np.clip, which is the
# same arithmetic) and `ratio_or` instead of np.errstate blocks.


def ratio_or(num: np.ndarray, den: np.ndarray, fallback) -> np.ndarray:
    """num / den where den > 0, `fallback` elsewhere, without division warnings.

    The same numbers as np.where(den > 0, num / den, fallback). Not np.divide(where=):
    masked ufuncs are several times slower per element on large arrays.
    """
    pos = den > 0
    return np.where(pos, num / np.where(pos, den, 1.0), fallback)


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
    u = base_utilisation * ratio**elasticity
    np.maximum(u, lowest, out=u)
    return np.minimum(u, highest, out=u)


def unsold_stock_brake(unsold_ratio: np.ndarray, brake: float) -> np.ndarray:
    """Share of planned output still made when unsold stock is `unsold_ratio` x target.

    Plants tolerate a buffer: full output up to brake/2 x target, falling
    linearly to 0 at brake x target (they stop rather than pile up stock).
    """
    share = (brake - unsold_ratio) / (0.5 * brake)
    np.maximum(share, 0.0, out=share)
    return np.minimum(share, 1.0, out=share)


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
    ratio = ratio_or(available, ordered, 1.0)
    return np.minimum(ratio, 1.0, out=ratio)


@lru_cache(maxsize=8)
def _origin_bins(shape: tuple[int, ...]) -> np.ndarray:
    """For x of `shape` [..., origin, K]: the flat index of x.sum(axis=-2) each element adds to."""
    *lead, n, k = shape
    a = int(np.prod(lead, dtype=np.int64))
    bins = np.broadcast_to(np.arange(a * k).reshape(a, 1, k), (a, n, k)).reshape(-1)
    bins.flags.writeable = False
    return bins


def sum_over_origins(x: np.ndarray) -> np.ndarray:
    """x.sum(axis=-2, keepdims=True) for x [..., origin, K], bit for bit.

    numpy reduces a middle axis with inner loops K long, which is slow for many regions;
    np.bincount adds the same terms in the same (origin) order in one pass.
    """
    if x.size < 4096 or not x.flags.c_contiguous:
        return x.sum(axis=-2, keepdims=True)
    shape = x.shape[:-2] + (1, x.shape[-1])
    return np.bincount(_origin_bins(x.shape), x.reshape(-1),
                       minlength=x.size // x.shape[-2]).reshape(shape)


def sourcing_target(
    base_weight: np.ndarray,
    landed_ratio: np.ndarray,
    reliability: np.ndarray,
    allowed: np.ndarray | float | None,
    elasticity: float,
    reliability_exponent: float,
) -> np.ndarray:
    """Buyers' preferred origin shares (Armington-style, normalised over origins).

    w*_{d,o} ∝ w0_{d,o} * (landed_{d,o} / landed0_{d,o}) ** -sigma * reliability_o ** gamma
    Arrays are [..., dest, origin, product]; shares sum to 1 over origin.
    Where no origin is attractive, the base weights are kept.
    `allowed` None: every route open (the same as 1.0, one pass less).
    """
    attraction = base_weight * landed_ratio ** (-elasticity)
    attraction *= reliability**reliability_exponent
    if allowed is not None:
        attraction = attraction * allowed
    total = sum_over_origins(attraction)
    ok = total > 0.0
    if ok.all():  # the usual case: no fallback needed
        attraction /= total
        return attraction
    base_total = sum_over_origins(base_weight)
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
    limit = max_rate_per_year * years
    step = np.maximum(target - current, -limit)
    np.minimum(step, limit, out=step)
    return current + step
