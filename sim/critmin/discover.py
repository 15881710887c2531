"""`critmin discover SWEEP_DIR`: scenario discovery with PRIM (EMA Workbench).

Which ranges of the uncertain parameters (and which values of the swept axes) make a
policy fail a stated goal? Each (job, replication) of a sweep run with uncertain
parameters is one case: its parameter draws (`parameters.csv`) are the inputs, and
"the goal fails" (e.g. US magnet shortfall share > 5 %) is the outcome. PRIM
(Friedman & Fisher 1999, as implemented in the EMA Workbench) peels a box of inputs
where failures concentrate. It reports, for each step of its peeling trajectory:
- coverage: the share of all failing cases that fall inside the box;
- density: the share of the cases inside the box that fail.
The box critmin reports is the densest box whose coverage is still at least
`min_coverage` (default 0.5).
"""

from __future__ import annotations

import json
import operator
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .aggregate import completed_jobs, read_summary
from .results import PARAMETERS

OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


class DiscoverError(Exception):
    """Bad goal, folder or data; the message is one line."""


@dataclass
class Discovery:
    limits: pd.DataFrame        # dimension, low, high, restricted, quasi_p
    trajectory: pd.DataFrame    # coverage, density, mass, res_dim per peeling step
    step: int
    coverage: float
    density: float
    cases: int
    failures: int
    box: Any                    # the EMA Workbench PrimBox (for its plots)


def parse_goal(text: str) -> tuple[str, str, float]:
    m = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|>|<)\s*([-+0-9.eE]+)\s*", text)
    if not m:
        raise DiscoverError(f"--fails={text!r} is not a goal: write KPI>VALUE, e.g. "
                            "--fails 'shortfall_share>0.05' (operators > >= < <=)")
    return m.group(1), m.group(2), float(m.group(3))


def find_box(x: pd.DataFrame, y: np.ndarray, min_coverage: float = 0.5,
             threshold: float = 0.8) -> Discovery:
    """PRIM on cases `x` (numeric or categorical columns) and outcomes `y` (bool)."""
    with warnings.catch_warnings():  # the workbench warns about optional parallel back-ends
        warnings.simplefilter("ignore")
        from ema_workbench.analysis import prim

    y = np.asarray(y, dtype=bool)
    if y.sum() == 0:
        raise DiscoverError("no case fails the goal: nothing to discover (loosen the goal or check "
                            "the region and product)")
    if y.all():
        raise DiscoverError("every case fails the goal: no range of the inputs avoids it")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = prim.Prim(x, y, threshold=threshold, peel_alpha=0.05, mass_min=0.05)
        box = p.find_box()
    traj = box.peeling_trajectory.reset_index(drop=True)
    ok = traj[traj.coverage >= min_coverage]
    step = int(ok.density.idxmax()) if len(ok) else 0
    box.select(step)
    lims = box.box_lims[step]
    full = box.box_lims[0]
    qp = getattr(box, "qp", None)
    qp_step = qp[step] if isinstance(qp, list) and len(qp) > step else {}
    rows = []
    for dim in x.columns:
        lo, hi = lims[dim][0], lims[dim][1]
        if isinstance(lo, (set, frozenset)) or isinstance(hi, (set, frozenset)):
            vals = sorted(map(str, lo if isinstance(lo, (set, frozenset)) else hi))
            restricted = set(vals) != set(map(str, full[dim][0]))
            rows.append({"dimension": dim, "low": "", "high": "", "values": " ".join(vals),
                         "restricted": restricted})
            continue
        restricted = bool(lo > full[dim][0] or hi < full[dim][1])
        rows.append({"dimension": dim, "low": float(lo), "high": float(hi), "values": "",
                     "restricted": restricted})
    limits = pd.DataFrame(rows)
    limits["quasi_p"] = [float(np.max(qp_step[d])) if d in qp_step else np.nan
                         for d in limits.dimension]
    return Discovery(limits, traj[["coverage", "density", "mass", "res_dim"]], step,
                     float(traj.coverage[step]), float(traj.density[step]), int(len(y)),
                     int(y.sum()), box)


def cases(folders: list[Path], kpi: str, region: str, product: str,
          where: dict[str, str]) -> tuple[pd.DataFrame, pd.Series, list[str]]:
    """One row per (job, replication): parameter draws, swept axes, and the KPI value."""
    frames, all_axes = [], []
    for folder in folders:
        jobs = completed_jobs(folder)
        summary, axes = read_summary(folder, [[("kpi", "==", kpi), ("region", "==", region),
                                               ("product", "==", product)]])
        all_axes.extend(a for a in axes if a not in all_axes)
        for job in jobs:
            if not (job / PARAMETERS).exists():
                raise DiscoverError(
                    f"{job} has no {PARAMETERS}: its jobs ran without uncertain parameters; sweep "
                    "with uncertainty=baseline (or your own uncertain.* declarations) first")
            par = pd.read_csv(job / PARAMETERS).pivot(index="replication", columns="parameter",
                                                      values="value")
            k = summary[(summary.job == job.name) & (summary.lever == "")]
            k = k.set_index("replication")
            rows = par.join(k[["value", *axes]], how="inner")
            rows["job"] = job.name
            frames.append(rows.reset_index())
    if not frames:
        raise DiscoverError("no completed job in the sweep")
    df = pd.concat(frames, ignore_index=True)
    if df.value.isna().all() or df.empty:
        raise DiscoverError(f"{kpi} has no values for region {region!r} and product {product!r}")
    for axis, value in where.items():
        if axis not in df.columns:
            raise DiscoverError(f"--where {axis}={value}: {axis!r} is not a swept axis; allowed: "
                                + (", ".join(all_axes) or "none"))
        if value not in set(df[axis]):
            raise DiscoverError(f"--where {axis}={value}: no job has that value; allowed: "
                                + ", ".join(sorted(set(df[axis]))))
        df = df[df[axis] == value]
    params = [c for c in df.columns if c not in {"replication", "value", "job", *all_axes}]
    free_axes = [a for a in all_axes if a not in where and df[a].nunique() > 1]
    x = df[params + free_axes].copy()
    for a in free_axes:
        x[a] = x[a].astype("category")
    return x.reset_index(drop=True), df["value"].reset_index(drop=True), params


def write_outputs(out: Path, d: Discovery, meta: dict[str, Any], formats: list[str]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .results import write_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "box.csv", d.limits.to_csv(index=False, float_format="%.6g"))
    write_atomic(out / "trajectory.csv", d.trajectory.to_csv(index_label="step",
                                                              float_format="%.6g"))
    files = ["box.csv", "trajectory.csv"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig = d.box.show_tradeoff()
        fig.axes[0].set_title(f"PRIM peeling trajectory; chosen box: step {d.step}, coverage "
                              f"{d.coverage:.0%}, density {d.density:.0%}", fontsize=9)
        figs = d.box.inspect(d.step, style="graph")
    for stem, f in (("tradeoff", fig), ("box", figs[0] if isinstance(figs, list) else figs)):
        for fmt in formats:
            f.savefig(out / f"{stem}.{fmt}", dpi=130 if fmt == "png" else None, bbox_inches="tight")
            files.append(f"{stem}.{fmt}")
        plt.close(f)
    write_atomic(out / "manifest.json", json.dumps(
        {**meta, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "step": d.step,
         "coverage": d.coverage, "density": d.density, "cases": d.cases, "failures": d.failures,
         "files": files}, indent=2, default=str))
    return files
