"""`critmin sensitivity`: global sensitivity of a KPI to the uncertain parameters (SALib).

- Morris elementary effects (screening, many parameters): mu* with its bootstrap
  confidence interval, and sigma (non-linearity and interactions).
- Sobol indices (few parameters): first-order S1 and total ST, with confidence intervals.

Sampling is in each parameter's probability space: SALib draws points in [0, 1]^P and
each coordinate goes through that parameter's quantile function (config/uncertain.py),
so every distribution (uniform, triangular, normal, lognormal, choice) is honoured.
Each sample point is simulated with the same `replications` random streams (common
random numbers), and its KPI is the mean over them: the indices measure the parameters,
not the noise of one draw.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config.uncertain import UncertainParam

METHODS = ("morris", "sobol")


@dataclass
class Indices:
    method: str
    table: pd.DataFrame      # one row per parameter: the indices and their confidence half-widths
    samples: pd.DataFrame    # one row per evaluated point: parameter values and the output


def problem(params: list[UncertainParam]) -> dict[str, Any]:
    return {"num_vars": len(params), "names": [p.name for p in params],
            "bounds": [[0.0, 1.0]] * len(params)}


def design(params: list[UncertainParam], method: str, n: int, seed: int) -> np.ndarray:
    """Points in probability space [rows, params]: Morris trajectories or Saltelli/Sobol."""
    from SALib.sample import morris as morris_sample
    from SALib.sample import sobol as sobol_sample

    prob = problem(params)
    if method == "morris":
        return morris_sample.sample(prob, n, num_levels=4, seed=seed)
    return sobol_sample.sample(prob, n, calc_second_order=False, seed=seed)


def to_values(params: list[UncertainParam], u: np.ndarray) -> np.ndarray:
    """Probability-space points to parameter values (Morris uses 0 and 1 itself: clipped
    to the 0.1 % and 99.9 % quantiles so unbounded distributions stay finite)."""
    u = np.clip(u, 0.001, 0.999)
    return np.column_stack([p.quantile(u[:, j]) for j, p in enumerate(params)])


def analyse(params: list[UncertainParam], method: str, u: np.ndarray, y: np.ndarray,
            seed: int) -> pd.DataFrame:
    from SALib.analyze import morris as morris_analyse
    from SALib.analyze import sobol as sobol_analyse

    prob = problem(params)
    if method == "morris":
        r = morris_analyse.analyze(prob, u, y, num_levels=4, conf_level=0.95, seed=seed)
        return pd.DataFrame({"parameter": prob["names"], "mu_star": r["mu_star"],
                             "mu_star_conf": r["mu_star_conf"], "mu": r["mu"], "sigma": r["sigma"]})
    r = sobol_analyse.analyze(prob, y, calc_second_order=False, conf_level=0.95, seed=seed)
    return pd.DataFrame({"parameter": prob["names"], "S1": r["S1"], "S1_conf": r["S1_conf"],
                         "ST": r["ST"], "ST_conf": r["ST_conf"]})


def run_sensitivity(params: list[UncertainParam], evaluate: Callable[[np.ndarray], float],
                    method: str, n: int, seed: int,
                    on_point: Callable[[int, int], None] | None = None) -> Indices:
    """Sample, evaluate every point (`evaluate(values) -> output`), analyse.

    An `evaluate` with a `many(points) -> outputs` method and a `points_at_once` size
    (`KpiEvaluator`) gets the points that many at a time."""
    if method not in METHODS:
        raise ValueError(f"method {method!r}: one of {', '.join(METHODS)}")
    u = design(params, method, n, seed)
    values = to_values(params, u)
    y = np.empty(len(values))
    step = int(getattr(evaluate, "points_at_once", 1))
    for start in range(0, len(values), step):
        block = values[start:start + step]
        y[start:start + len(block)] = (evaluate.many(block) if step > 1  # type: ignore[attr-defined]
                                       else [evaluate(block[0])])
        if on_point is not None:
            for i in range(start, start + len(block)):
                on_point(i + 1, len(values))
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{int((~np.isfinite(y)).sum())} of {len(y)} points gave no value for "
                         "the KPI (e.g. no demand in that region and product)")
    table = analyse(params, method, u, y, seed)
    samples = pd.DataFrame(values, columns=[p.name for p in params])
    samples["output"] = y
    return Indices(method, table, samples)


class NoValue(ValueError):
    """The chosen KPI, region and product give no value; the message lists what exists."""


class KpiEvaluator:
    """The KPI of the model at given parameter values: its mean over `replications` random
    streams (the same streams for every point; lever KPIs summed over instances).

    `many(points)` simulates `points_at_once` points together, one batch of points x
    replications, when the engine reads what differs between them per replication
    (`engine.not_per_replication`); else one point at a time. Same numbers either way, up
    to rounding (tests/test_sensitivity.py).
    """

    def __init__(self, cfg: Any, params: list[UncertainParam], kpi: str, region: str,
                 product: str, replications: int) -> None:
        import copy

        from .config.model import build_model

        self.params = params
        self.work = copy.deepcopy(cfg)  # each point sets every parameter in it, then builds
        self.kpi, self.region, self.product = kpi, region, product
        self.spec, _, _ = build_model(cfg)
        self.reps = list(range(replications))
        # points per batch: about run.batch_size replications in all
        self.points_at_once = max(1, self.spec.batch_size // replications)

    def __call__(self, values: np.ndarray) -> float:
        return float(self.many(np.asarray(values)[None])[0])

    def many(self, points: np.ndarray) -> np.ndarray:
        from .config.model import build_model
        from .config.uncertain import with_values
        from .runner import batchable

        built = [build_model(with_values(self.work, self.params, v, in_place=True))[1:]
                 for v in points]
        if not batchable(built):
            return np.array([self._run(built[i:i + 1]) for i in range(len(built))]).reshape(-1)
        return self._run(built)

    def _run(self, built: list[tuple[Any, Any]]) -> np.ndarray:
        """Simulate the points `built` ((world, levers) each) in one batch: their KPIs."""
        from .core.kpis import compute_kpis
        from .runner import simulate_built

        R = len(self.reps)
        cal = self.spec.calendar
        res = simulate_built([b for b in built for _ in self.reps], cal, self.reps * len(built),
                             self.spec.seed, record_shipments=False)  # (KPIs only)
        out = np.empty(len(built))
        for j, (world, levers) in enumerate(built):
            part = res if len(built) == 1 else _replications(res, slice(j * R, (j + 1) * R))
            out[j] = self._kpi(compute_kpis(world, part, levers))
        return out

    def _kpi(self, k: Any) -> float:
        kpi, region, product = self.kpi, self.region, self.product
        sel = ((np.asarray(k.kpi) == kpi) & (np.asarray(k.region) == region)
               & (np.asarray(k.product) == product))
        if not sel.any():
            where = sorted({(r, q) for r, q, x in zip(k.region, k.product, k.kpi, strict=True)
                            if x == kpi})
            raise NoValue(
                f"--kpi={kpi!r} --region={region!r} --product={product!r} gives no value; "
                + (f"{kpi} exists for: " + ", ".join(f"{r}/{q}" for r, q in where[:30]) if where
                   else f"allowed KPIs: {', '.join(sorted(set(k.kpi)))}"))
        per_rep = np.bincount(k.replication[sel], weights=k.value[sel], minlength=len(self.reps))
        return float(np.mean(per_rep))


def _replications(res: Any, part: slice) -> Any:
    """The replications `part` of a BatchResult (every per-replication array sliced)."""
    import dataclasses

    whole = {"months", "ticks_in_month", "days_in_month", "n_events"}  # not per replication
    cut: dict[str, Any] = {}
    for f in dataclasses.fields(res):
        v = getattr(res, f.name)
        if f.name in whole or v is None:
            continue
        cut[f.name] = {k: a[part] for k, a in v.items()} if isinstance(v, dict) else v[part]
    return dataclasses.replace(res, **cut)


def plot_indices(ix: Indices, title: str, path_stem: Path, formats: list[str]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = ix.table
    if ix.method == "morris":
        t = t.sort_values("mu_star")
        cols = [("mu_star", "mu_star_conf", "mu* (mean |elementary effect|)")]
    else:
        t = t.sort_values("ST")
        cols = [("S1", "S1_conf", "first order S1"), ("ST", "ST_conf", "total ST")]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(t) + 1.8), layout="constrained")
    y = np.arange(len(t))
    h = 0.8 / len(cols)
    for i, (col, conf, label) in enumerate(cols):
        ax.barh(y + (i - (len(cols) - 1) / 2) * h, t[col], height=h, xerr=t[conf], capsize=3,
                label=label, color=plt.get_cmap("tab10").colors[i])
    ax.set_yticks(y, t.parameter)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel("index (bars: 95 % bootstrap confidence interval)")
    ax.set_title(title, fontsize=10)
    ax.legend(frameon=False, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    out = []
    for fmt in formats:
        path = path_stem.with_suffix(f".{fmt}")
        fig.savefig(path, dpi=130 if fmt == "png" else None)
        out.append(path)
    plt.close(fig)
    return out


def write_outputs(folder: Path, ix: Indices, params: list[UncertainParam], meta: dict[str, Any],
                  title: str, formats: list[str]) -> list[Path]:
    """indices.csv, samples.csv, parameters.csv, manifest.json, indices.{png,svg|pdf}."""
    from .results import write_atomic

    folder.mkdir(parents=True, exist_ok=False)
    write_atomic(folder / "indices.csv", ix.table.to_csv(index=False, float_format="%.6g"))
    write_atomic(folder / "samples.csv", ix.samples.to_csv(index_label="point",
                                                           float_format="%.10g"))
    write_atomic(folder / "parameters.csv", pd.DataFrame(
        [{"parameter": p.name, "key": p.key, "dist": p.dist, **{f"arg_{k}": v for k, v in
          p.args.items()}, "source": p.source} for p in params]).to_csv(index=False))
    plots = plot_indices(ix, title, folder / "indices", formats)
    write_atomic(folder / "manifest.json", json.dumps(
        {**meta, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
         "files": ["indices.csv", "samples.csv", "parameters.csv", *[p.name for p in plots]]},
        indent=2, default=str))
    return plots
