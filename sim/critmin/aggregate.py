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
import pyarrow as pa
import pyarrow.csv as pv
import pyarrow.parquet as pq
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


def _choices(job: Path, manifest: dict[str, Any]) -> dict[str, str]:
    """Hydra's config-group choices of a job (package, levers/stockpile, scenario, ...): from
    its manifest, or for a job of critmin 0.x before it recorded them, from `.hydra/`."""
    if "choices" in manifest:
        return {str(k): str(v) for k, v in manifest["choices"].items()}
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


def job_values(folder: Path, jobs: list[Path], keys: list[str],
               overrides_by_job: dict[str, dict[str, str]] | None = None
               ) -> dict[str, dict[str, str]]:
    """Each job's value of each key: its override, else its config-group choice, else its config.

    The manifest's config and config-group choices are read only for a job that
    did not set a key, one job at a time.
    """
    values: dict[str, dict[str, str]] = {}
    for job in jobs:
        overrides = (overrides_by_job or {}).get(job.name)
        if overrides is None:
            overrides = _overrides(json.loads((job / MANIFEST).read_text()))
        row = {k: overrides[k] for k in keys if k in overrides}
        missing = [k for k in keys if k not in row]
        if missing:
            manifest = json.loads((job / MANIFEST).read_text())
            choices = _choices(job, manifest)
            config = manifest.get("config", {})
            for k in missing:
                row[k] = choices[k] if k in choices else _select(config, k)
        values[job.name] = {k: row[k] for k in keys}
    return values


def job_axes(folder: Path, jobs: list[Path]) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The swept axes (in the sweep's order) and each job's value on each axis.

    An axis is a key the sweep record lists, or any key whose value differs
    between jobs. A job that did not set a key gets the value it ran with.
    """
    record = read_record(folder)
    keys = list(record.get("axes", {}))
    overrides = {job.name: _overrides(json.loads((job / MANIFEST).read_text())) for job in jobs}
    for o in overrides.values():
        keys.extend(k for k in o if k not in keys)
    values = job_values(folder, jobs, keys, overrides)
    axes = [k for k in keys if k in record.get("axes", {})
            or len({values[j.name][k] for j in jobs}) > 1]
    return axes, values


def axis_order(folders: list[Path], axis: str, present: list[str]) -> list[str]:
    """Values of an axis in the order the sweeps gave them (then any others, sorted)."""
    given: list[str] = []
    for folder in folders:
        given.extend(v for v in read_record(folder).get("axes", {}).get(axis, []) if v not in given)
    return [v for v in given if v in present] + sorted(v for v in set(present) if v not in given)


def aggregate(folder: Path) -> tuple[int, int, list[str]]:
    """Build `summary.parquet` and `summary.csv` in `folder`, one job at a time.

    Only each job's `kpis.csv` is read (never its time series), and each job's rows are
    appended to the files before the next job is read, so memory does not grow with
    the number of jobs. Returns (jobs, rows, axes).
    """
    folder = Path(folder)
    jobs = completed_jobs(folder)
    if not jobs:
        raise AggregateError(f"{folder} has no completed job yet (no {JOBS}/*/{MANIFEST}); run or "
                             "resume the sweep first")
    axes, values = job_axes(folder, jobs)
    columns = ["sweep", "job", *axes, *KEY, "value"]
    schema = pa.schema([(c, pa.int32() if c == "replication" else pa.float64() if c == "value"
                         else pa.string()) for c in columns])
    tmp, tmp_csv = folder / (SUMMARY + ".partial"), folder / (SUMMARY_CSV + ".partial")
    rows = 0
    # arrow reads, labels and writes each job's rows (pandas took 10x longer for the CSV)
    read = pv.ConvertOptions(column_types={c: schema.field(c).type for c in [*KEY, "value"]},
                             null_values=["", "nan", "NaN"], strings_can_be_null=False)
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer, \
            pv.CSVWriter(tmp_csv, schema) as csv:
        for job in jobs:
            k = pv.read_csv(job / KPIS, convert_options=read)
            head = {"sweep": folder.name, "job": job.name, **values[job.name]}
            n = k.num_rows
            table = pa.table({c: pa.repeat(pa.scalar(head[c], pa.string()), n) if c in head
                              else k.column(c) for c in columns}, schema=schema)
            writer.write_table(table)
            csv.write_table(table)
            rows += n
    os.replace(tmp, folder / SUMMARY)
    os.replace(tmp_csv, folder / SUMMARY_CSV)
    return len(jobs), rows, axes


def read_summary(folder: Path, filters: list[Any] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """A sweep's summary (rebuilt if a completed job is newer than it) and its axes.

    `filters` (pyarrow's form, e.g. [("kpi", "in", [...])]) reads only the rows needed.
    """
    folder = Path(folder)
    path = folder / SUMMARY
    jobs = completed_jobs(folder)
    if not path.exists() or any((j / MANIFEST).stat().st_mtime > path.stat().st_mtime for j in jobs):
        aggregate(folder)
    df = pq.read_table(path, filters=filters).to_pandas()
    fixed = {"sweep", "job", *KEY, "value"}
    return df, [c for c in pq.read_schema(path).names if c not in fixed]
