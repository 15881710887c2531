"""Tidy result tables and the run manifest (the edge where arrays become files).

- `timeseries.parquet`: long format, one row per (replication, date, region,
  product, sector, origin, variable); written batch by batch, so memory does not
  grow with the number of replications.
- `kpis.csv`: `replication, region, product, kpi, value`.
- `manifest.json`: config, seed, versions, code version; written last, so a run
  folder without it is incomplete.

Every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .core.engine import LEVER_SERIES, BatchResult
from .core.kpis import KpiRows
from .core.levers import Levers
from .core.world import World

TIMESERIES = "timeseries.parquet"
KPIS = "kpis.csv"
MANIFEST = "manifest.json"

SCHEMA = pa.schema([
    ("replication", pa.int32()),
    ("date", pa.date32()),
    ("region", pa.string()),
    ("product", pa.string()),
    ("sector", pa.string()),
    ("origin", pa.string()),
    ("lever", pa.string()),
    ("variable", pa.string()),
    ("value", pa.float64()),
    ("unit", pa.string()),
])

VARIABLES = {  # BatchResult field -> (variable name, unit)
    "production": ("production", "t/month"),
    "input_use": ("input_use", "t/month"),
    "consumption": ("consumption", "t/month"),
    "demand": ("demand", "t/month"),
    "unmet": ("unmet_demand", "t/month"),
    "provenance_use": ("china_content_of_use", "t/month"),
    "inventory": ("inventory", "t"),
}


class RunFolderError(RuntimeError):
    """The run folder cannot take this run (it holds an earlier one)."""


def ensure_fresh(folder: Path) -> None:
    if (folder / MANIFEST).exists() or (folder / TIMESERIES).exists():
        raise RunFolderError(
            f"{folder} already holds a run; critmin never overwrites results: "
            "choose another hydra.run.dir or remove that folder"
        )


def _frame(rep: np.ndarray, dates: np.ndarray, values: np.ndarray, labels: dict[str, Any],
           variable: str, unit: str) -> pa.Table:
    """A block of rows; `values` is [R, MT, ...] flattened in C order with `labels` per axis."""
    n = values.size
    cols: dict[str, Any] = {
        "replication": rep, "date": dates,
        "region": labels.get("region", ""), "product": labels.get("product", ""),
        "sector": labels.get("sector", ""), "origin": labels.get("origin", ""),
        "lever": labels.get("lever", ""),
    }
    data = {}
    for k, v in cols.items():
        data[k] = v if isinstance(v, np.ndarray) else np.full(n, v, dtype=object)
    data["variable"] = np.full(n, variable, dtype=object)
    data["value"] = values.reshape(-1)
    data["unit"] = np.full(n, unit, dtype=object)
    return pa.Table.from_pydict(data, schema=SCHEMA)


def lever_labels(world: World, levers: Levers, kind: str) -> tuple[list[str], list[str]]:
    """(instance names, region labels) of one lever kind, in the engine's order."""
    items = getattr(levers, kind)
    if kind == "stockpiles":
        regions = [world.regions[x.holder] for x in items]
    else:
        regions = [world.regions[x.payer] for x in items]
    return [x.name for x in items], regions


def lever_tables(world: World, levers: Levers, res: BatchResult, months: np.ndarray
                 ) -> Iterable[pa.Table]:
    """Rows of the levers' own series: reserves, floors, capacity deals, duties."""
    R, MT = res.production.shape[:2]
    for var, arr in (res.lever_series or {}).items():
        kind, unit, per_product, _ = LEVER_SERIES[var]
        names, regions = lever_labels(world, levers, kind)
        I, X = arr.shape[2:]
        rep, mi, i, x = [a.reshape(-1) for a in np.meshgrid(
            res.replications, np.arange(MT), np.arange(I), np.arange(X), indexing="ij")]
        keep = np.ones(rep.size, dtype=bool)
        if per_product and kind == "stockpiles":  # only the products each reserve holds
            held = np.array([p.products for p in levers.stockpiles])  # I, K
            keep = held[i, x]
        product = np.array(world.products, dtype=object)[x] if per_product else "all"
        yield _frame(rep[keep], months[mi][keep], arr.reshape(-1)[keep],
                     {"region": np.array(regions, dtype=object)[i][keep],
                      "product": product[keep] if per_product else "all",
                      "lever": np.array(names, dtype=object)[i][keep]}, var, unit)
    for field, var, lever in (("tariff_revenue", "tariff_revenue", "duties"),
                              ("discount_cost", "export_discount_cost", "export_discounts")):
        arr = getattr(res, field)
        if arr is None:
            continue
        N, K = len(world.regions), len(world.products)
        rep5, mi5, d5, o5, k5 = [a.reshape(-1) for a in np.meshgrid(
            res.replications, np.arange(MT), np.arange(N), np.arange(N), np.arange(K), indexing="ij")]
        keep = np.broadcast_to(arr.sum((0, 1)) > 0, arr.shape).reshape(-1)
        yield _frame(rep5[keep], months[mi5][keep], arr.reshape(-1)[keep],
                     {"region": np.array(world.regions, dtype=object)[d5][keep],
                      "origin": np.array(world.regions, dtype=object)[o5][keep],
                      "product": np.array(world.products, dtype=object)[k5][keep],
                      "lever": lever}, var, "USD/month")
    if res.licences_pending is not None:
        N, K = len(world.regions), len(world.products)
        rep4, mi4, n4, k4 = [a.reshape(-1) for a in np.meshgrid(
            res.replications, np.arange(MT), np.arange(N), np.arange(K), indexing="ij")]
        keep = np.broadcast_to(res.licences_pending.sum((0, 1)) > 0,
                               res.licences_pending.shape).reshape(-1)
        yield _frame(rep4[keep], months[mi4][keep], res.licences_pending.reshape(-1)[keep],
                     {"region": np.array(world.regions, dtype=object)[n4][keep],
                      "product": np.array(world.products, dtype=object)[k4][keep],
                      "lever": "export_controls"}, "licences_pending", "t")


