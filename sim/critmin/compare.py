"""`critmin compare SWEEP_DIR [...]`: the plots and tables an analyst puts in a report.

Everything is drawn from the sweeps' tidy files (summary.parquet and each
job's timeseries.parquet, read one job at a time with only the rows needed).

Terms used below:
- *axes*: the swept keys of the sweep(s), in the sweep's order (`package`, ...).
- the *compared axis* is the first axis: one colour per value, the same colour
  in every plot; the other axes make the panels (facets).
- a job's *baseline* is the job with the same values on the other axes and the
  *reference* value on the compared axis (default: its first value). Paired
  differences are taken replication by replication, which is meaningful
  because all jobs of a sweep share their random draws.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import itertools
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from .aggregate import axis_order, job_values, read_summary  # noqa: E402
from .results import MANIFEST, TIMESERIES  # noqa: E402
from .sweep import JOBS, read_record  # noqa: E402

Q = (0.05, 0.5, 0.95)
PALETTE = plt.get_cmap("tab10").colors
MARKERS = "osD^v<>Pp*"
TABLE_KPIS = [  # (kpi, region key, product key, label)
    ("shortfall_share", "region", "product", "shortfall share"),
    ("peak_shortfall_share", "region", "product", "peak monthly shortfall share"),
    ("unmet_demand_t", "region", "product", "unmet demand, t"),
    ("min_days_of_cover", "region", "product", "min days of cover"),
    ("china_share_of_supply", "region", "product", "China share of supply"),
    ("price_peak_multiple", "market", "product", "peak price multiple (ex-China)"),
    ("fiscal_cost_usd", "all", "all", "fiscal cost, US$ (all levers, all payers)"),
]


class CompareError(Exception):
    """Bad options or folders for `critmin compare`; the message is one line."""


@dataclass
class Options:
    region: str = "USA"
    product: str | None = None             # None: the world's main end-use product
    kpi: str = "shortfall_share"
    reference: str | None = None          # "axis=value"
    heatmap_axes: list[str] | None = None
    market: str = "ex_china"
    target_share: float = 0.25
    target_year: int = 2030
    world: str = ""                        # the mineral's world, for titles (set from the runs)
    formats: list[str] = field(default_factory=lambda: ["png", "svg"])


@dataclass
class Study:
    """The jobs of one or more sweeps, with their axes and colours."""

    summary: pd.DataFrame
    axes: list[str]
    jobs: pd.DataFrame                     # one row per job: sweep, job, folder, axes..., label
    colors: dict[str, tuple[float, ...]]   # compared-axis value -> colour
    reference: tuple[str, str]             # (axis, value)
    sweeps: list[Path]

    @property
    def compared(self) -> str:
        return self.axes[0]

    @property
    def facet_axes(self) -> list[str]:
        return self.axes[1:]

    def facets(self) -> list[tuple[str, ...]]:
        return list(dict.fromkeys(tuple(r) for r in self.jobs[self.facet_axes].itertuples(
            index=False))) if self.facet_axes else [()]

    def facet_title(self, facet: tuple[str, ...]) -> str:
        return ", ".join(f"{a}={v}" for a, v in zip(self.facet_axes, facet, strict=True))


def _cols(axes: list[str]) -> list[str]:
    """The identifying columns of a job: sweep, job and the axes (without repeats)."""
    return list(dict.fromkeys(["sweep", "job", *axes]))


def load_study(dirs: list[Path], reference: str | None, kpis: list[str] | None = None,
               regions: list[str] | None = None) -> Study:
    """The jobs of the sweeps; only the summary rows of `kpis` (fiscal cost for every payer,
    other KPIs for `regions`) are read."""
    frames, axes = [], []
    filters = None
    if kpis is not None:
        filters = [[("kpi", "==", "fiscal_cost_usd")],
                   [("kpi", "in", kpis), ("region", "in", regions or [])]]
    for d in dirs:
        if not (d / JOBS).is_dir():
            raise CompareError(f"{d} is not a sweep folder (no {JOBS}/ inside); give the folder "
                               "that `critmin sweep` printed, e.g. results/sweeps/quickstart")
        df, ax = read_summary(d, filters)
        frames.append((d, df))
        axes.extend(a for a in ax if a not in axes)
    for d, df in frames:  # an axis of one sweep that another did not sweep: the value it ran with
        missing = [a for a in axes if a not in df.columns]
        if missing:
            values = job_values(d, [d / JOBS / j for j in df.job.unique()], missing)
            for a in missing:
                df[a] = df.job.map({j: v[a] for j, v in values.items()})
    summary = pd.concat([df for _, df in frames], ignore_index=True)
    if len(dirs) > 1 and summary.sweep.nunique() > 1:
        axes.append("sweep")
    if not axes:
        axes = ["job"]
    folders = {(d.name, p.name): p for d in dirs for p in (d / JOBS).iterdir()}
    jobs = summary.drop_duplicates(["sweep", "job"])[_cols(axes)].copy()
    jobs["folder"] = [folders[(s, j)] for s, j in zip(jobs.sweep, jobs.job, strict=True)]
    # order jobs by the sweep's value order on every axis
    orders = {a: axis_order(dirs, a, list(jobs[a].astype(str).unique())) for a in axes}
    for a in axes:
        jobs[a] = pd.Categorical(jobs[a].astype(str), categories=orders[a], ordered=True)
    jobs = jobs.sort_values(axes[1:] + axes[:1], kind="stable").reset_index(drop=True)
    for a in axes:
        jobs[a] = jobs[a].astype(str)
    jobs["label"] = [" | ".join(str(r[a]) for a in axes) for _, r in jobs.iterrows()]
    compared = axes[0]
    colors = {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(orders[compared])}
    if reference is None:
        ref = (compared, orders[compared][0])
    else:
        if "=" not in reference:
            raise CompareError(f"--reference={reference!r} must be axis=value, e.g. "
                               f"--reference {compared}={orders[compared][0]}")
        ax, val = reference.split("=", 1)
        if ax != compared:
            raise CompareError(f"--reference={reference!r}: the reference is a value of the compared "
                               f"(first) axis {compared!r}; allowed: "
                               + ", ".join(f"{compared}={v}" for v in orders[compared]))
        if val not in orders[compared]:
            raise CompareError(f"--reference={reference!r}: {compared} has no value {val!r}; allowed: "
                               + ", ".join(orders[compared]))
        ref = (ax, val)
    return Study(summary, axes, jobs, colors, ref, dirs)


# ---------------------------------------------------------------- series from job folders

def _read_series(folder: Path, variables: list[str], region: str, product: str) -> pd.DataFrame:
    table = pq.read_table(folder / TIMESERIES,
                          columns=["replication", "date", "region", "product", "variable", "value"],
                          filters=[("variable", "in", variables), ("region", "==", region),
                                   ("product", "==", product), ("sector", "==", ""),
                                   ("origin", "==", ""), ("lever", "==", "")])
    return table.to_pandas()


def job_series(study: Study, opts: Options) -> pd.DataFrame:
    """Median and 5-95 % band over replications, per job, month and series.

    Series: the market's price, the region's unmet demand and China's share of its
    use. Jobs are read one at a time and reduced to bands at once, so memory holds
    one job's rows, whatever the number of jobs.
    """
    out = []
    for _, job in study.jobs.iterrows():
        price = _read_series(job.folder, ["price"], opts.market, opts.product)
        if price.empty:
            raise CompareError(f"job {job.job} wrote no price series for {opts.market} "
                               f"{opts.product} (run.timeseries leaves it out?); compare needs "
                               "run.timeseries=compare or all: sweep again into a new folder")
        flows = _read_series(job.folder, ["unmet_demand", "china_content_of_use", "input_use",
                                          "consumption"], opts.region, opts.product)
        wide = flows.pivot_table(index=["replication", "date"], columns="variable",
                                 values="value", aggfunc="sum")
        # a series the world cannot have in this region (no plant or end use of the
        # product there) has no rows: it is zero in every month (docs/results.md)
        wide = wide.reindex(index=pd.MultiIndex.from_frame(price[["replication", "date"]]),
                            columns=["unmet_demand", "china_content_of_use", "input_use",
                                     "consumption"], fill_value=0.0)
        use = wide["input_use"] + wide["consumption"]
        with np.errstate(divide="ignore", invalid="ignore"):
            share = (wide["china_content_of_use"] / use).where(use > 0)
        parts = [price.assign(series="price")[["replication", "date", "series", "value"]],
                 wide["unmet_demand"].rename("value").reset_index().assign(series="unmet_demand"),
                 share.rename("value").reset_index().assign(series="china_share")]
        bands = _bands(pd.concat(parts, ignore_index=True), ["series", "date"])
        bands["job"], bands["sweep"] = job.job, job.sweep
        out.append(bands)
    bands = pd.concat(out, ignore_index=True)
    bands["date"] = pd.to_datetime(bands["date"])
    return bands


def _bands(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    g = df.groupby(by, observed=True)["value"].quantile(list(Q)).unstack()
    g.columns = ["lo", "median", "hi"]
    return g.reset_index()


# ---------------------------------------------------------------- plots

def _facet_grid(study: Study, height: float = 3.6, sharey: bool = True
                ) -> tuple[plt.Figure, list[plt.Axes]]:
    n = len(study.facets())
    cols = min(n, 2)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, height * rows + 0.9), squeeze=False,
                             sharex=True, sharey=sharey)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


STYLES = ["-", "--", "-.", ":"]  # with the colour, so lines that coincide stay visible


def _style(study: Study, value: str) -> str:
    return STYLES[list(study.colors).index(value) % len(STYLES)]


def _legend(fig: plt.Figure, study: Study) -> None:
    handles = [plt.Line2D([], [], color=c, lw=2.0, ls=_style(study, v), label=v)
               for v, c in study.colors.items() if v in set(study.jobs[study.compared])]
    # below the panels: at the right, a single panel was squeezed and the legend ran into
    # the title
    fig.legend(handles=handles, title=study.compared, loc="outside lower center",
               ncols=min(len(handles), 4), frameon=False)


def _save(fig: plt.Figure, out: Path, stem: str, formats: list[str]) -> list[str]:
    names = []
    for fmt in ["png", *[f for f in formats if f != "png"]]:
        fig.savefig(out / f"{stem}.{fmt}", dpi=130 if fmt == "png" else None, bbox_inches="tight",
                    metadata={"Date": None} if fmt == "svg" else None)
        names.append(f"{stem}.{fmt}")
    plt.close(fig)
    return names


def plot_fans(study: Study, series: pd.DataFrame, which: str, ylabel: str, title: str,
              out: Path, stem: str, opts: Options, target: bool = False,
              sharey: bool = True) -> list[str]:
    """Median and band of a monthly series per job, one panel per facet; `sharey` False gives
    each panel its own scale (prices and shortfalls differ by orders of magnitude between a
    ban and licensing, and a shared axis flattened the milder panel)."""
    bands = series[series.series == which].merge(study.jobs, on=["sweep", "job"])
    fig, axes = _facet_grid(study, sharey=sharey)
    fig.set_layout_engine("constrained")
    for ax, facet in zip(axes, study.facets(), strict=True):
        sel = bands
        for a, v in zip(study.facet_axes, facet, strict=True):
            sel = sel[sel[a] == v]
        for value in study.colors:
            line = sel[sel[study.compared] == value]
            if line.empty:
                continue
            c = study.colors[value]
            ax.fill_between(line.date, line.lo, line.hi, color=c, alpha=0.15, lw=0)
            ax.plot(line.date, line["median"], color=c, lw=1.8, ls=_style(study, value))
        if target:  # the year's line only where the horizon reaches it (it widened the axis)
            ax.axhline(opts.target_share, color="black", ls="--", lw=1)
            when = pd.Timestamp(f"{opts.target_year}-12-31")
            inside = bands.date.min() <= when <= bands.date.max()
            if inside:
                ax.axvline(when, color="black", ls=":", lw=1)
            ax.annotate(f"target {opts.target_share:.0%}" + (f" by {opts.target_year}" if inside
                                                             else ""),
                        (when if inside else bands.date.min(), opts.target_share),
                        xytext=(-4 if inside else 4, 4), textcoords="offset points",
                        ha="right" if inside else "left", fontsize=8)
        ax.set_title(study.facet_title(facet) or "all jobs", fontsize=10)
        ax.set_ylabel(ylabel)
        locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.grid(alpha=0.3)
    fig.suptitle(f"{opts.world}: {title}\nmedian and 5-95 % band over replications", fontsize=11)
    _legend(fig, study)
    return _save(fig, out, stem, opts.formats)


def kpi_values(study: Study, kpi: str, region: str, product: str) -> pd.DataFrame:
    """Per job and replication: one KPI value; fiscal cost summed over levers and payers."""
    s = study.summary[study.summary.kpi == kpi]
    if kpi == "fiscal_cost_usd":
        s = s.groupby(["sweep", "job", "replication"], as_index=False)["value"].sum()
    else:
        s = s[(s.region == region) & (s["product"] == product)][["sweep", "job", "replication",
                                                                "value"]]
    # every job has every replication, even one with no fiscal rows (cost 0)
    reps = study.summary[["sweep", "job", "replication"]].drop_duplicates()
    fill = 0.0 if kpi == "fiscal_cost_usd" else np.nan
    return reps.merge(s, how="left", on=["sweep", "job", "replication"]).fillna({"value": fill})


def paired(study: Study, values: pd.DataFrame) -> pd.DataFrame:
    """value(job) - value(baseline job) per replication; baseline = reference on the compared axis."""
    v = values.merge(study.jobs[_cols(study.axes)], on=["sweep", "job"])
    axis, ref = study.reference
    base = v[v[axis] == ref].drop(columns=list(dict.fromkeys(["job", axis])))
    base = base.rename(columns={"value": "base"})
    keys = [a for a in study.axes if a != axis] + ["replication"]
    if "sweep" not in keys:
        keys = ["sweep", *keys]
    out = v.merge(base, on=keys, how="left")
    out["diff"] = out["value"] - out["base"]
    return out


def _q(x: pd.Series) -> tuple[float, float, float]:
    x = x.dropna()
    if x.empty:
        return (np.nan, np.nan, np.nan)
    lo, med, hi = np.quantile(x, Q)
    return float(lo), float(med), float(hi)


def plot_heatmap(study: Study, opts: Options, out: Path) -> list[str]:
    axes = opts.heatmap_axes or (study.axes[:2] if len(study.axes) >= 2 else study.axes[:1])
    for a in axes:
        if a not in study.axes:
            raise CompareError(f"--heatmap-axes {a!r} is not an axis of the sweep; allowed: "
                               + ", ".join(study.axes))
    region = opts.market if opts.kpi == "price_peak_multiple" else opts.region
    vals = kpi_values(study, opts.kpi, region, opts.product).merge(study.jobs, on=["sweep", "job"])
    if vals["value"].isna().all():
        raise CompareError(f"--kpi={opts.kpi!r} has no values for region {region!r} and product "
                           f"{opts.product!r}; allowed KPIs: "
                           + ", ".join(sorted(study.summary.kpi.unique())))
    xa = axes[0]
    ya = axes[1] if len(axes) > 1 else None
    xs = list(dict.fromkeys(study.jobs[xa]))
    ys = list(dict.fromkeys(study.jobs[ya])) if ya else [""]
    grid = np.full((len(ys), len(xs)), np.nan)
    text = [["" for _ in xs] for _ in ys]
    for (i, y), (j, x) in itertools.product(enumerate(ys), enumerate(xs)):
        sel = vals[vals[xa] == x]
        if ya:
            sel = sel[sel[ya] == y]
        lo, med, hi = _q(sel["value"])
        grid[i, j] = med
        text[i][j] = f"{_fmt(med)}\n[{_fmt(lo)}, {_fmt(hi)}]" if not np.isnan(med) else "n/a"
    fig, ax = plt.subplots(figsize=(1.9 * len(xs) + 2.5, 1.1 * len(ys) + 1.8),
                           layout="constrained")
    im = ax.imshow(grid, cmap="viridis_r" if "share" in opts.kpi or "unmet" in opts.kpi
                   else "viridis", aspect="auto")
    for i, j in itertools.product(range(len(ys)), range(len(xs))):
        v = grid[i, j]
        r, g, b, _ = im.cmap(im.norm(v)) if not np.isnan(v) else (1, 1, 1, 1)
        ax.text(j, i, text[i][j], ha="center", va="center", fontsize=8,
                color="black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white")
    ax.set_xticks(range(len(xs)), xs)
    ax.set_yticks(range(len(ys)), ys)
    ax.set_xlabel(xa)
    if ya:
        ax.set_ylabel(ya)
    fig.colorbar(im, ax=ax, label=f"median {opts.kpi}")
    ax.set_title(f"{opts.world}: {opts.kpi}, {region} {opts.product}: median [5-95 %] over "
                 "replications",
                 fontsize=10)
    return _save(fig, out, f"heatmap_{opts.kpi}", opts.formats)


def _fmt(v: float) -> str:
    if v is None or np.isnan(v):
        return "n/a"
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.2f} bn"
    if a >= 1e6:
        return f"{v / 1e6:.1f} M"
    if a >= 1e4:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


# A paired difference this small against the KPI's own level is the rounding of floating-point
# sums that took another order in the two jobs, not an effect: tables show it as 0 (the CSV
# files keep the exact numbers). Measured: the quickstart's peak shortfall share differed by
# -6.1e-12 on a level of 0.9 where the package changed nothing in the peak month.
NOISE_SHARE = 1e-9


def _fmt_diff(v: float, level: float) -> str:
    """A paired difference for a table: 0 if within NOISE_SHARE of the KPI's `level`."""
    if v is not None and not np.isnan(v) and abs(v) <= NOISE_SHARE * level:
        return "0"
    return _fmt(v)


