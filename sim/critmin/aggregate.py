"""`critmin aggregate SWEEP_DIR`: one tidy KPI table over all completed jobs of a sweep.

`summary.parquet` (and `summary.csv`) hold one row per (job, replication,
region, product, lever, kpi) with one column per swept axis, so every
comparison is a group-by. Only jobs with a manifest (complete) are read, one
at a time; the table is rebuilt from the job folders each time, so it can be
re-run after a crash or after more jobs were added.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .results import KPIS, MANIFEST
from .sweep import JOBS, override_key, override_value, read_record

SUMMARY = "summary.parquet"
SUMMARY_CSV = "summary.csv"
KEY = ["replication", "region", "product", "lever", "kpi"]


class AggregateError(Exception):
    """The folder is not a sweep with completed jobs; the message is one line."""


def completed_jobs(folder: Path) -> list[Path]:
    jobs = folder / JOBS
    if not jobs.is_dir():
        raise AggregateError(f"{folder} is not a sweep folder (no {JOBS}/ inside); give the folder "
                             "that `critmin sweep` printed, e.g. results/sweeps/quickstart")
    return sorted(p for p in jobs.iterdir() if (p / MANIFEST).exists())


def _choices(job: Path) -> dict[str, str]:
    """Hydra's config-group choices of a job (package, levers/stockpile, scenario, ...)."""
    path = job / ".hydra" / "hydra.yaml"
    if not path.exists():
        return {}
    node = yaml.safe_load(path.read_text()) or {}
    return {str(k): str(v) for k, v in node.get("hydra", {}).get("runtime", {})
            .get("choices", {}).items()}


def _select(config: dict[str, Any], dotted: str) -> str:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return "(default)"
        node = node[part]
    return str(node)


def _overrides(manifest: dict[str, Any]) -> dict[str, str]:
    return {override_key(o): override_value(o) for o in manifest.get("overrides", [])
            if override_key(o) != "sweep"}


def job_values(folder: Path, jobs: list[Path], keys: list[str]) -> dict[str, dict[str, str]]:
    """Each job's value of each key: its override, else its config-group choice, else its config."""
    values: dict[str, dict[str, str]] = {}
    for job in jobs:
        m = json.loads((job / MANIFEST).read_text())
        overrides, choices = _overrides(m), _choices(job)
        values[job.name] = {k: overrides[k] if k in overrides else choices[k] if k in choices
                            else _select(m.get("config", {}), k) for k in keys}
    return values


def job_axes(folder: Path, jobs: list[Path]) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The swept axes (in the sweep's order) and each job's value on each axis.

    An axis is a key the sweep record lists, or any key whose value differs
    between jobs. A job that did not set a key gets the value it ran with.
    """
    record = read_record(folder)
    keys = list(record.get("axes", {}))
    for job in jobs:
        keys.extend(k for k in _overrides(json.loads((job / MANIFEST).read_text())) if k not in keys)
    values = job_values(folder, jobs, keys)
    axes = [k for k in keys if k in record.get("axes", {})
            or len({values[j.name][k] for j in jobs}) > 1]
    return axes, values


def axis_order(folders: list[Path], axis: str, present: list[str]) -> list[str]:
    """Values of an axis in the order the sweeps gave them (then any others, sorted)."""
    given: list[str] = []
    for folder in folders:
        given.extend(v for v in read_record(folder).get("axes", {}).get(axis, []) if v not in given)
    return [v for v in given if v in present] + sorted(v for v in set(present) if v not in given)


def aggregate(folder: Path) -> pd.DataFrame:
    """Build and write `summary.parquet` and `summary.csv` in `folder`; return the table."""
    folder = Path(folder)
    jobs = completed_jobs(folder)
    if not jobs:
        raise AggregateError(f"{folder} has no completed job yet (no {JOBS}/*/{MANIFEST}); run or "
                             "resume the sweep first")
    axes, values = job_axes(folder, jobs)
    frames = []
    for job in jobs:
        k = pd.read_csv(job / KPIS, keep_default_na=False, na_values={"value": ["", "nan", "NaN"]},
                        dtype={"region": str, "product": str, "lever": str, "kpi": str})
        head = {"sweep": folder.name, "job": job.name, **values[job.name]}
        for col, val in reversed(head.items()):
            k.insert(0, col, val)
        frames.append(k)
    summary = pd.concat(frames, ignore_index=True)
    summary = summary[["sweep", "job", *axes, *KEY, "value"]]
    for col in ["sweep", "job", *axes, "region", "product", "lever", "kpi"]:
        summary[col] = summary[col].astype(str)
    summary.attrs["axes"] = axes
    tmp = folder / (SUMMARY + ".partial")
    summary.to_parquet(tmp, index=False)
    os.replace(tmp, folder / SUMMARY)
    tmp = folder / (SUMMARY_CSV + ".partial")
    summary.to_csv(tmp, index=False, float_format="%.10g")
    os.replace(tmp, folder / SUMMARY_CSV)
    return summary


def read_summary(folder: Path) -> tuple[pd.DataFrame, list[str]]:
    """The summary of a sweep, rebuilt if any completed job is newer than it; and its axes."""
    folder = Path(folder)
    path = folder / SUMMARY
    jobs = completed_jobs(folder)
    stale = not path.exists() or any(
        (j / MANIFEST).stat().st_mtime > path.stat().st_mtime for j in jobs)
    df = aggregate(folder) if stale else pd.read_parquet(path)
    fixed = {"sweep", "job", *KEY, "value"}
    return df, [c for c in df.columns if c not in fixed]