def timeseries_tables(world: World, res: BatchResult, levers: Levers | None = None
                      ) -> Iterable[pa.Table]:
    """The long-format rows of one batch, one block per variable."""
    R, MT, N, K = res.production.shape
    months = np.array(res.months, dtype="datetime64[D]")

    def grid(*dims: int) -> list[np.ndarray]:
        return [a.reshape(-1) for a in np.meshgrid(res.replications, np.arange(MT),
                                                   *[np.arange(d) for d in dims], indexing="ij")]

    rep, mi, n, k = grid(N, K)
    region = np.array(world.regions, dtype=object)[n]
    product = np.array(world.products, dtype=object)[k]
    for field, (name, unit) in VARIABLES.items():
        yield _frame(rep, months[mi], getattr(res, field),
                     {"region": region, "product": product}, name, unit)
    # imports and exports between regions, and supply by origin (domestic included)
    ship = res.shipments  # R, MT, d, o, K
    eye = np.eye(N, dtype=bool)[None, None, :, :, None]
    foreign = np.where(eye, 0.0, ship)
    yield _frame(rep, months[mi], foreign.sum(3), {"region": region, "product": product},
                 "imports", "t/month")
    yield _frame(rep, months[mi], foreign.sum(2), {"region": region, "product": product},
                 "exports", "t/month")
    rep5, mi5, d5, o5, k5 = grid(N, N, K)
    keep = np.broadcast_to(ship.sum((0, 1)) > 0, ship.shape).reshape(-1)
    yield _frame(rep5[keep], months[mi5][keep], ship.reshape(-1)[keep],
                 {"region": np.array(world.regions, dtype=object)[d5][keep],
                  "origin": np.array(world.regions, dtype=object)[o5][keep],
                  "product": np.array(world.products, dtype=object)[k5][keep]},
                 "supply_by_origin", "t/month")
    repm, mim, m, km = grid(len(world.markets), K)
    yield _frame(repm, months[mim], res.price,
                 {"region": np.array(world.markets, dtype=object)[m],
                  "product": np.array(world.products, dtype=object)[km]},
                 "price", "USD/kg")
    reps_, mis, s = grid(len(world.sectors))
    sec_region = np.array([world.regions[i] for i in world.sector_region], dtype=object)[s]
    sec_product = np.array([world.products[i] for i in world.sector_product], dtype=object)[s]
    sec_kind = np.array(world.sector_kind, dtype=object)[s]
    for field, name in (("sector_demand", "demand"), ("sector_unmet", "unmet_demand")):
        yield _frame(reps_, months[mis], getattr(res, field),
                     {"region": sec_region, "product": sec_product, "sector": sec_kind},
                     name, "t/month")
    repf, mif, f = grid(len(world.facilities))
    fac_region = np.array([world.regions[i] for i in world.fac_region], dtype=object)[f]
    fac_name = np.array(world.facilities, dtype=object)[f]
    yield _frame(repf, months[mif], res.capacity, {"region": fac_region, "origin": fac_name},
                 "capacity", "t/yr")
    if levers is not None:
        yield from lever_tables(world, levers, res, months)


class TimeseriesWriter:
    """Streams batches into `timeseries.parquet` via a temporary file."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / TIMESERIES
        self.tmp = folder / (TIMESERIES + ".partial")
        self.writer = pq.ParquetWriter(self.tmp, SCHEMA, compression="zstd")

    def write(self, world: World, res: BatchResult, levers: Levers | None = None) -> None:
        for table in timeseries_tables(world, res, levers):
            self.writer.write_table(table)

    def close(self) -> None:
        self.writer.close()
        os.replace(self.tmp, self.path)


def kpi_frame(rows: Iterable[KpiRows]) -> pd.DataFrame:
    frames = [pd.DataFrame({"replication": r.replication, "region": r.region, "product": r.product,
                            "lever": r.lever, "kpi": r.kpi, "value": r.value}) for r in rows]
    df = pd.concat(frames, ignore_index=True)
    return df.sort_values(["kpi", "region", "product", "lever", "replication"], kind="stable",
                          ignore_index=True)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_kpis(folder: Path, df: pd.DataFrame) -> None:
    write_atomic(folder / KPIS, df.to_csv(index=False, float_format="%.10g"))


def code_version() -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
    info: dict[str, Any] = {"critmin": metadata.version("critmin")}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
            info["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def package_versions() -> dict[str, str]:
    names = ["numpy", "scipy", "simpy", "hydra-core", "omegaconf", "pandas", "pyarrow",
             "matplotlib", "tqdm"]
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "not installed"
    return out


def write_manifest(folder: Path, config: dict[str, Any], extra: dict[str, Any]) -> None:
    manifest = {
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "package_versions": package_versions(),
        **extra,
        "config": config,
    }
    write_atomic(folder / MANIFEST, json.dumps(manifest, indent=2, default=str))