def _level(r: pd.Series) -> float:
    """The magnitude of a table row's KPI: the largest of its median and 5-95 % bounds."""
    return float(np.nanmax(np.abs([r["median"], r.p05, r.p95]))) \
        if not np.isnan([r["median"], r.p05, r.p95]).all() else 0.0


# report.html's headers for cost_effectiveness.csv's columns (the CSV keeps the names)
CE_HEADERS = {
    "extra_fiscal_cost_usd_median": "extra fiscal cost, US$: median",
    "extra_fiscal_cost_usd_p05": "cost 5 %", "extra_fiscal_cost_usd_p95": "cost 95 %",
    "unmet_averted_t_median": "unmet demand averted, t: median",
    "unmet_averted_t_p05": "averted 5 %", "unmet_averted_t_p95": "averted 95 %",
    "usd_per_kg_averted_median": "US$ per kg averted (n/a unless averted in 95 % of draws)",
}


def cost_effectiveness(study: Study, opts: Options) -> pd.DataFrame:
    """Per job: incremental fiscal cost and unmet demand averted vs its baseline (paired)."""
    cost = paired(study, kpi_values(study, "fiscal_cost_usd", "all", "all"))
    unmet = paired(study, kpi_values(study, "unmet_demand_t", opts.region, opts.product))
    rows = []
    axis, ref = study.reference
    for _, job in study.jobs.iterrows():
        if job[axis] == ref:
            continue
        c = cost[(cost.sweep == job.sweep) & (cost.job == job.job)]
        u = unmet[(unmet.sweep == job.sweep) & (unmet.job == job.job)]
        c_lo, c_med, c_hi = _q(c["diff"])
        a_lo, a_med, a_hi = _q(-u["diff"])  # averted = baseline unmet - policy unmet
        rows.append({**{a: job[a] for a in _cols(study.axes)},
                     "extra_fiscal_cost_usd_median": c_med, "extra_fiscal_cost_usd_p05": c_lo,
                     "extra_fiscal_cost_usd_p95": c_hi, "unmet_averted_t_median": a_med,
                     "unmet_averted_t_p05": a_lo, "unmet_averted_t_p95": a_hi,
                     # only where demand is averted in 95 % of the paired replications: a
                     # ratio to an amount that may be 0 or negative is no price of anything
                     "usd_per_kg_averted_median": (c_med / (a_med * 1000.0)
                                                   if a_lo > 0 else np.nan)})
    return pd.DataFrame(rows)


