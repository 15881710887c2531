"""Plots of one run, drawn from its tidy tables (never from the model).

Uncertainty is shown as the median over replications with a 5-95 % band.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

BAND = (0.05, 0.95)


def _band(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    g = df.groupby(by + ["date"], observed=True)["value"]
    out = g.quantile([BAND[0], 0.5, BAND[1]]).unstack()
    out.columns = ["lo", "median", "hi"]
    return out.reset_index()


def _grid(n: int) -> tuple[plt.Figure, list[plt.Axes]]:
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.4 * rows), squeeze=False,
                             sharex=True)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax in axes[-2, n - (rows - 1) * cols:] if rows > 1 else []:
        ax.xaxis.set_tick_params(labelbottom=True)  # nothing below it shows its dates
    # dates that read at any horizon ("2026", "Apr", ... for a few years; years for decades);
    # with matplotlib's default locator the labels of a 3-year run overlap, and placing
    # them took most of a run's plotting time (the axes share it: sharex)
    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    axes.flat[0].xaxis.set_major_locator(locator)
    axes.flat[0].xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    return fig, list(axes.flat)


def plot_prices(ts: pd.DataFrame, path: Path, title: str) -> None:
    df = _band(ts[ts.variable == "price"], ["product", "region"])
    products = list(dict.fromkeys(df["product"]))
    fig, axes = _grid(len(products))
    for ax, prod in zip(axes, products, strict=False):
        for market, d in df[df["product"] == prod].groupby("region", observed=True):
            line, = ax.plot(d.date, d["median"], label=str(market).replace("_", " "))
            ax.fill_between(d.date, d.lo, d.hi, color=line.get_color(), alpha=0.2, lw=0)
        ax.set_title(prod.replace("_", " "))
        ax.set_ylabel("US$/kg")
        ax.grid(alpha=0.3)
    axes[0].legend(title="market", fontsize=8)
    fig.suptitle(f"{title}\nprices by market: median and 5-95 % band over replications")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_unmet(ts: pd.DataFrame, path: Path, title: str) -> None:
    d = ts[(ts.variable.isin(["demand", "unmet_demand"])) & (ts.sector == "")]
    wide = d.pivot_table(index=["replication", "date", "region", "product"], columns="variable",
                         values="value", observed=True).reset_index()
    wide = wide[wide["demand"] > 0]
    wide["value"] = 100.0 * wide["unmet_demand"] / wide["demand"]
    products = list(dict.fromkeys(wide["product"]))
    fig, axes = _grid(max(1, len(products)))
    for ax, prod in zip(axes, products, strict=False):
        band = _band(wide[wide["product"] == prod], ["region"])
        for region, b in band.groupby("region", observed=True):
            line, = ax.plot(b.date, b["median"], label=region)
            ax.fill_between(b.date, b.lo, b.hi, color=line.get_color(), alpha=0.12, lw=0)
        ax.set_title(f"{prod.replace('_', ' ')}: unmet end-use demand")
        ax.set_ylabel("% of demand")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle(f"{title}\nunmet demand by region: median and 5-95 % band")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def mean_supply_by_origin(ts: pd.DataFrame, product: str) -> pd.DataFrame:
    """Mean over replications of supply by origin: region, origin, date, value.

    A route without flow in a batch has no rows there (docs/results.md): its missing
    rows are zeros, so the mean divides by every replication, not only those with rows.
    """
    d = ts[(ts.variable == "supply_by_origin") & (ts["product"] == product)]
    n_reps = max(1, ts.replication.nunique())
    return (d.groupby(["region", "origin", "date"], observed=True)["value"].sum()
            / n_reps).reset_index()


def plot_supply_by_origin(ts: pd.DataFrame, path: Path, title: str, product: str) -> None:
    mean = mean_supply_by_origin(ts, product)
    regions = [r for r, g in mean.groupby("region", observed=True) if g.value.sum() > 0]
    fig, axes = _grid(max(1, len(regions)))
    origins = sorted(mean.origin.unique())
    colors = dict(zip(origins, plt.get_cmap("tab10").colors, strict=False))
    for ax, region in zip(axes, regions, strict=False):
        wide = mean[mean.region == region].pivot(index="date", columns="origin", values="value")
        wide = wide.fillna(0.0)
        cols = [c for c in wide.columns if wide[c].sum() > 0]
        ax.stackplot(wide.index, [wide[c] for c in cols], labels=cols,
                     colors=[colors[c] for c in cols])
        ax.set_title(f"supply of {product.replace('_', ' ')} to {region}")
        ax.set_ylabel("t/month")
        ax.grid(alpha=0.3)
        ax.legend(title="origin", fontsize=7, ncol=2, loc="upper left")
    fig.suptitle(f"{title}\nsupply by origin (mean over replications; domestic included)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_run(folder: Path, title: str, final_products: list[str],
             series: frozenset[str] | None = None) -> list[Path]:
    """The run's plots, of the series it wrote (`series`; None: all)."""
    has = (lambda *names: True) if series is None else (lambda *names: set(names) <= series)
    ts = pd.read_parquet(folder / "timeseries.parquet",
                         filters=[("variable", "in", ["price", "demand", "unmet_demand",
                                                      "supply_by_origin"])])
    out = []
    if has("price"):
        out.append(folder / "prices.png")
        plot_prices(ts, out[-1], title)
    if has("demand", "unmet_demand"):
        out.append(folder / "unmet_demand.png")
        plot_unmet(ts, out[-1], title)
    for prod in final_products if has("supply_by_origin") else []:
        p = folder / f"supply_by_origin_{prod}.png"
        plot_supply_by_origin(ts, p, title, prod)
        out.append(p)
    return out
