"""`critmin backtest`: the model against the 2010-2011 rare-earth crisis.

The case (configs/backtest/<name>.yaml) names the historical world and scenario, the
targets with their sources and bands, and the parameters a fit may move. Metrics
are computed per replication from the model's monthly arrays:

- basket: ex-China NdPr and Dy/Tb oxide prices as multiples of their start, weighted
  by their value in the first year (production x start price);
- basket_peak_multiple, peak_year (fractional: 2011.5 = July 2011);
- basket_24m_after_peak_share: the basket 24 months after its peak / at its peak;
- domestic_to_export_peak_ratio: China-domestic basket peak multiple / ex-China's;
- light_/heavy_peak_multiple: ex-China NdPr / Dy-Tb oxide peak multiples;
- substitution_share_max_per_year: the largest one-year rise in the share of magnet
  demand substituted away (demand-weighted over sectors);
- ex_china_mining_growth_per_year: the mean yearly rise of non-Chinese mine output
  over the three years after the shock began (2010-2013), as a share of 2010 world output.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

Q = (0.05, 0.5, 0.95)


class BacktestError(Exception):
    """A bad backtest case or option; the message is one line."""


@dataclass
class Case:
    name: str
    question: str
    overrides: list[str]
    basket: list[str]
    targets: dict[str, dict[str, Any]]
    history_prices: dict[str, dict[str, float]]
    calibration: dict[str, Any]


def load_case(path: Path) -> Case:
    if not path.exists():
        raise BacktestError(f"--case {path}: no such file; cases are in configs/backtest/")
    c = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    return Case(str(c["name"]), str(c.get("question", "")), list(c["overrides"]),
                list(c["basket_products"]), dict(c["targets"]), dict(c.get("history_prices", {})),
                dict(c.get("calibration", {})))


def _g(v: float) -> str:
    """3 significant digits, but years (fractional: 2011.6 is August 2011) with one decimal,
    not as 2.01e+03."""
    return f"{v:.1f}" if abs(v) >= 1000 else f"{v:.3g}"


def _month_year(months: list) -> np.ndarray:
    return np.array([m.year + (m.month - 1) / 12 for m in months])


def _basket(price: np.ndarray, p0: np.ndarray, w: np.ndarray, m: int, ks: list[int]) -> np.ndarray:
    """[R, MT] value-weighted mean of the basket products' price multiples in market m."""
    rel = price[:, :, m, ks] / p0[:, None, m, ks]
    return (rel * w[:, None, :]).sum(axis=2)


def _yearly_mined(mined: np.ndarray, year_of: np.ndarray, y: int, china: int,
                  ex_china: bool) -> np.ndarray:
    tot = mined[:, year_of == y].sum(1)  # R, N
    return tot.sum(1) - tot[:, china] if ex_china else tot.sum(1)


def metrics(world: Any, results: list[Any], basket: list[str]) -> pd.DataFrame:
    """One row per replication, one column per metric (module docstring)."""
    out = []
    m_ex = world.markets.index("ex_china")
    m_cn = world.markets.index("china_domestic")
    ks = [world.products.index(p) for p in basket]
    light, heavy = ks[0], ks[-1]
    conc = [k for k, p in enumerate(world.products) if p.startswith("conc")]
    china = world.regions.index("CHN")
    for res in results:
        price = res.price  # R, MT, M, K
        years = _month_year(res.months)
        p0 = price[:, 0]  # first month
        value0 = res.production[:, :12].sum(axis=(1, 2))[:, ks] * p0[:, m_ex, ks]  # R, B
        w = value0 / value0.sum(axis=1, keepdims=True)
        ex, cn = _basket(price, p0, w, m_ex, ks), _basket(price, p0, w, m_cn, ks)
        peak = ex.argmax(axis=1)
        R, MT = ex.shape
        # substitution: demand-weighted share over magnet sectors, its largest one-year rise
        sub = (res.sector_substitution * res.sector_demand).sum(2) / np.maximum(
            res.sector_demand.sum(2), 1e-12)  # R, MT
        rise = sub[:, 12:] - sub[:, :-12] if MT > 12 else np.zeros((R, 1))
        # non-Chinese mining (concentrates made outside China) by calendar year
        mined = res.production[:, :, :, conc].sum(3)  # R, MT, N
        year_of = np.array([m.year for m in res.months])
        y0 = int(year_of[0]) + 1  # the first shock year (2010 for a 2009 start)
        if (year_of == y0 + 3).any():
            growth = ((_yearly_mined(mined, year_of, y0 + 3, china, True)
                       - _yearly_mined(mined, year_of, y0, china, True)) / 3
                      / np.maximum(_yearly_mined(mined, year_of, y0, china, False), 1e-12))
        else:
            growth = np.full(R, np.nan)
        for r in range(R):
            out.append({
                "replication": int(res.replications[r]),
                "basket_peak_multiple": float(ex[r].max()),
                "peak_year": float(years[peak[r]]),
                "basket_24m_after_peak_share": float(ex[r, peak[r] + 24] / ex[r, peak[r]])
                if peak[r] + 24 < MT else np.nan,
                "domestic_to_export_peak_ratio": float((cn[r].max() - 1) / max(ex[r].max() - 1, 1e-9)),
                "light_peak_multiple": float((price[r, :, m_ex, light] / p0[r, m_ex, light]).max()),
                "heavy_peak_multiple": float((price[r, :, m_ex, heavy] / p0[r, m_ex, heavy]).max()),
                "substitution_share_max_per_year": float(rise[r].max()),
                "ex_china_mining_growth_per_year": float(growth[r]),
            })
    return pd.DataFrame(out)