def plot_cost_effectiveness(study: Study, ce: pd.DataFrame, opts: Options, out: Path) -> list[str]:
    fig, ax = plt.subplots(figsize=(8, 5.2), layout="constrained")
    facets = study.facets()
    for _, r in ce.iterrows():
        facet = tuple(r[a] for a in study.facet_axes)
        m = MARKERS[facets.index(facet) % len(MARKERS)] if facet in facets else "o"
        c = study.colors[r[study.compared]]
        x, y = r.extra_fiscal_cost_usd_median / 1e6, r.unmet_averted_t_median
        ax.errorbar(x, y, xerr=[[x - r.extra_fiscal_cost_usd_p05 / 1e6],
                                [r.extra_fiscal_cost_usd_p95 / 1e6 - x]],
                    yerr=[[y - r.unmet_averted_t_p05], [r.unmet_averted_t_p95 - y]],
                    fmt=m, color=c, ms=8, capsize=3, lw=1.2)
    ax.axhline(0, color="grey", lw=0.8)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel("extra fiscal cost vs baseline, US$ million (all levers, all payers, undiscounted)")
    ax.set_ylabel(f"unmet {opts.product} demand averted in {opts.region}, t")
    axis, ref = study.reference
    ax.set_title(f"{opts.world}: cost-effectiveness vs baseline {axis}={ref} (same other axes, "
                 "same draws)\n"
                 "median and 5-95 % interval of paired differences over replications", fontsize=10)
    ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=v)
               for v, c in study.colors.items() if v in set(ce.get(study.compared, []))]
    if study.facet_axes:
        handles += [plt.Line2D([], [], color="black", marker=MARKERS[i % len(MARKERS)], ls="",
                               label=study.facet_title(f)) for i, f in enumerate(facets)]
    ax.legend(handles=handles, loc="best", fontsize=8, frameon=False)
    return _save(fig, out, "cost_effectiveness", opts.formats)


