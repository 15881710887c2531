"""The `critmin` command.

    critmin run [key=value ...]          simulate one configuration (Hydra overrides)
    critmin sweep [key=a,b ...]          many jobs into one resumable sweep folder (sweep.py)
    critmin aggregate SWEEP_DIR          the sweep's KPI summary table (aggregate.py)
    critmin compare SWEEP_DIR [...]      comparison plots, tables, report.html (compare.py)
    critmin --help                       this help

Before a run starts, the config is composed and checked once: any problem
(unknown key, wrong type, value out of range, unknown scenario, a results
folder already used) is reported in one line naming the key, the value and
what is allowed, with exit status 2 and nothing written. `--debug` shows the
Python traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

USAGE = """usage: critmin COMMAND [options] [key=value ...]

commands:
  run        simulate a world with replications; writes tables, plots and a manifest
             into a new folder under results/runs/ (try: critmin run --help)
  sweep      run many jobs (a Hydra multirun) into one folder, in parallel; resumable
  aggregate  rebuild a sweep's summary table (summary.parquet, summary.csv)
  compare    comparison plots, tables and report.html of one or more sweeps
  sensitivity  global sensitivity of a KPI to the uncertain parameters (SALib)
  discover   scenario discovery (PRIM): where a policy fails a goal
  backtest   the model against the 2010-2011 rare-earth crisis (and --calibrate)

options for every command:
  --debug  show a Python traceback on errors
  (critmin --version: the version and the results version of its numbers)

Examples:
  critmin run
  critmin sweep sweep=quickstart && critmin compare results/sweeps/quickstart
  critmin run run.horizon_years=10 run.replications=50 run.seed=7
  critmin run --cfg job
"""

HYDRA_FLAGS = {"--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--resolve",
               "--package", "-p", "--shell-completion", "-sc", "--version", "--config-path",
               "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--multirun", "-m",
               "--experimental-rerun"}


class UserError(Exception):
    """A problem with the user's input; the message is one line."""


