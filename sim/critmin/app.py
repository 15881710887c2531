"""`critmin run`: a thin Hydra shell around `run_job`, a plain function of a config."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from .config.model import build_model
from .config.paths import config_dir, register_all
from .config.uncertain import draw, parse_uncertain
from .core.kpis import compute_kpis
from .results import (
    TimeseriesWriter,
    ensure_fresh,
    kpi_table,
    write_atomic,
    write_kpis,
    write_manifest,
    write_parameters,
)
from .runner import simulate, simulate_uncertain
from .series import PRESETS
from .sweep import FAILED, PROGRESS, ProgressFile, config_digest, job_status, settle_gc

log = logging.getLogger("critmin")
T = TypeVar("T")


def run_job(cfg: Any, folder: Path, overrides: list[str] | None = None,
            report: ProgressFile | None = None,
            config: dict[str, Any] | None = None,
            choices: dict[str, str] | None = None,
            in_sweep: bool = False) -> dict[str, Any]:
    """Simulate `cfg` and write its tables, plots and manifest into `folder` (must be new).

    Progress goes to a bar on stderr, or to `report` (a sweep job's progress file).
    `config` is `job_config(cfg)` if the caller has it already; `choices` are Hydra's
    config-group choices (package, levers/..., scenario), recorded in the manifest.
    Plots follow `run.plots`; if it is null (the default), only outside a sweep (`in_sweep`).
    Series follow `run.timeseries`; if it is null (the default), all of them outside a sweep
    or for a job that draws plots (they need them), else only those `critmin compare` reads.
    """
    started = time.time()
    spec, world, levers = build_model(cfg)
    draw_plots = spec.plots if spec.plots is not None else not in_sweep
    if in_sweep and spec.series_default and not draw_plots:
        spec = dataclasses.replace(spec, series=frozenset(PRESETS["compare"]))
    folder.mkdir(parents=True, exist_ok=True)
    ensure_fresh(folder)
    bar = tqdm(total=spec.replications, unit="rep", desc=f"critmin {cfg.scenario_name}",
               disable=not spec.progress or report is not None, file=sys.stderr,
               bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} reps [{elapsed}<{remaining}]")

    def progress(done: float) -> None:
        bar.update(done - bar.n)
        if report is not None:
            report(done)

    params = parse_uncertain(cfg)
    if params:  # each replication its own world, from row r of a Latin hypercube
        values = draw(params, spec.replications, spec.seed)
        write_parameters(folder, params, values)
        batches = simulate_uncertain(cfg, spec, params, values, progress)
    else:
        batches = ((res, world, levers) for res in simulate(world, spec, progress, levers))
    writer = TimeseriesWriter(folder, spec.series)
    kpi_rows, n_events = [], 0
    clock = Stopwatch()
    try:
        for res, w, lv in clock.timed(batches):
            writer.write(w, res, lv)
            kpi_rows.append(compute_kpis(w, res, lv))
            n_events += res.n_events
        writer.close()
    finally:
        bar.close()
    write_kpis(folder, kpi_table(kpi_rows))
    plots: list[str] = []
    if draw_plots:
        from .plots import plot_run  # here: matplotlib takes 0.2 s to import, sweeps rarely plot

        final = sorted({world.products[k] for k in world.sector_product})
        title = f"{world.name}, scenario {cfg.scenario_name}, {spec.replications} replications"
        plots = [p.name for p in plot_run(folder, title, final, spec.series)]
    summary = {
        "scenario": str(cfg.scenario_name),
        "scenario_question": str(cfg.scenario_question),
        "world": world.name,
        "seed": spec.seed,
        "replications": spec.replications,
        "start_date": spec.calendar.start_date.isoformat(),
        "horizon_days": spec.calendar.horizon_days,
        "simpy_events": n_events,
        "runtime_seconds": round(time.time() - started, 3),
        "simulation_seconds": round(clock.seconds, 3),  # of which simulating (benchmarks/)
        "overrides": list(overrides or []),
        "choices": dict(choices or {}),
        "uncertain_parameters": [p.name for p in params],
        "files": ["timeseries.parquet", "kpis.csv", *(["parameters.csv"] if params else []),
                  *plots],
    }
    config = job_config(cfg) if config is None else config
    summary["config_sha256"] = config_digest(config)
    write_manifest(folder, config, summary)  # last: a folder without it is incomplete
    return summary


class Stopwatch:
    """Time spent producing the items of an iterable (the simulation, apart from writing)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def timed(self, items: Iterable[T]) -> Iterator[T]:
        it = iter(items)
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - t0
            yield item


def job_config(cfg: Any) -> dict[str, Any]:
    """The resolved config of a job, without Hydra's own settings."""
    if not OmegaConf.is_config(cfg):
        return dict(cfg)
    out: dict[str, Any] = {}
    for key in cfg:
        if key != "hydra":
            value = cfg[key]
            out[str(key)] = (OmegaConf.to_container(value, resolve=True)
                             if OmegaConf.is_config(value) else value)
    return out


RESULT_FILES = ("timeseries.parquet", "timeseries.parquet.partial", "kpis.csv", "kpis.csv.partial",
                PROGRESS, FAILED)


def hydra_choices() -> dict[str, str]:
    """The config-group choices of the running Hydra job, e.g. {"package": "stockpiles"}."""
    return {str(k): str(v) for k, v in HydraConfig.get().runtime.choices.items()}


def run_sweep_job(cfg: Any, folder: Path, overrides: list[str],
                  choices: dict[str, str] | None = None) -> str:
    """One job of a sweep: skip it if complete, else run it; a failure is recorded, not raised.

    Returns the job's status: "skipped", "complete" or "failed".
    """
    settle_gc()  # once per process (a launcher's worker runs many jobs)
    config = job_config(cfg)
    digest = config_digest(config)
    status = job_status(folder, digest, config)
    if status == "complete":
        log.info("critmin: job %s is complete, skipped", folder.name)
        return "skipped"
    if status == "stale":  # `critmin sweep` refuses this before launching; a direct --multirun gets here
        error = (f"{folder} holds this job run with a different config; critmin never overwrites "
                 "results: sweep into a new folder")
        write_atomic(folder / FAILED, json.dumps({"error": error, "overrides": overrides}, indent=2))
        log.error("critmin: %s", error)
        return "failed"
    try:
        for name in RESULT_FILES:  # left by an interrupted or failed attempt (no manifest: incomplete)
            (folder / name).unlink(missing_ok=True)
        for png in folder.glob("*.png"):
            png.unlink()
        report = ProgressFile(folder, int(cfg.run.replications))
        run_job(cfg, folder, overrides, report=report, config=config, choices=choices,
                in_sweep=True)
        report(float(cfg.run.replications), force=True)
        return "complete"
    except Exception as e:  # noqa: BLE001 - recorded for the user, the other jobs go on
        from .config.build import ConfigError

        error = str(e) if isinstance(e, ConfigError) else f"{type(e).__name__}: {e}"
        write_atomic(folder / FAILED, json.dumps({
            "error": error, "overrides": overrides, "traceback": traceback.format_exc(),
        }, indent=2))
        log.error("critmin: job %s failed: %s", folder.name, error)
        return "failed"


def _print_summary(folder: Path, summary: dict[str, Any], price_cap: float) -> None:
    """The run's headline numbers; a peak price at `price_cap` (world.market_rule.
    price_max_multiple) says so, as the cap, not the market, set it."""
    import pandas as pd

    k = pd.read_csv(folder / "kpis.csv")
    # by product: a median over the rows of several products (low- and high-purity gallium)
    # matched none of them
    shortfall = k[(k.kpi == "shortfall_share")].groupby(["product", "region"], sort=False
                                                          ).value.median()
    prices = k[k.kpi == "price_peak_multiple"].groupby(["region", "product"]).value.median()
    print(f"critmin: wrote {folder}  ({summary['replications']} replications, "
          f"{summary['runtime_seconds']:.1f} s)")
    for product in dict.fromkeys(shortfall.index.get_level_values(0)):
        print(f"  median shortfall share of {product} by region: "
              + ", ".join(f"{r} {v:.1%}" for r, v in shortfall[product].items()))
    ex_china = {p: v for (m, p), v in prices.items() if m == "ex_china"}
    at_cap = {p for p, v in ex_china.items() if v >= price_cap * (1 - 1e-9)}
    print("  median peak price multiple (ex-China): " + ", ".join(
        f"{p} {v:.2f}x" + (" (the cap)" if p in at_cap else "") for p, v in ex_china.items()))
    if at_cap:
        print(f"  (the cap: world.market_rule.price_max_multiple={price_cap:g}; the model's "
              "prices stop there, and what is still scarce shows as shortfall)")


register_all()


@hydra.main(config_path=str(config_dir()), config_name="config", version_base="1.3")
def hydra_run(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    folder = Path(hc.runtime.output_dir)
    if hc.mode == RunMode.MULTIRUN:
        run_sweep_job(cfg, folder, list(hc.overrides.task), hydra_choices())
        return
    summary = run_job(cfg, folder, list(hc.overrides.task), choices=hydra_choices())
    _print_summary(folder, summary, float(cfg.world.market_rule.price_max_multiple))
