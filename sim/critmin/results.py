"""Tidy result tables and the run manifest (the edge where arrays become files).

- `timeseries.parquet`: long format, one row per (replication, date, region,
  product, sector, origin, variable); written batch by batch, so memory does not
  grow with the number of replications.
- `kpis.csv`: `replication, region, product, lever, kpi, value`, exact numbers.
- `manifest.json`: config, seed, versions, code version; written last, so a run
  folder without it is incomplete.

Every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import datetime as dt
import functools
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
import pyarrow.compute as pc
import pyarrow.csv as pv
import pyarrow.parquet as pq

from .core import RESULTS_VERSION
from .core.engine import LEVER_SERIES, BatchResult
from .core.invariants import InvariantError
from .core.kpis import KpiRows
from .core.levers import Levers
from .core.world import World
from .series import ALL_SET as ALL_SERIES
from .series import SHIPMENT_SERIES

TIMESERIES = "timeseries.parquet"
KPIS = "kpis.csv"
MANIFEST = "manifest.json"

LABEL = pa.dictionary(pa.int32(), pa.string())
# Every column is required (no nulls: an unused label is "", a missing number NaN). Parquet
# then stores no null markers per value: writing is a third faster (benchmarks/bench.py).
SCHEMA = pa.schema([pa.field(name, kind, nullable=False) for name, kind in (
    ("replication", pa.int32()),
    ("date", pa.date32()),
    ("region", LABEL),
    ("product", LABEL),
    ("sector", LABEL),
    ("origin", LABEL),
    ("lever", LABEL),
    ("variable", LABEL),
    ("value", pa.float64()),
    ("unit", LABEL),
)])

STATISTICS = ("variable", "sector")  # columns whose row-group statistics are written

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


@functools.lru_cache(maxsize=64)
def _names(names: tuple[str, ...]) -> pa.Array:
    return pa.array(names, pa.string())


@functools.lru_cache(maxsize=8)  # a job's few block sizes; at most 8 x ~4 MB kept
def _zeros(n: int) -> np.ndarray:
    """n codes 0 (read-only; arrow uses the buffer as it is): a label the same on every row."""
    z = np.zeros(n, dtype=np.int32)
    z.flags.writeable = False
    return z


def _label(v: Any, n: int) -> pa.DictionaryArray:
    """A dictionary-encoded label column: a constant string, (codes, names), or strings.

    The codes of a constant and the dictionaries are kept between calls: a job writes the
    same few of each, for every variable and batch. Codes are not checked against the
    dictionary again (arrow's `safe`, ~0.5 ms per million rows): they are made here, from
    the axis positions of arrays whose labels are the dictionary."""
    if isinstance(v, str):
        return pa.DictionaryArray.from_arrays(_zeros(n), _names((v,)), safe=False)
    if isinstance(v, tuple):
        codes, names = v
        return pa.DictionaryArray.from_arrays(np.asarray(codes, dtype=np.int32),
                                              _names(tuple(names)), safe=False)
    return pa.array(v, pa.string()).dictionary_encode()


def _frame(rep: np.ndarray, days: np.ndarray, values: np.ndarray, labels: dict[str, Any],
           variable: str, unit: str) -> pa.Table:
    """A block of rows; `values` is [R, MT, ...] flattened in C order with `labels` per axis,
    `rep` the replication and `days` the date (int32 days since 1970-01-01) of each row.

    A label is a string (the same for every row), a (codes, names) pair, or an array of
    strings; label columns are dictionary-encoded (small files, fast to write and read).
    Numbers go to arrow without a copy or a conversion (dates as int32 day numbers, which
    is how arrow stores date32).
    """
    n = values.size
    cols = [pa.array(np.asarray(rep, dtype=np.int32)),
            pa.Array.from_buffers(pa.date32(), n,
                                  [None, pa.py_buffer(np.ascontiguousarray(days, np.int32))])]
    cols += [_label(labels.get(key, ""), n) for key in ("region", "product", "sector", "origin",
                                                         "lever")]
    cols += [_label(variable, n), pa.array(values.reshape(-1)), _label(unit, n)]
    return pa.Table.from_arrays(cols, schema=SCHEMA)


def _days(months: Any) -> np.ndarray:
    """The first days of the months as int32 days since 1970-01-01 (arrow's date32)."""
    return np.array(months, dtype="datetime64[D]").astype(np.int64).astype(np.int32)


def _fill(axis_labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`axis_labels` (shaped to broadcast over `shape`) repeated over the rows of a flattened
    `shape` array: one pass of writing, not np.repeat and np.tile's copies."""
    out = np.empty(shape, dtype=np.int32)
    out[...] = axis_labels
    return out.reshape(-1)


def _grid(replications: Any, days: np.ndarray, *dims: int,
          keep: np.ndarray | None = None) -> list[np.ndarray]:
    """Row labels of a flattened [R, MT, *rest] array (C order): the replication number and
    the date (`days`, one per month, as from `_days`) of each row, then one index per axis of
    `rest`. With `keep` (a mask over `rest`, the same for every replication and month), only
    for the kept elements: take the values with `_kept`."""
    reps = np.asarray(replications, dtype=np.int32)
    if keep is not None:
        idx = np.unravel_index(np.flatnonzero(keep), dims)  # the kept cells of one month
        shape: tuple[int, ...] = (len(reps), len(days), idx[0].size)
        return [_fill(reps[:, None, None], shape), _fill(days[None, :, None], shape),
                *(_fill(i[None, None, :], shape) for i in idx)]
    shape = (len(reps), len(days), *dims)
    first = (reps, days, *(np.arange(d, dtype=np.int32) for d in dims))
    return [_fill(a.reshape([-1 if i == j else 1 for i in range(len(shape))]), shape)
            for j, a in enumerate(first)]


def _kept(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The elements of [R, MT, *rest] `values` where the mask `keep` over `rest` is true, in
    the order of `_grid(..., keep=keep)`."""
    R, MT = values.shape[:2]
    if keep.all():
        return values.reshape(-1)
    return values.reshape(R * MT, -1)[:, keep.reshape(-1)].reshape(-1)


def lever_labels(world: World, levers: Levers, kind: str) -> tuple[list[str], list[str]]:
    """(instance names, region labels) of one lever kind, in the engine's order."""
    items = getattr(levers, kind)
    if kind == "stockpiles":
        regions = [world.regions[x.holder] for x in items]
    else:
        regions = [world.regions[x.payer] for x in items]
    return [x.name for x in items], regions


def lever_tables(world: World, levers: Levers, res: BatchResult, days: np.ndarray,
                 series: frozenset[str] = ALL_SERIES) -> Iterable[pa.Table]:
    """Rows of the levers' own series: reserves, floors, capacity deals, duties (`days`: the
    months' first days as from `_days`)."""
    for var, arr in (res.lever_series or {}).items():
        if var not in series:
            continue
        kind, unit, per_product, _ = LEVER_SERIES[var]
        names, regions = lever_labels(world, levers, kind)
        I, X = arr.shape[2:]
        keep = np.ones((I, X), dtype=bool)
        if per_product and kind == "stockpiles":  # only the products each reserve holds
            keep = np.array([p.products for p in levers.stockpiles], dtype=bool)  # I, K
        rep, date, i, x = _grid(res.replications, days, I, X, keep=keep)
        yield _frame(rep, date, _kept(arr, keep),
                     {"region": (i, regions),
                      "product": (x, world.products) if per_product else "all",
                      "lever": (i, names)}, var, unit)
    for field, var, lever in (("tariff_revenue", "tariff_revenue", "duties"),
                              ("discount_cost", "export_discount_cost", "export_discounts")):
        arr = getattr(res, field)
        if arr is None or var not in series:
            continue
        N, K = len(world.regions), len(world.products)
        keep = arr.sum((0, 1)) > 0
        rep5, date5, d5, o5, k5 = _grid(res.replications, days, N, N, K, keep=keep)
        yield _frame(rep5, date5, _kept(arr, keep),
                     {"region": (d5, world.regions), "origin": (o5, world.regions),
                      "product": (k5, world.products), "lever": lever}, var, "USD/month")
    if res.licences_pending is not None and "licences_pending" in series:
        N, K = len(world.regions), len(world.products)
        keep = res.licences_pending.sum((0, 1)) > 0
        rep4, date4, n4, k4 = _grid(res.replications, days, N, K, keep=keep)
        yield _frame(rep4, date4, _kept(res.licences_pending, keep),
                     {"region": (n4, world.regions), "product": (k4, world.products),
                      "lever": "export_controls"}, "licences_pending", "t")


def possible_cells(world: World) -> dict[str, np.ndarray]:
    """For each region-product series, the [region, product] cells the world lets be non-zero:
    production where a plant makes the product, input use where a plant uses it, end use
    (consumption, demand, unmet) where an end-use sector buys it, China's content of use
    where either uses it; inventory where any of them does (stocks are bought for use and
    held by sellers of their output), imports where a plant or an end use uses it (only a
    region's own needs are ordered), exports where a plant makes it (only output is sold).
    The other cells are zero in every run of the world, and get no rows (over half of the
    flows' rows in the rare-earth world; docs/results.md); writing checks that they are."""
    N, K = len(world.regions), len(world.products)
    made, used, end = (np.zeros((N, K), dtype=bool) for _ in range(3))
    for f, region in enumerate(world.fac_region):
        made[region] |= np.asarray(world.fac_outputs[f]) > 0
        used[region] |= np.asarray(world.fac_inputs[f]) > 0
    end[np.asarray(world.sector_region), np.asarray(world.sector_product)] = True
    return {"production": made, "input_use": used, "consumption": end, "demand": end,
            "unmet": end, "provenance_use": used | end, "inventory": made | used | end,
            "imports": used | end, "exports": made}


def _check_left_out(world: World, values: np.ndarray, keep: np.ndarray, name: str) -> None:
    """Raise if a cell `possible_cells` leaves out holds a non-zero value ([R, MT, N, K])."""
    R, MT, N, K = values.shape
    left_out = values.reshape(R * MT, N * K)[:, ~keep.reshape(-1)]
    if left_out.any():
        n, k = np.unravel_index(np.flatnonzero(~keep)[np.flatnonzero(left_out.any(0))[0]], (N, K))
        raise InvariantError(f"{name} is non-zero in {world.regions[n]} {world.products[k]}, "
                             "where the world has no plant or end use of it: a bug in critmin, "
                             "please report it")


def timeseries_tables(world: World, res: BatchResult, levers: Levers | None = None,
                      series: frozenset[str] = ALL_SERIES) -> Iterable[pa.Table]:
    """The long-format rows of one batch, one block per variable; only `series` are built."""
    N, K = res.production.shape[2:]
    days = _days(res.months)

    def grid(*dims: int) -> list[np.ndarray]:
        return _grid(res.replications, days, *dims)

    cells = possible_cells(world)
    rows: dict[bytes, list[np.ndarray]] = {}  # the row labels of each set of [region, product] cells

    def cell_rows(keep: np.ndarray) -> list[np.ndarray]:
        key = keep.tobytes()
        if key not in rows:
            rows[key] = _grid(res.replications, days, N, K, keep=keep)
        return rows[key]

    for field, (name, unit) in VARIABLES.items():
        if name in series:
            keep = cells[field]
            rep_c, date_c, n_c, k_c = cell_rows(keep)
            _check_left_out(world, getattr(res, field), keep, name)
            yield _frame(rep_c, date_c, _kept(getattr(res, field), keep),
                         {"region": (n_c, world.regions), "product": (k_c, world.products)},
                         name, unit)
    # imports and exports between regions, and supply by origin (domestic included)
    ship = res.shipments  # R, MT, d, o, K
    if ship is None and series & SHIPMENT_SERIES:
        raise ValueError("these series need the monthly shipments, which this run did not "
                         "record: simulate with record_shipments=True")
    if series & {"imports", "exports"}:
        # sums over origins (imports) and over destinations (exports) with the domestic
        # routes (the diagonal) zeroed in place for the moment: the same sums without a
        # copy of the largest array (3.8 vs 5.0 ms per 10 replications of the 2024 world)
        diag = np.arange(N)
        domestic = ship[:, :, diag, diag, :]
        ship[:, :, diag, diag, :] = 0.0
        try:
            foreign = {name: ship.sum(axis) for name, axis in (("imports", 3), ("exports", 2))
                       if name in series}
        finally:
            ship[:, :, diag, diag, :] = domestic
        for name, flows in foreign.items():
            keep = cells[name]
            _check_left_out(world, flows, keep, name)
            rep, date, n, k = cell_rows(keep)
            yield _frame(rep, date, _kept(flows, keep), {"region": (n, world.regions),
                                                         "product": (k, world.products)},
                         name, "t/month")
    if "supply_by_origin" in series:
        keep = ship.sum((0, 1)) > 0
        rep5, date5, d5, o5, k5 = _grid(res.replications, days, N, N, K, keep=keep)
        yield _frame(rep5, date5, _kept(ship, keep),
                     {"region": (d5, world.regions), "origin": (o5, world.regions),
                      "product": (k5, world.products)},
                     "supply_by_origin", "t/month")
    if "price" in series:
        repm, datem, m, km = grid(len(world.markets), K)
        yield _frame(repm, datem, res.price,
                     {"region": (m, world.markets), "product": (km, world.products)},
                     "price", "USD/kg")
    sector = [(f, name, unit) for f, name, unit in (
        ("sector_demand", "demand", "t/month"), ("sector_unmet", "unmet_demand", "t/month"),
        ("sector_substitution", "substitution_share", "share")) if name in series]
    if sector:
        reps_, dates, s = grid(len(world.sectors))
        sec_region = (np.asarray(world.sector_region)[s], world.regions)
        sec_product = (np.asarray(world.sector_product)[s], world.products)
        sec_kind = (s, world.sector_kind)
        for field, name, unit in sector:
            yield _frame(reps_, dates, getattr(res, field),
                         {"region": sec_region, "product": sec_product, "sector": sec_kind},
                         name, unit)
    if "capacity" in series:
        repf, datef, f = grid(len(world.facilities))
        fac_region = (np.asarray(world.fac_region)[f], world.regions)
        fac_name = (f, world.facilities)
        yield _frame(repf, datef, res.capacity, {"region": fac_region, "origin": fac_name},
                     "capacity", "t/yr")
    if levers is not None:
        yield from lever_tables(world, levers, res, days, series)


class TimeseriesWriter:
    """Streams batches into `timeseries.parquet` via a temporary file."""

    def __init__(self, folder: Path, series: frozenset[str] = ALL_SERIES) -> None:
        self.series = series
        self.path = folder / TIMESERIES
        self.tmp = folder / (TIMESERIES + ".partial")
        # Writing is most of a sweep job's cost beyond its simulation (benchmarks/bench.py), so:
        # dictionary pages for the label columns; statistics only where they let a reader skip
        # row groups (each holds one variable, and sector rows are apart from region rows;
        # every row group holds all regions, products, dates, so their statistics skip
        # nothing, and computing them was a third of the writing); lz4, faster than zstd at
        # ~20 % larger files (measured: 27 vs 37 ms and 1.4 vs 1.2 MB per 10 replications of
        # the `compare` series).
        labels = [f.name for f in SCHEMA if pa.types.is_dictionary(f.type)]
        self.writer = pq.ParquetWriter(self.tmp, SCHEMA, compression="lz4", use_dictionary=labels,
                                       write_statistics=list(STATISTICS))

    def write(self, world: World, res: BatchResult, levers: Levers | None = None) -> None:
        for table in timeseries_tables(world, res, levers, self.series):
            self.writer.write_table(table)

    def close(self) -> None:
        self.writer.close()
        os.replace(self.tmp, self.path)


KPI_SORT = ("kpi", "region", "product", "lever", "replication")


def kpi_table(rows: Iterable[KpiRows]) -> pa.Table:
    """The KPI rows of a run (`replication, region, product, lever, kpi, value`), sorted by
    kpi, region, product, lever, replication; a NaN value (undefined) becomes missing."""
    rows = list(rows)

    def strings(name: str) -> pa.Array:
        return pa.array([x for r in rows for x in getattr(r, name)], pa.string())

    table = pa.table({
        "replication": pa.array(np.concatenate([r.replication for r in rows]).astype(np.int64)),
        "region": strings("region"), "product": strings("product"), "lever": strings("lever"),
        "kpi": strings("kpi"),
        "value": pa.array(np.concatenate([r.value for r in rows]), pa.float64(), from_pandas=True),
    })
    return table.take(pc.sort_indices(table, [(k, "ascending") for k in KPI_SORT]))  # stable


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_kpis(folder: Path, table: pa.Table) -> None:
    """`kpis.csv`: exact numbers (the shortest text that reads back as the same number), a
    missing value empty; arrow's writer, as for the sweep summary (with `kpi_table`, 1.7 ms
    per job of 20 replications; pandas took 8.1)."""
    tmp = folder / (KPIS + ".partial")
    pv.write_csv(table, tmp)
    os.replace(tmp, folder / KPIS)


PARAMETERS = "parameters.csv"


def write_parameters(folder: Path, params: Any, values: np.ndarray) -> None:
    """`parameters.csv`: replication, parameter (its name), key, value: the draws of a run,
    exact (the shortest text that reads back as the number the replication used)."""
    R = values.shape[0]
    df = pd.DataFrame({
        "replication": np.repeat(np.arange(R), len(params)),
        "parameter": [p.name for p in params] * R,
        "key": [p.key for p in params] * R,
        "value": values.reshape(-1),
    })
    write_atomic(folder / PARAMETERS, df.to_csv(index=False))


@functools.cache  # once per process: a sweep worker runs many jobs of one code version
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


@functools.cache
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
        "code_version": dict(code_version()),
        "results_version": RESULTS_VERSION,
        "package_versions": dict(package_versions()),
        **extra,
        "config": config,
    }
    write_atomic(folder / MANIFEST, json.dumps(manifest, indent=2, default=str))