def summary_table(study: Study, opts: Options) -> pd.DataFrame:
    """KPIs by job: median, 5 % and 95 % over replications, and the paired difference to baseline."""
    rows = []
    for kpi, rkey, pkey, label in TABLE_KPIS:
        region = {"region": opts.region, "market": opts.market, "all": "all"}[rkey]
        product = opts.product if pkey == "product" else "all"
        vals = kpi_values(study, kpi, region, product)
        if vals["value"].isna().all():
            continue
        diffs = paired(study, vals)
        for _, job in study.jobs.iterrows():
            d = diffs[(diffs.sweep == job.sweep) & (diffs.job == job.job)]
            lo, med, hi = _q(d["value"])
            dlo, dmed, dhi = _q(d["diff"])
            rows.append({**{a: job[a] for a in study.axes}, "kpi": kpi, "label": label,
                         "region": region, "product": product, "median": med, "p05": lo,
                         "p95": hi, "diff_median": dmed, "diff_p05": dlo, "diff_p95": dhi,
                         "replications": int(d["value"].notna().sum())})
    return pd.DataFrame(rows)


def table_markdown(study: Study, table: pd.DataFrame, opts: Options) -> str:
    axis, ref = study.reference
    lines = [f"# KPIs by job: {opts.region} {opts.product} (prices: {opts.market} market)", "",
             "Median [5 %, 95 %] over replications; Δ = paired difference to the baseline "
             f"({axis}={ref}, same other axes, same replication): median [5 %, 95 %].", ""]
    for kpi, group in table.groupby("kpi", sort=False):
        lines += [f"## {group.label.iloc[0]} (`{kpi}`, {group.region.iloc[0]}, "
                  f"{group['product'].iloc[0]})", ""]
        head = [*study.axes, "median [5 %, 95 %]", "Δ vs baseline"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for _, r in group.iterrows():
            lv = _level(r)
            delta = ("reference" if r[axis] == ref else
                     f"{_fmt_diff(r.diff_median, lv)} [{_fmt_diff(r.diff_p05, lv)}, "
                     f"{_fmt_diff(r.diff_p95, lv)}]")
            lines.append("| " + " | ".join([*(str(r[a]) for a in study.axes),
                                            f"{_fmt(r['median'])} [{_fmt(r.p05)}, {_fmt(r.p95)}]",
                                            delta]) + " |")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- report

def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def write_report(study: Study, opts: Options, out: Path, figures: list[tuple[str, str]],
                 table: pd.DataFrame, ce: pd.DataFrame) -> None:
    axis, ref = study.reference
    records = {str(d): read_record(d) for d in study.sweeps}
    ref_job = study.jobs[study.jobs[axis] == ref].iloc[0]
    manifest = json.loads((ref_job.folder / MANIFEST).read_text())
    axes_html = "".join(
        f"<li><code>{html.escape(a)}</code>: "
        + ", ".join(f'<span style="color:{matplotlib.colors.to_hex(study.colors[v])}">'
                    f"<b>{html.escape(v)}</b></span>" if a == study.compared else html.escape(v)
                    for v in dict.fromkeys(study.jobs[a]))
        + "</li>" for a in study.axes)
    shown = table.copy()
    if len(shown):
        levels = table.apply(_level, axis=1)
        for c in ("diff_median", "diff_p05", "diff_p95"):
            shown[c] = [_fmt_diff(v, lv) for v, lv in zip(table[c], levels, strict=True)]
    for c in ("median", "p05", "p95"):
        shown[c] = shown[c].map(_fmt)
    ce_shown = ce.copy()
    for c in ce_shown.columns:
        if c.endswith(("_median", "_p05", "_p95")):
            ce_shown[c] = ce_shown[c].map(_fmt)
    ce_shown = ce_shown.rename(columns=CE_HEADERS)
    figs = "".join(f"<figure>{_img(out / f'{stem}.png')}<figcaption>{html.escape(cap)}"
                   f"</figcaption></figure>" for stem, cap in figures)
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>critmin comparison: {html.escape(opts.world)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1150px; margin: 2em auto; color: #222; }}
img {{ max-width: 100%; }} figure {{ margin: 1.5em 0; }} figcaption {{ font-size: .9em; color: #555; }}
table {{ border-collapse: collapse; font-size: .85em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 5px; }}
.scroll {{ overflow-x: auto; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: .8em; }}
</style></head><body>
<h1>critmin comparison: {html.escape(opts.world)}</h1>
<p>Written {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} by <code>critmin compare</code> from
{', '.join(f'<code>{html.escape(str(d))}</code>' for d in study.sweeps)}: {len(study.jobs)} jobs,
{int(study.summary.replication.nunique())} replications each, seed {manifest.get('seed')},
world <code>{html.escape(str(manifest.get('world')))}</code>, from {manifest.get('start_date')} for
{manifest.get('horizon_days')} days. Region <b>{html.escape(opts.region)}</b>, product
<b>{html.escape(opts.product)}</b>, prices of the <b>{html.escape(opts.market)}</b> market.
Baseline for differences: <code>{html.escape(axis)}={html.escape(ref)}</code> with the same other axes,
paired by replication (all jobs share their random draws).</p>
<h2>Axes</h2><ul>{axes_html}</ul>
<h2>Plots</h2>{figs}
<h2>Cost-effectiveness</h2><div class="scroll">{ce_shown.to_html(index=False, na_rep='n/a')}</div>
<h2>KPIs by job</h2>
<p>median, 5 % and 95 % over replications; diff = paired difference to the baseline.</p>
<div class="scroll">{shown.to_html(index=False, na_rep='n/a')}</div>
<h2>Sweep record and the baseline job's config</h2>
<details><summary>sweep.json</summary><pre>{html.escape(json.dumps(records, indent=2))}</pre></details>
<details><summary>config of job {html.escape(ref_job.job)}</summary>
<pre>{html.escape(json.dumps(manifest.get('config', {}), indent=2))}</pre></details>
<details><summary>code and package versions</summary>
<pre>{html.escape(json.dumps({'code': manifest.get('code_version'),
                         'packages': manifest.get('package_versions')}, indent=2))}</pre></details>
</body></html>
"""
    (out / "report.html").write_text(doc)


def main_product(world: dict[str, Any]) -> str:
    """The end-use product with the most demand at start (magnets for rare earths)."""
    sectors = world.get("demand", {}).get("sectors", {})
    totals: dict[str, float] = {}
    for by_sector in world.get("demand", {}).get("tonnes_per_year", {}).values():
        for sector, t in by_sector.items():
            product = sectors.get(sector, {}).get("product")
            if product:
                totals[product] = totals.get(product, 0.0) + float(t)
    return max(totals, key=totals.get) if totals else ""


def _allowed(dirs: list[Path]) -> dict[str, list[str]]:
    """Regions, products, markets and KPIs that the first completed job reports."""
    for d in dirs:
        jobs = sorted(p for p in (d / JOBS).iterdir() if (p / MANIFEST).exists()) \
            if (d / JOBS).is_dir() else []
        if jobs:
            k = pd.read_csv(jobs[0] / "kpis.csv", keep_default_na=False)
            short = k[k.kpi == "shortfall_share"]
            m = json.loads((jobs[0] / MANIFEST).read_text())
            return {"region": sorted(set(short.region)), "product": sorted(set(short["product"])),
                    "main_product": main_product(m.get("config", {}).get("world", {})),
                    "world": m.get("world", ""),
                    "market": sorted(set(k[k.kpi == "price_peak_multiple"].region)),
                    "kpi": sorted(set(k.kpi))}
    raise CompareError(f"{dirs[0]} is not a sweep folder with completed jobs (no {JOBS}/*/"
                       f"{MANIFEST}); give the folder that `critmin sweep` printed")


def compare(dirs: list[Path], out: Path | None = None, opts: Options | None = None) -> Path:
    """Write the comparison folder; returns it. It is rebuilt whole from the sweeps each time."""
    opts = opts or Options()
    dirs = [Path(d) for d in dirs]
    allowed = _allowed(dirs)
    if opts.product is None:
        opts.product = allowed["main_product"]
    opts.world = allowed["world"]
    for what, value, choices in (("--region", opts.region, allowed["region"]),
                                 ("--product", opts.product, allowed["product"]),
                                 ("--market", opts.market, allowed["market"]),
                                 ("--kpi", opts.kpi, allowed["kpi"])):
        if value not in choices:
            raise CompareError(f"{what}={value!r} is not in the results; allowed: {', '.join(choices)}")
    kpis = sorted({k for k, *_ in TABLE_KPIS} | {opts.kpi, "unmet_demand_t"})
    study = load_study(dirs, opts.reference, kpis, [opts.region, opts.market])
    if out is None:
        out = (dirs[0] / "compare" if len(dirs) == 1 else
               Path("results") / "compare" / dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    series = job_series(study, opts)
    figures = []
    plot_fans(study, series, "price", f"{opts.product} price, US$/kg",
              f"{opts.product} price, {opts.market} market", tmp, "fan_price", opts, sharey=False)
    figures.append(("fan_price", f"{opts.product} price in the {opts.market} market"))
    plot_fans(study, series, "unmet_demand", "unmet demand, t/month",
              f"Unmet {opts.product} demand, {opts.region}", tmp, "fan_unmet", opts, sharey=False)
    figures.append(("fan_unmet", f"Unmet {opts.product} demand in {opts.region}"))
    plot_heatmap(study, opts, tmp)
    figures.append((f"heatmap_{opts.kpi}", f"{opts.kpi} over the swept axes"))
    ce = cost_effectiveness(study, opts)
    plot_cost_effectiveness(study, ce, opts, tmp)
    figures.append(("cost_effectiveness", "Fiscal cost vs unmet demand averted"))
    plot_fans(study, series, "china_share", "share of use traced to China",
              f"China's share of {opts.region}'s {opts.product} supply", tmp, "china_share", opts,
              target=True)
    figures.append(("china_share", f"China's share of {opts.region}'s {opts.product} supply, "
                                   f"target {opts.target_share:.0%} by {opts.target_year}"))
    table = summary_table(study, opts)
    table.to_csv(tmp / "summary_table.csv", index=False, float_format="%.6g")
    (tmp / "summary_table.md").write_text(table_markdown(study, table, opts))
    ce.to_csv(tmp / "cost_effectiveness.csv", index=False, float_format="%.6g")
    write_report(study, opts, tmp, figures, table, ce)
    if out.exists():  # derived files only (the jobs are never touched): replace whole
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)
    return out