def _overrides(args: list[str]) -> list[str]:
    """The key=value overrides in `args` (flags and their values are skipped)."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("--cfg", "-c", "--package", "-p", "--info", "-i", "-cp", "-cn", "-cd",
                 "--config-path", "--config-name", "--config-dir", "-sc", "--shell-completion"):
            skip = a not in ("--info", "-i")
            continue
        if a.startswith("-"):
            continue
        out.append(a)
    return out


class Composer:
    """Composes and checks configs, Hydra initialised once for many compositions.

    Configs that differ only in plain values share one composition from the files
    (config/fastcompose.py): checking a sweep's values costs a copy each, not a composition.
    """

    def __enter__(self) -> Composer:
        from hydra import initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra

        from .config.paths import config_dir, register_all

        register_all()
        GlobalHydra.instance().clear()
        self._init = initialize_config_dir(config_dir=str(config_dir()), version_base="1.3")
        self._init.__enter__()
        from .config.fastcompose import ComposeCache

        self._cache = ComposeCache(GlobalHydra.instance().config_loader())
        self._ranges_checked: set[str] = set()  # uncertain ranges found good (check_ranges)
        return self

    def __exit__(self, *exc: object) -> None:
        from hydra.core.global_hydra import GlobalHydra

        self._init.__exit__(*exc)
        GlobalHydra.instance().clear()

    def __call__(self, overrides: list[str]) -> Any:
        """Compose and build the config (with Hydra's settings); raise UserError in one line."""
        from hydra.types import RunMode

        from .config.build import ConfigError
        from .config.errors import describe
        from .config.model import build_model

        try:
            cfg = self._cache.load("config", overrides, RunMode.RUN)
            build_model(cfg, check_uncertain=True, ranges_checked=self._ranges_checked)
        except ConfigError as e:
            raise UserError(str(e)) from e
        except Exception as e:  # composition errors from Hydra / OmegaConf
            raise UserError(describe(e, overrides)) from e
        return cfg


def compose(overrides: list[str]) -> Any:
    """Compose and build one config (with Hydra's settings); raise UserError in one line."""
    with Composer() as c:
        return c(overrides)


def check_config(overrides: list[str]) -> None:
    """Compose and check a run's config and its folder; raise UserError with a one-line message."""
    from .results import MANIFEST, TIMESERIES

    cfg = compose(overrides)
    folder = Path(str(cfg.hydra.run.dir))
    if (folder / MANIFEST).exists() or (folder / TIMESERIES).exists():
        raise UserError(
            f"hydra.run.dir={str(folder)!r} already holds a run: critmin never overwrites "
            "results; choose a new folder or remove that one"
        )


def _run(args: list[str], debug: bool) -> int:
    unknown = [a for a in args if a.startswith("-") and a.split("=", 1)[0] not in HYDRA_FLAGS]
    if unknown:
        flag = unknown[0].split("=", 1)[0]
        elsewhere = {"--jobs": "critmin sweep", "--dir": "critmin sweep", "--dry-run": "critmin sweep",
                     "--out": "critmin compare, sensitivity or backtest"}
        raise UserError(f"critmin run has no option {flag}"
                        + (f" ({flag} is an option of {elsewhere[flag]})" if flag in elsewhere else "")
                        + ": settings are key=value overrides, e.g. run.replications=50 "
                        "(critmin run --help lists them)")
    if not (set(args) & HYDRA_FLAGS):
        check_config(_overrides(args))
    from . import app

    sys.argv = [sys.argv[0], *args]
    if debug:
        os.environ["HYDRA_FULL_ERROR"] = "1"
    app.hydra_run()
    return 0


def _sweep_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="critmin sweep", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run many jobs (a Hydra multirun) into one sweep folder, in parallel, then "
                    "aggregate their KPIs.\nAxes come from a named sweep file (sweep=NAME, "
                    "configs/sweep/NAME.yaml) and/or overrides with comma-separated values.",
        epilog="""examples:
  critmin sweep sweep=quickstart                      # 4 policy packages x 2 Chinese behaviours
  critmin sweep package=none,full levers/export_control=licensing_2025,ban_12m run.replications=20
  critmin sweep levers/stockpile=none,project_vault levers/export_control=ban_12m --dir results/sweeps/vault
  critmin sweep sweep=quickstart hydra/launcher=ray_cluster    # on a Ray cluster (README)
  critmin sweep sweep=quickstart hydra/launcher=slurm          # on Slurm via submitit (README)
  critmin sweep run.seed=1,2,3 run.timeseries=all   # every series (default in a sweep: what compare draws)

Re-running a sweep into the same folder skips its completed jobs and retries the rest.
All jobs share run.seed: policies are compared under the same random draws.""")
    p.add_argument("overrides", nargs="*", metavar="key=value[,value...]",
                   help="config overrides; a comma-separated list is an axis of the sweep")
    p.add_argument("--dir", help="sweep folder (default: the sweep file's, or "
                                 "results/sweeps/<date-time>); an existing one is resumed")
    p.add_argument("--jobs", type=int, help="parallel local jobs (joblib launcher; default: all cores)")
    p.add_argument("--dry-run", action="store_true", help="list the jobs and their status, run nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _sweep(args: list[str], debug: bool) -> int:
    from .sweep import (
        JOBS,
        SweepError,
        SweepMonitor,
        job_status,
        plan_sweep,
        settle_gc,
        write_job_table,
        write_record,
    )

    settle_gc()

    opts = _sweep_parser().parse_intermixed_args(args)
    bad = [o for o in opts.overrides if "=" not in o and not o.startswith("~")]
    if bad:
        raise UserError(f"{bad[0]!r} is not an override: write key=value or key=a,b,c "
                        "(see critmin sweep --help)")
    if opts.jobs is not None:
        if opts.jobs < 1:
            raise UserError(f"--jobs={opts.jobs} is not allowed: must be >= 1")
        opts.overrides.append(f"hydra.launcher.n_jobs={opts.jobs}")

    def compose_job(overrides: list[str]) -> tuple[Any, int, dict[str, Any]]:
        from omegaconf import OmegaConf

        try:
            cfg = composer(overrides)
        except UserError as e:
            job = " ".join(o for o in overrides if not o.startswith("hydra"))
            raise UserError(f"{e} [job: {job or 'defaults'}]" if job else str(e)) from e
        from .app import job_config

        hydra_info = {
            "params": {str(k): v for k, v in (cfg.hydra.sweeper.get("params") or {}).items()},
            "sweep_dir": str(cfg.hydra.sweep.dir),
            "launcher": str(OmegaConf.select(cfg, "hydra.launcher._target_", default="?")),
        }
        return (lambda: job_config(cfg)), int(cfg.run.replications), hydra_info

    try:
        with Composer() as composer:
            plan = plan_sweep(opts.overrides, opts.dir, compose_job)
    except SweepError as e:
        raise UserError(str(e)) from e
    before = {j.name: job_status(plan.folder / JOBS / j.name, j.digest) for j in plan.jobs}
    todo = [n for n, st in before.items() if st != "complete"]
    axes = " x ".join(f"{k} ({len(v)})" for k, v in plan.axes.items()) or "none"
    print(f"critmin: sweep {plan.folder}: {len(plan.jobs)} jobs, axes {axes}; "
          f"{len(plan.jobs) - len(todo)} complete (skipped), {len(todo)} to run "
          f"with the {plan.launcher}", flush=True)
    if opts.dry_run:
        for j in plan.jobs:
            print(f"  {before[j.name]:10s} {j.name}")
        return 0
    write_record(plan, ["critmin", "sweep", *args])
    from . import app

    launch = [a for a in opts.overrides if not a.startswith("hydra.sweep.dir=")]
    sys.argv = [sys.argv[0], "--multirun", *launch, f"hydra.sweep.dir={plan.folder}"]
    if debug:
        os.environ["HYDRA_FULL_ERROR"] = "1"
    started = time.time()
    try:
        with SweepMonitor(plan, enabled=not opts.no_progress):
            if todo:
                app.hydra_run()
    except SystemExit as e:  # Hydra reports a launcher failure and exits
        if e.code in (0, None):
            raise
        write_job_table(plan, {})
        print(f"critmin: error: the {plan.launcher} stopped the sweep (message above); completed "
              "jobs are kept: fix the cause and run the same command again to resume",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        write_job_table(plan, {})
        print(f"critmin: sweep interrupted; completed jobs are kept. Run the same command to "
              f"resume: {' '.join(['critmin', 'sweep', *args])}", file=sys.stderr)
        return 130
    launched = {n: ("skipped" if st == "complete" else "run") for n, st in before.items()}
    rows = write_job_table(plan, launched)
    failed = [r for r in rows if r["status"] != "complete"]
    print(f"critmin: sweep {plan.folder}: {len(rows) - len(failed)}/{len(rows)} jobs complete "
          f"({len(rows) - len(todo)} skipped), {len(failed)} failed, {time.time() - started:.0f} s")
    for r in failed:
        print(f"  failed: {r['job']}: {r['error'] or r['status']}  "
              f"(details: {plan.folder / JOBS / r['job']})", file=sys.stderr)
    if len(failed) < len(rows):
        from .aggregate import SUMMARY, aggregate

        _, rows, _ = aggregate(plan.folder)
        print(f"  summary: {plan.folder / SUMMARY} ({rows} rows; also summary.csv)")
        print(f"  next: critmin compare {plan.folder}")
    if failed:
        print("critmin: some jobs failed; fix the cause and run the same command again: completed "
              "jobs are skipped, failed ones are retried", file=sys.stderr)
        return 1
    return 0


def _aggregate(args: list[str], debug: bool) -> int:
    from .aggregate import SUMMARY, AggregateError, aggregate

    p = argparse.ArgumentParser(prog="critmin aggregate",
                                description="Rebuild summary.parquet and summary.csv of a sweep from "
                                            "its completed jobs (one row per job, replication, "
                                            "region, product, lever and KPI; one column per axis).")
    p.add_argument("sweep_dir", type=Path, help="the sweep folder, e.g. results/sweeps/quickstart")
    opts = p.parse_args(args)
    try:
        jobs, rows, axes = aggregate(opts.sweep_dir)
    except AggregateError as e:
        raise UserError(str(e)) from e
    print(f"critmin: wrote {opts.sweep_dir / SUMMARY} and summary.csv: {jobs} jobs, "
          f"{rows} rows; axes: {', '.join(axes) or 'none'}")
    return 0


def _compare(args: list[str], debug: bool) -> int:
    from .compare import CompareError, Options, compare

    d = Options()
    p = argparse.ArgumentParser(
        prog="critmin compare", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Comparison plots (PNG + SVG/PDF), a summary table (Markdown, CSV) and a "
                    "self-contained report.html of one or more sweeps, with 5-95 % bands over "
                    "replications. The first swept axis is compared (one colour per value); the "
                    "others make the panels.",
        epilog="""examples:
  critmin compare results/sweeps/quickstart
  critmin compare results/sweeps/quickstart --region EU --product magnet --kpi peak_shortfall_share
  critmin compare results/sweeps/quickstart --reference package=stockpiles --format pdf
  critmin compare results/sweeps/a results/sweeps/b --out results/compare/a_vs_b""")
    p.add_argument("sweep_dirs", type=Path, nargs="+", metavar="SWEEP_DIR")
    p.add_argument("--out", type=Path, help="output folder (default: SWEEP_DIR/compare for one "
                                            "sweep, results/compare/<date-time> for several)")
    p.add_argument("--region", default=d.region, help=f"region for shortfalls and China's share "
                                                      f"(default {d.region})")
    p.add_argument("--product", help="product (default: the world's main end-use product, "
                                     "e.g. magnet for rare earths)")
    p.add_argument("--market", default=d.market, help=f"price market (default {d.market})")
    p.add_argument("--kpi", default=d.kpi, help=f"KPI of the heatmap (default {d.kpi})")
    p.add_argument("--reference", help="baseline as axis=value on the first axis (default: its "
                                       "first value, e.g. package=none)")
    p.add_argument("--heatmap-axes", nargs=2, metavar=("X", "Y"), help="two swept axes (default: "
                                                                       "the first two)")
    p.add_argument("--target-share", type=float, default=d.target_share,
                   help=f"China-share target line (default {d.target_share})")
    p.add_argument("--target-year", type=int, default=d.target_year,
                   help=f"year of that target (default {d.target_year})")
    p.add_argument("--format", choices=["svg", "pdf"], default="svg",
                   help="vector format besides PNG (default svg)")
    o = p.parse_args(args)
    if not 0 <= o.target_share <= 1:
        raise UserError(f"--target-share={o.target_share} is not allowed: must be in [0, 1]")
    opts = Options(region=o.region, product=o.product, kpi=o.kpi, reference=o.reference,
                   heatmap_axes=o.heatmap_axes, market=o.market, target_share=o.target_share,
                   target_year=o.target_year, formats=["png", o.format])
    try:
        out = compare(o.sweep_dirs, o.out, opts)
    except CompareError as e:
        raise UserError(str(e)) from e

    print(f"critmin: wrote {out}: plots (PNG, {o.format.upper()}), summary_table.md/.csv, "
          f"cost_effectiveness.csv, report.html")
    return 0


def _sensitivity(args: list[str], debug: bool) -> int:
    import datetime as dt

    from tqdm import tqdm

    from .config.model import build_model
    from .config.uncertain import parse_uncertain
    from .sensitivity import KpiEvaluator, run_sensitivity, write_outputs

    p = argparse.ArgumentParser(
        prog="critmin sensitivity", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Global sensitivity of one KPI to the uncertain parameters (SALib): Morris "
                    "screening for many parameters, Sobol indices for few. Writes indices.csv, "
                    "samples.csv and a plot with confidence intervals into a new folder under "
                    "results/sensitivity/.",
        epilog="""examples:
  critmin sensitivity                                   # Morris, uncertainty=baseline, US magnet shortfall
  critmin sensitivity --method sobol --n 256 uncertain.outage_rate.high=0.6 ~uncertain.demand_growth
  critmin sensitivity --kpi price_peak_multiple --region ex_china --product ndpr_oxide \\
      levers/export_control=ban_12m run.horizon_years=5

Without an uncertainty=... override, uncertainty=baseline is used (configs/uncertainty/).""")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.add_argument("--method", choices=["morris", "sobol"], default="morris")
    p.add_argument("--n", type=int, help="Morris: trajectories (default 10); Sobol: base sample, "
                                         "a power of 2 (default 64); points = n(P+1) or n(P+2)")
    p.add_argument("--kpi", default="shortfall_share", help="KPI (default shortfall_share)")
    p.add_argument("--region", default="USA", help="region, or market for prices (default USA)")
    p.add_argument("--product", help="product (default: the world's main end-use product)")
    p.add_argument("--replications", type=int, default=2,
                   help="random streams per point, the same for every point (default 2)")
    p.add_argument("--out", type=Path, help="output folder (must be new)")
    p.add_argument("--format", choices=["svg", "pdf"], default="svg")
    p.add_argument("--no-progress", action="store_true")
    o = p.parse_intermixed_args(args)
    n = o.n or (10 if o.method == "morris" else 64)
    # Sobol estimates from fewer than 16 base samples are noise (S1 > ST, indices > 1)
    if n < 2 or (o.method == "sobol" and (n & (n - 1) or n < 16)):
        raise UserError(f"--n={n} is not allowed: " + ("a power of 2 from 16 for Sobol (e.g. 64, "
                        "256)" if o.method == "sobol" else "must be >= 2"))
    if o.replications < 1:
        raise UserError(f"--replications={o.replications} is not allowed: must be >= 1")
    overrides = list(o.overrides)
    if not any(a.split("=", 1)[0] == "uncertainty" for a in overrides):
        overrides.insert(0, "uncertainty=baseline")
    with Composer() as composer:
        cfg = composer(overrides)
    params = parse_uncertain(cfg)
    if len(params) < 2:
        raise UserError(f"{len(params)} uncertain parameter(s) declared: a sensitivity analysis "
                        "needs 2 or more (uncertainty=baseline, or a file of your own in "
                        "configs/uncertainty/; docs/uncertainty.md)")
    spec, _, _ = build_model(cfg)
    if o.product is None:
        from omegaconf import OmegaConf

        from .compare import main_product

        o.product = main_product(OmegaConf.to_container(cfg.world, resolve=True))
    evaluate = KpiEvaluator(cfg, params, o.kpi, o.region, o.product, o.replications)

    points = n * (len(params) + (1 if o.method == "morris" else 2))
    bar = tqdm(total=points, unit="pt", desc=f"sensitivity {o.method}", disable=o.no_progress,
               file=sys.stderr)
    try:
        ix = run_sensitivity(params, evaluate, o.method, n, spec.seed,
                             on_point=lambda i, _: bar.update(1))
    except ValueError as e:
        raise UserError(str(e)) from e
    finally:
        bar.close()
    out = o.out or Path("results") / "sensitivity" / (
        f"{dt.datetime.now():%Y-%m-%d_%H-%M-%S}_{o.method}_{o.kpi}_{o.region}_{o.product}")
    if out.exists():
        raise UserError(f"--out={str(out)!r} already exists: critmin never overwrites results")
    title = (f"{o.method.capitalize()} sensitivity of {o.kpi} ({o.region}, {o.product})\n"
             f"{len(ix.samples)} points x {o.replications} replications, world {cfg.world.name}")
    write_outputs(out, ix, params, {
        "method": o.method, "n": n, "points": len(ix.samples), "replications_per_point": o.replications,
        "kpi": o.kpi, "region": o.region, "product": o.product, "seed": spec.seed,
        "overrides": overrides, "world": str(cfg.world.name)}, title, ["png", o.format])
    key = "mu_star" if o.method == "morris" else "ST"
    top = ix.table.sort_values(key, ascending=False).head(5)
    print(f"critmin: wrote {out} ({len(ix.samples)} points); largest {key}: "
          + ", ".join(f"{r.parameter} {getattr(r, key):.3g}" for r in top.itertuples()))
    y = ix.samples["output"]
    if y.max() - y.min() <= 1e-12 * max(1.0, abs(y.max())):
        print(f"critmin: warning: {o.kpi} ({o.region}, {o.product}) is {y.iloc[0]:.4g} at every "
              "point, so every index is 0: in this scenario the uncertain parameters do not move "
              "it. Add a shock (e.g. levers/export_control=ban_12m) or choose another --kpi, "
              "--region or --product", file=sys.stderr)
    return 0


def _discover(args: list[str], debug: bool) -> int:
    from .discover import DiscoverError, cases, find_box, parse_goal, write_outputs

    p = argparse.ArgumentParser(
        prog="critmin discover", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Scenario discovery (PRIM, EMA Workbench): the ranges of the uncertain "
                    "parameters (and values of the swept axes) under which a policy fails a goal. "
                    "The sweep's jobs must have run with uncertain parameters.",
        epilog="""examples:
  critmin sweep package=none,full levers/export_control=ban_12m uncertainty=baseline \\
      run.replications=100 --dir results/sweeps/discover
  critmin discover results/sweeps/discover --fails 'shortfall_share>0.05' --where package=full""")
    p.add_argument("sweep_dirs", type=Path, nargs="+", metavar="SWEEP_DIR")
    p.add_argument("--fails", required=True, help="the failure: KPI>VALUE (or >=, <, <=), e.g. "
                                                  "'shortfall_share>0.05'")
    p.add_argument("--region", default="USA", help="region (or market) of the KPI (default USA)")
    p.add_argument("--product", help="product of the KPI (default: the world's main end-use "
                                     "product)")
    p.add_argument("--where", action="append", default=[], metavar="AXIS=VALUE",
                   help="only jobs with this value of a swept axis, e.g. package=full (repeatable)")
    p.add_argument("--min-coverage", type=float, default=0.5,
                   help="the reported box is the densest with at least this coverage (default 0.5)")
    p.add_argument("--out", type=Path, help="output folder (default SWEEP_DIR/discover/<goal>)")
    p.add_argument("--format", choices=["svg", "pdf"], default="svg")
    o = p.parse_intermixed_args(args)
    if not 0 < o.min_coverage <= 1:
        raise UserError(f"--min-coverage={o.min_coverage} is not allowed: must be in (0, 1]")
    where = {}
    for w in o.where:
        if "=" not in w:
            raise UserError(f"--where {w!r} is not AXIS=VALUE (e.g. --where package=full)")
        k, v = w.split("=", 1)
        where[k] = v
    try:
        kpi, op, threshold = parse_goal(o.fails)
        from .discover import OPS

        if o.product is None:
            from .aggregate import completed_jobs
            from .compare import main_product

            jobs = completed_jobs(o.sweep_dirs[0])
            world = json.loads((jobs[0] / "manifest.json").read_text())["config"]["world"] \
                if jobs else {}
            o.product = main_product(world) or "magnet"

        x, value, params = cases(o.sweep_dirs, kpi, o.region, o.product, where)
        y = OPS[op](value.to_numpy(dtype=float), threshold)
        d = find_box(x, y, o.min_coverage)
    except DiscoverError as e:
        raise UserError(str(e)) from e
    slug = re.sub(r"[^A-Za-z0-9_.=-]+", "_", f"{kpi}{op}{threshold:g}_{o.region}_{o.product}"
                  + "".join(f"_{k}={v}" for k, v in where.items()))
    out = o.out or o.sweep_dirs[0] / "discover" / slug
    write_outputs(out, d, {"fails": o.fails, "region": o.region, "product": o.product,
                           "where": where, "sweeps": [str(s) for s in o.sweep_dirs],
                           "min_coverage": o.min_coverage}, ["png", o.format])
    box = d.limits[d.limits.restricted]
    print(f"critmin: wrote {out}: {d.failures} of {d.cases} cases fail ({o.fails}, {o.region} "
          f"{o.product}); box with coverage {d.coverage:.0%}, density {d.density:.0%}:")
    for r in box.itertuples():
        print(f"  {r.dimension}: " + (r.values if r.values else f"{r.low:.4g} .. {r.high:.4g}"))
    if box.empty:
        print("  (no restriction: failures are spread over the whole input space)")
    return 0


def _backtest(args: list[str], debug: bool) -> int:
    import datetime as dt

    from .backtest import (
        BacktestError,
        calibrate,
        compare_to_history,
        load_case,
        metrics,
        overlay_plot,
        simulate_case,
        write_outputs,
    )
    from .config.paths import config_dir

    p = argparse.ArgumentParser(
        prog="critmin backtest", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a historical case (default: the 2010-2011 rare-earth crisis, "
                    "configs/backtest/rare_earths_2010.yaml) with replications and compare the "
                    "model with history: a table (backtest.csv/.md) and an overlay plot, in a new "
                    "folder under results/backtest/. --calibrate fits the case's calibration "
                    "parameters to history first (differential evolution, scipy).",
        epilog="""examples:
  critmin backtest
  critmin backtest run.replications=50 world.market_rule.cover_sensitivity=0.8
  critmin backtest --calibrate --maxiter 8""")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="overrides on top of the case's own (world, scenario, dates)")
    p.add_argument("--case", default="rare_earths_2010", help="configs/backtest/<case>.yaml")
    p.add_argument("--calibrate", action="store_true", help="fit the calibration parameters first")
    p.add_argument("--maxiter", type=int, default=6, help="generations of the fit (default 6)")
    p.add_argument("--out", type=Path, help="output folder (must be new)")
    p.add_argument("--format", choices=["svg", "pdf"], default="svg")
    o = p.parse_intermixed_args(args)
    try:
        case = load_case(config_dir() / "backtest" / f"{o.case}.yaml")
    except BacktestError as e:
        raise UserError(str(e)) from e
    worlds = [a for a in o.overrides if a.split("=", 1)[0] == "world"]
    if worlds:
        cases = sorted(p.stem for p in (config_dir() / "backtest").glob("*.yaml"))
        raise UserError(f"{worlds[0]!r}: a back-test replays one historical case with its own "
                        f"world; the cases are {', '.join(cases)} (--case NAME, "
                        "configs/backtest/); no case exists yet for other minerals")
    with Composer() as composer:
        cfg = composer([*case.overrides, *o.overrides])
    out = o.out or Path("results") / "backtest" / f"{dt.datetime.now():%Y-%m-%d_%H-%M-%S}_{case.name}"
    if out.exists():
        raise UserError(f"--out={str(out)!r} already exists: critmin never overwrites results")
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items()
                            if k != "hydra"})
    fitted: dict[str, float] = {}
    meta: dict[str, Any] = {"case": case.name, "overrides": [*case.overrides, *o.overrides]}
    if o.calibrate:
        if o.maxiter < 1:
            raise UserError(f"--maxiter={o.maxiter} is not allowed: must be >= 1")
        from tqdm import tqdm

        bar = tqdm(desc="calibrating", unit="run", file=sys.stderr)
        fitted, loss, log = calibrate(cfg, case, o.maxiter, int(cfg.run.seed),
                                      on_trial=lambda n, loss: (bar.update(1),
                                                               bar.set_postfix(loss=f"{loss:.3g}")))
        bar.close()
        for k, v in fitted.items():
            OmegaConf.update(cfg, k, v)
        meta.update({"calibrated": fitted, "calibration_loss": loss, "evaluations": len(log)})
        out.mkdir(parents=True)
        log.to_csv(out / "calibration_log.csv", index=False, float_format="%.6g")
    world, results = simulate_case(cfg)
    m = metrics(world, results, case.basket)
    table = compare_to_history(m, case)
    out.mkdir(parents=True, exist_ok=True)
    write_outputs(out, m, table, meta)
    title = (f"Back-test {case.name}: model (median, 5-95 % band, {len(m)} replications) vs history"
             + (" (calibrated)" if fitted else ""))
    overlay_plot(world, results, case, out / "overlay", ["png", o.format], title)
    print(f"critmin: wrote {out}")
    for r in table.itertuples():
        band = "" if r.band_low is None or r.band_low != r.band_low else \
            f" band {r.band_low:g}-{r.band_high:g}: {'ok' if r.median_in_band else 'OUTSIDE'}"
        print(f"  {r.metric}: model {r.model_median:.6g} [{r.model_p05:.6g}, {r.model_p95:.6g}], "
              f"history {r.history}{band}")
    if fitted:
        print("  calibrated: " + ", ".join(f"{k}={v:.4g}" for k, v in fitted.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("CRITMIN_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if args[0] == "--version":
        from . import __version__
        from .core import RESULTS_VERSION

        print(f"critmin {__version__} (results version {RESULTS_VERSION})")
        return 0
    cmd, rest = args[0], args[1:]
    # shell completion installed via `critmin run -sc install=bash` calls `critmin -sc query=...`
    if cmd in ("-sc", "--shell-completion"):
        line = os.environ.get("COMP_LINE", "")
        words = line.split(" ", 2)
        if len(words) >= 2 and words[1] == "run":
            os.environ["COMP_LINE"] = " ".join([words[0], *words[2:]])
        cmd, rest = "run", args
    commands = {"run": _run, "sweep": _sweep, "aggregate": _aggregate, "compare": _compare,
                "sensitivity": _sensitivity, "discover": _discover, "backtest": _backtest}
    if cmd not in commands:
        print(f"critmin: unknown command {cmd!r}; allowed: {', '.join(commands)} "
              "(see critmin --help)", file=sys.stderr)
        return 2
    try:
        return commands[cmd](rest, debug)
    except UserError as e:
        if debug:
            raise
        print(f"critmin: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("critmin: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            raise
        from .aggregate import AggregateError
        from .results import RunFolderError

        if isinstance(e, (RunFolderError, AggregateError)):
            print(f"critmin: error: {e}", file=sys.stderr)
            return 2
        print(f"critmin: internal error: {type(e).__name__}: {e} (rerun with --debug for the "
              "traceback, and please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