def compare_to_history(m: pd.DataFrame, case: Case) -> pd.DataFrame:
    rows = []
    for name, t in case.targets.items():
        lo, med, hi = np.nanquantile(m[name], Q)
        band = (t.get("low"), t.get("high"))
        has_band = band[0] is not None and band[1] is not None
        rows.append({"metric": name, "model_median": med, "model_p05": lo, "model_p95": hi,
                     "history": t.get("history"), "band_low": band[0], "band_high": band[1],
                     "median_in_band": bool(band[0] <= med <= band[1]) if has_band else None,
                     "source": t.get("source", "")})
    return pd.DataFrame(rows)


def overlay_plot(world: Any, results: list[Any], case: Case, path_stem: Path,
                 formats: list[str], title: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    months = pd.to_datetime(results[0].months)
    price = np.concatenate([r.price for r in results])  # R, MT, M, K
    fig, axes = plt.subplots(1, len(case.basket), figsize=(6 * len(case.basket), 4),
                             layout="constrained", squeeze=False)
    for ax, prod in zip(axes[0], case.basket, strict=True):
        k = world.products.index(prod)
        for market, style, label in (("ex_china", "-", "model, ex-China"),
                                     ("china_domestic", "--", "model, China domestic")):
            m = world.markets.index(market)
            lo, med, hi = np.quantile(price[:, :, m, k], Q, axis=0)
            color = "tab:blue" if market == "ex_china" else "tab:orange"
            ax.fill_between(months, lo, hi, color=color, alpha=0.2, lw=0)
            ax.plot(months, med, style, color=color, label=label)
        hist = case.history_prices.get(prod, {})
        if hist:
            ax.plot(pd.to_datetime(list(hist)), list(hist.values()), "ks", ms=6,
                    label="history (FOB, DOMAIN)")
        ax.set_yscale("log")
        ax.set_title(f"{prod} price, US$/kg (log scale)", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        loc = mdates.YearLocator()
        ax.xaxis.set_major_locator(loc)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y"))
        ax.legend(fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    files = []
    for fmt in formats:
        fig.savefig(path_stem.with_suffix(f".{fmt}"), dpi=130 if fmt == "png" else None)
        files.append(path_stem.with_suffix(f".{fmt}").name)
    plt.close(fig)
    return files


def simulate_case(cfg: Any, replications: int | None = None) -> tuple[Any, list[Any]]:
    """Run the case's config (batched; uncertain parameters are not drawn in a backtest)."""
    from .config.model import build_model
    from .core.engine import Simulation
    from .runner import batches

    spec, world, levers = build_model(cfg)
    n = replications or spec.replications
    return world, [Simulation(world, spec.calendar, reps, spec.seed, levers=levers).run()
                   for reps in batches(n, spec.batch_size)]


def fit_loss(m: pd.DataFrame, case: Case) -> float:
    """Sum of weighted squared errors of the medians: log ratios for multiples and shares,
    years for timing."""
    loss = 0.0
    for name, weight in case.calibration.get("fit", {}).items():
        if not m[name].notna().any():  # e.g. the peak is too late to see 24 months after it
            return 1e6
        med = float(np.nanmedian(m[name]))
        target = float(case.targets[name]["history"])
        err = med - target if name == "peak_year" else np.log(max(med, 1e-6) / target)
        loss += float(weight) * err * err
    return loss


def calibrate(cfg: Any, case: Case, maxiter: int, seed: int,
              on_trial: Any = None) -> tuple[dict[str, float], float, pd.DataFrame]:
    """Differential evolution (scipy) over the case's calibration parameters."""
    from scipy.optimize import differential_evolution

    params = case.calibration["parameters"]
    keys = list(params)
    bounds = [tuple(map(float, params[k])) for k in keys]
    reps = int(case.calibration.get("replications", 8))
    log: list[dict[str, float]] = []

    def objective(x: np.ndarray) -> float:
        c = cfg.copy()
        for k, v in zip(keys, x, strict=True):
            OmegaConf.update(c, k, float(v))
        world, results = simulate_case(c, reps)
        loss = fit_loss(metrics(world, results, case.basket), case)
        log.append({**dict(zip(keys, map(float, x), strict=True)), "loss": loss})
        if on_trial is not None:
            on_trial(len(log), loss)
        return loss

    res = differential_evolution(objective, bounds, maxiter=maxiter, popsize=5, seed=seed,
                                 polish=False, tol=1e-3, init="latinhypercube")
    return dict(zip(keys, map(float, res.x), strict=True)), float(res.fun), pd.DataFrame(log)


def write_outputs(out: Path, m: pd.DataFrame, table: pd.DataFrame, meta: dict[str, Any]) -> None:
    from .results import write_atomic

    write_atomic(out / "metrics.csv", m.to_csv(index=False, float_format="%.6g"))
    write_atomic(out / "backtest.csv", table.to_csv(index=False, float_format="%.6g"))
    lines = ["| metric | model median [5 %, 95 %] | history | band | in band |", "|---|---|---|---|---|"]
    for r in table.itertuples():
        band = "" if r.band_low is None or pd.isna(r.band_low) else f"{r.band_low:g} - {r.band_high:g}"
        ok = "" if r.median_in_band is None or pd.isna(r.median_in_band) else (
            "yes" if r.median_in_band else "NO")
        lines.append(f"| {r.metric} | {_g(r.model_median)} [{_g(r.model_p05)}, {_g(r.model_p95)}] | "
                     f"{r.history} | {band} | {ok} |")
    write_atomic(out / "backtest.md", "\n".join(lines) + "\n")
    write_atomic(out / "manifest.json", json.dumps(
        {**meta, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2, default=str))
