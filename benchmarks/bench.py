"""critmin's benchmark: critmin and the two reference designs, timed in one process run.

    python benchmarks/bench.py                  # the full benchmark (~12 minutes on 2 cores)
    python benchmarks/bench.py --smoke          # CI guard: fails only on a gross regression

What it measures (one core, the least of interleaved rounds; ratios are what count, since
machines are shared and noisy):
  (a) one replication of the baseline world, 20 years, default (weekly) tick, alone;
      and per replication in a default run (run.replications=20 in batches of run.batch_size=20)
  (b) the same with the full_package scenario (levers on, China's 2025 licensing and stop)
  (c) a 200-replication batch (per replication)
  (d) peak memory of (c) (tracemalloc: Python and numpy allocations)
  (e) SimPy events processed, for (a) and (c)
  uncertain replications (uncertainty=baseline): batched and one at a time
  the two reference designs of ../shared/bench (straightforward SimPy; vectorised numpy)
  scaling: horizon 5-40 years and regions 5-40, in batches and alone (benchmarks/scaling.png)
  sweep overhead per job: sweeps of 4 and 12 jobs of 20 replications through `critmin sweep`,
      over values and over config groups, writing all series or only compare's
It writes benchmarks/results.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from omegaconf import OmegaConf  # noqa: E402
from worlds import scaled_world  # noqa: E402

from critmin.config.model import build_model  # noqa: E402
from critmin.config.schema import RunConfig  # noqa: E402
from critmin.core.engine import Simulation  # noqa: E402

# what `critmin run` does by default: replications, in batches of (config/schema.py)
REPLICATIONS, BATCH = RunConfig.replications, RunConfig.batch_size


def one_core() -> None:
    """Pin numpy's BLAS to one thread (set before numpy is imported by the references)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def composed(overrides: list[str]) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from critmin.config.paths import config_dir, register_all

    register_all()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    GlobalHydra.instance().clear()
    return OmegaConf.to_container(cfg, resolve=True)


def model(overrides: list[str], n_regions: int | None = None):
    c = composed(overrides)
    if n_regions is not None:
        c["world"] = scaled_world(c["world"], n_regions)
    return build_model(OmegaConf.create(c))


def time_batches(m, reps: int, batch: int, repeats: int) -> tuple[float, int]:
    """Median seconds per replication of `reps` replications in batches of `batch`; events."""
    spec, world, levers = m
    times, events = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        events = 0
        for start in range(0, reps, batch):
            res = Simulation(world, spec.calendar, list(range(start, min(start + batch, reps))),
                             spec.seed, levers=levers).run()
            events += res.n_events
        times.append((time.perf_counter() - t0) / reps)
    return statistics.median(times), events


def peak_memory(m, reps: int) -> float:
    spec, world, levers = m
    tracemalloc.start()
    Simulation(world, spec.calendar, list(range(reps)), spec.seed, levers=levers).run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def uncertain_runs(reps: int = 20) -> list[dict[str, Any]]:
    """Per replication, replications with their own worlds (`uncertainty=baseline`), building
    each world included: in default batches (what `critmin run` does) and one at a time."""
    import dataclasses

    from critmin.config.uncertain import draw, parse_uncertain
    from critmin.runner import simulate_uncertain

    out = []
    for name, extra in (("baseline", []), ("full_package", ["scenario=full_package"])):
        cfg = OmegaConf.create(composed(["run.horizon_years=20", "uncertainty=baseline", *extra]))
        spec, _, _ = build_model(cfg)
        params = parse_uncertain(cfg)
        values = draw(params, reps, spec.seed)
        row: dict[str, Any] = {"case": name, "parameters": len(params)}
        for how, batch in (("batched", BATCH), ("alone", 1)):
            s = dataclasses.replace(spec, replications=reps, batch_size=batch)
            t0 = time.perf_counter()
            n = sum(1 for _ in simulate_uncertain(cfg, s, params, values))
            row[f"{how}_per_rep_s"] = (time.perf_counter() - t0) / reps
            row[f"{how}_simulations"] = n
        row["batch_size"] = BATCH
        out.append(row)
    return out


def reference_runs(ref_dir: Path, years: int = 20) -> dict[str, Any]:
    """One replication of each reference design, as a function of the replication number
    (its noise drawn before the clock starts, as run_reference.py does), after a warm-up."""
    if not (ref_dir / "model_simpy.py").exists():
        sys.exit(f"bench: error: no reference designs in {ref_dir} (model_simpy.py); pass --ref-dir "
                 "with the folder of ../shared/bench")
    sys.path.insert(0, str(ref_dir))
    from model_numpy import run_numpy
    from model_params import make_noise, make_params
    from model_simpy import SimpyModel

    P = make_params(years=years)

    def timed(run: Any) -> Any:
        def one(r: int) -> float:
            eps = make_noise(P, r)
            t0 = time.perf_counter()
            run(eps)
            return time.perf_counter() - t0
        one(999)  # warm-up, as run_reference.py
        return one

    return {"simpy_per_rep_s": timed(lambda eps: SimpyModel(P, eps).run()),
            "numpy_per_rep_s": timed(lambda eps: run_numpy(P, eps))}


def references(ref_dir: Path, simpy_reps: int, numpy_reps: int, years: int = 20) -> dict[str, float]:
    runs = reference_runs(ref_dir, years)
    return {"simpy_per_rep_s": statistics.median(runs["simpy_per_rep_s"](r)
                                                 for r in range(simpy_reps)),
            "numpy_per_rep_s": statistics.median(runs["numpy_per_rep_s"](r)
                                                 for r in range(numpy_reps))}


def per_replication(base: Any, full: Any, ref_dir: Path, rounds: int) -> dict[str, Any]:
    """Seconds per replication of critmin's cases (a)-(c) and of the two references, each the
    least of `rounds` interleaved rounds that time every case once. Ratios are taken between
    cases timed minutes apart; the machine's speed drifts over minutes (one run measured the
    numpy reference at 0.053 s while critmin's first cases ran ~1.5x slower than in the run
    before), and rounds spread a slow spell over all cases; other load only adds time."""
    refs = reference_runs(ref_dir)
    cases: dict[str, Any] = {  # name -> f(round) -> (seconds per replication, SimPy events)
        "a_baseline_one_rep_s": lambda i: time_batches(base, 1, 1, 1),
        "a_baseline_per_rep_default_batch_s": lambda i: time_batches(base, REPLICATIONS, BATCH, 1),
        "b_full_package_one_rep_s": lambda i: time_batches(full, 1, 1, 1),
        "b_full_package_per_rep_default_batch_s":
            lambda i: time_batches(full, REPLICATIONS, BATCH, 1),
        "c_batch200_per_rep_s": lambda i: time_batches(base, 200, 200, 1),
        **{name: (lambda i, run=run: (run(i), 0)) for name, run in refs.items()},
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    events: dict[str, int] = {}
    for i in range(rounds):
        for k, case in cases.items():
            t, events[k] = case(i)
            times[k].append(t)
    out: dict[str, Any] = {k: min(ts) for k, ts in times.items()}
    out["rounds_s"] = times
    out["e_events_one_rep"] = events["a_baseline_one_rep_s"]
    out["e_events_batch200"] = events["c_batch200_per_rep_s"]
    return out


def sweep_cost(axes: list[str], jobs: list[list[str]], common: list[str]) -> dict[str, Any]:
    """One `critmin sweep` (one local worker): its wall time; from its jobs' manifests, the
    time they spent simulating (`simulation_seconds`, measured inside the sweep: the same
    process and conditions as the overhead it is compared with); the overhead between
    consecutive jobs; and the time to aggregate its KPIs."""
    from critmin.aggregate import aggregate

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "critmin.cli", "sweep", *axes, *common,
             "--jobs", "1", "--dir", str(Path(tmp) / "s"), "--no-progress"],
            capture_output=True, text=True, env={**os.environ, "CRITMIN_HOME": str(ROOT)})
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            sys.exit(f"bench: error: the sweep failed: {done.stderr.strip()[-500:]}")
        paths = sorted((Path(tmp) / "s" / "jobs").glob("*/manifest.json"),
                       key=lambda m: m.stat().st_mtime_ns)
        ends = [m.stat().st_mtime_ns / 1e9 for m in paths]
        manifests = [json.loads(m.read_text()) for m in paths]
        t1 = time.perf_counter()
        aggregate(Path(tmp) / "s")
        aggregation = time.perf_counter() - t1
    if len(manifests) != len(jobs):
        sys.exit(f"bench: error: the sweep completed {len(manifests)} of {len(jobs)} jobs")
    sims = [m["simulation_seconds"] for m in manifests]
    # one worker runs the jobs one after another: from one job's manifest (written last) to
    # the next one's is everything a job costs (Hydra composing and launching it, building,
    # simulating, writing), and nothing paid once per sweep
    between = [b - a - sim for a, b, sim in zip(ends, ends[1:], sims[1:], strict=False)]
    return {"jobs": len(jobs), "wall_s": wall, "simulation_s": sum(sims),
            "job_runtime_s": sum(m["runtime_seconds"] for m in manifests),
            "overhead_between_jobs_s": statistics.median(between),
            "aggregation_s": aggregation}


def planning_cost(sweeps: list[list[str]], common: list[str], repeats: int = 3) -> list[float]:
    """Seconds `critmin sweep --dry-run` takes to plan and check each sweep, all in one
    process (starting Python is not in the differences): after one unmeasured round (imports,
    first reads), `repeats` rounds that plan every sweep once; the least of each."""
    code = (
        "import contextlib, io, json, sys, tempfile, time\n"
        "from critmin import cli\n"
        "sweeps, common, repeats = json.loads(sys.argv[1])\n"
        "runs = [[] for _ in sweeps]\n"
        "for round_ in range(repeats + 1):\n"
        "    for i, axes in enumerate(sweeps):\n"
        "        with tempfile.TemporaryDirectory() as d, contextlib.redirect_stdout(io.StringIO()):\n"
        "            t0 = time.perf_counter()\n"
        "            assert cli.main(['sweep', *axes, *common, '--dry-run', '--dir', d + '/s']) == 0\n"
        "            if round_:\n"
        "                runs[i].append(time.perf_counter() - t0)\n"
        "print(json.dumps([min(r) for r in runs]))\n")
    done = subprocess.run([sys.executable, "-c", code, json.dumps([sweeps, common, repeats])],
                          capture_output=True, text=True,
                          env={**os.environ, "CRITMIN_HOME": str(ROOT)})
    if done.returncode != 0:
        sys.exit(f"bench: error: planning the sweeps failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


REPS, YEARS = 20, 20
SEEDS = [str(i) for i in range(1, 13)]
PACKAGES = ["none", "stockpiles", "build_out", "full"]
CHINA = ["none", "licensing_2025", "ban_12m"]
SWEEPS = {  # kind -> (small sweep, large sweep): (axes, jobs)
    "values (run.seed)": (
        (["run.seed=" + ",".join(SEEDS[:4])], [[f"run.seed={v}"] for v in SEEDS[:4]]),
        (["run.seed=" + ",".join(SEEDS)], [[f"run.seed={v}"] for v in SEEDS])),
    "config groups (package x export control)": (
        (["package=" + ",".join(PACKAGES)], [[f"package={p}"] for p in PACKAGES]),
        (["package=" + ",".join(PACKAGES), "levers/export_control=" + ",".join(CHINA)],
         [[f"package={p}", f"levers/export_control={c}"] for p in PACKAGES for c in CHINA])),
}


def sweep_overhead(kind: str, timeseries: str, repeats: int = 3) -> dict[str, Any]:
    """A sweep's overhead per job, for jobs of 20 replications x 20 years.

    Per job it is the sum of what a sweep pays for each job, each part measured where it
    is paid, so that the noise of starting processes (~0.5 s from run to run here) is not
    in it:
    - between jobs: the median over consecutive jobs of the time from one job's manifest
      to the next one's, less the next job's simulation (Hydra composing and launching the
      job, building its model, writing its files), in a sweep of 12 jobs on one worker;
    - planning: the checks before launching (every axis value composed and built), the
      slope of `critmin sweep --dry-run`'s time between the sweeps of 4 and 12 jobs;
    - aggregating: the sweep summary at the end, per job.
    As a check, the slope of the whole sweep's overhead (wall time less the jobs'
    simulation) between the sweeps of 4 and 12 jobs, which holds the same costs and the
    noise of starting processes. What is paid once per sweep is the rest of the overhead.
    Each sweep runs `repeats` times; the large sweep's run with the least share counts
    (between jobs and aggregating over its own jobs' simulation: the machine's speed
    drifts over minutes, and its other load only ever adds time), and for the slope the
    runs with the least overhead. Shares are of a job's simulation.
    """
    # (a sweep's jobs draw no plots by default: run.plots is null)
    common = [f"run.replications={REPS}", f"run.horizon_years={YEARS}",
              f"run.timeseries={timeseries}"]
    (sa, sj), (la, lj) = SWEEPS[kind]

    def overhead(c: dict[str, Any]) -> float:
        return c["wall_s"] - c["simulation_s"]

    small_runs = [sweep_cost(sa, sj, common) for _ in range(repeats)]
    large_runs = [sweep_cost(la, lj, common) for _ in range(repeats)]
    n_s, n_l = len(sj), len(lj)
    # the large sweep's run whose jobs cost least beyond their simulation, as a share of it
    # (the machine's speed drifts over minutes: both parts of a share come from one run)
    large = min(large_runs, key=lambda c: (c["overhead_between_jobs_s"] + c["aggregation_s"] / n_l)
                / (c["simulation_s"] / n_l))
    plan_s, plan_l = planning_cost([sa, la], common)
    between = large["overhead_between_jobs_s"]
    planning = (plan_l - plan_s) / (n_l - n_s)
    aggregating = large["aggregation_s"] / n_l
    per_job = between + planning + aggregating
    small = min(small_runs, key=overhead)
    over_s, over_l = overhead(small), min(overhead(c) for c in large_runs)
    sim_per_job = large["simulation_s"] / n_l
    return {"kind": kind, "timeseries": timeseries, "replications": REPS, "years": YEARS,
            "small": small, "large": large, "simulation_per_job_s": sim_per_job,
            "overhead_per_job_s": per_job, "overhead_per_job_share": per_job / sim_per_job,
            "parts_per_job_s": {"between_jobs": between, "planning": planning,
                                "aggregating": aggregating},
            "slope_per_job_s": (over_l - over_s) / (n_l - n_s),
            "fixed_overhead_per_sweep_s": over_l - n_l * per_job,
            "in_job_overhead_share": (large["job_runtime_s"] - large["simulation_s"])
            / large["simulation_s"]}


def aggregation_memory(job_counts: list[int]) -> list[dict[str, float]]:
    """Time and peak memory (tracemalloc) of `critmin aggregate` over N copies of one
    20-replication job: memory is flat in N if the summary streams job by job from disk.
    Time is measured in a run of its own (tracemalloc slows Python several times)."""
    from critmin.aggregate import aggregate

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "one"
        done = subprocess.run(
            [sys.executable, "-m", "critmin.cli", "sweep", "run.replications=20",
             "--dir", str(src), "--no-progress"],
            capture_output=True, text=True, env={**os.environ, "CRITMIN_HOME": str(ROOT)})
        if done.returncode != 0:
            sys.exit(f"bench: error: the sweep failed: {done.stderr.strip()[-500:]}")
        (job,) = (src / "jobs").iterdir()
        for n in job_counts:
            sweep = Path(tmp) / f"n{n}"
            for i in range(n):  # the KPI table and the manifest are all aggregate reads
                dst = sweep / "jobs" / f"job{i:04d}"
                dst.mkdir(parents=True)
                for name in ("kpis.csv", "manifest.json"):
                    os.link(job / name, dst / name)
            t0 = time.perf_counter()
            _, rows, _ = aggregate(sweep)
            wall = time.perf_counter() - t0
            tracemalloc.start()
            aggregate(sweep)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            # the whole process's peak resident memory (arrow's buffers too), in a process
            # of its own: flat in N as well if nothing grows with the jobs. VmHWM, not
            # getrusage's ru_maxrss, which a child inherits from this large process
            rss = subprocess.run(
                [sys.executable, "-c", "import re, sys; from critmin.aggregate import "
                 "aggregate; aggregate(sys.argv[1]); print(re.search(r'VmHWM:\\s+(\\d+)', "
                 "open('/proc/self/status').read()).group(1))", str(sweep)],
                capture_output=True, text=True, check=True)
            out.append({"jobs": n, "rows": rows, "peak_mib": peak / 2**20,
                        "peak_rss_mib": int(rss.stdout.split()[-1]) / 1024, "seconds": wall})
    return out


def scaling(horizons: list[int], regions: list[int], reps: int, repeats: int = 3,
            alone_reps: int = 3) -> dict[str, list[dict]]:
    """Per replication (a batch of `reps`) for each horizon and number of regions, and for each
    number of regions also one replication alone (the mean of replications 0 to `alone_reps` - 1,
    each run alone): the least
    of `repeats` rounds, each timing every case once (the machine's speed drifts over
    minutes; rounds spread a slow spell over all cases, and other load only adds time)."""
    cases = [("horizon", {"years": y}, model([f"run.horizon_years={y}"]), reps)
             for y in horizons]
    for n in regions:
        m = model(["run.horizon_years=20"], n_regions=n)
        # trading routes (product, buyer, origin) with a sourcing share: every region trades with
        # every producer through the world market (openness), so they grow like regions squared
        info = {"regions": n, "routes": int((m[1].base_sourcing > 0).sum())}
        cases += [("regions", info, m, reps), ("regions_alone", info, m, 1)]
    times: list[list[float]] = [[] for _ in cases]
    for _ in range(repeats):
        for i, (_, _, m, batch) in enumerate(cases):
            times[i].append(time_batches(m, batch if batch > 1 else alone_reps, batch, 1)[0])
    out: dict[str, list[dict]] = {"horizon": [], "regions": [], "regions_alone": []}
    for (kind, info, _, _), ts in zip(cases, times, strict=True):
        out[kind].append({**info, "per_rep_s": min(ts), "rounds_s": ts})
    return out


def plot_scaling(sc: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4), layout="constrained")
    for ax, key, xkey, label in ((axes[0], "horizon", "years", "horizon, years (9 regions)"),
                                 (axes[1], "regions", "regions", "regions (20 years)"),
                                 (axes[2], "regions", "routes",
                                  "trading routes (product x buyer x origin), same runs")):
        curves = [(key, f"critmin, batch of {BATCH}", "C0")]
        if key == "regions":
            curves.append(("regions_alone", "critmin, one replication alone", "C1"))
        top = 0.0
        for k, name, colour in curves:
            xs = [p[xkey] for p in sc[k]]
            ys = [p["per_rep_s"] * 1000 for p in sc[k]]
            top = max(top, *ys)
            ax.plot(xs, ys, "o-", color=colour, label=name)
            ax.plot(xs, [ys[0] * x / xs[0] for x in xs], "--", color=colour, alpha=0.5,
                    label="linear from its first point")
        ax.set_ylim(0, 1.4 * top)  # (a linear line from a high first point may leave the plot)
        ax.set_xlabel(label)
        ax.set_ylabel("ms per replication")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=8)
    fig.suptitle("critmin: time per replication vs horizon, number of regions and of routes")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def smoke(ref_dir: Path, limit: float) -> int:
    """Fail only if critmin per replication is > `limit` x the SimPy reference's (same run)."""
    crit, _ = time_batches(model(["run.horizon_years=20"]), BATCH, BATCH, 1)
    ref = references(ref_dir, simpy_reps=1, numpy_reps=1)
    ratio = crit / ref["simpy_per_rep_s"]
    ok = ratio <= limit
    print(f"bench smoke: critmin {crit * 1000:.0f} ms per replication (batch of {BATCH}), SimPy "
          f"reference "
          f"{ref['simpy_per_rep_s'] * 1000:.0f} ms: ratio {ratio:.3f} (fails above {limit:g}): "
          + ("ok" if ok else "GROSS REGRESSION"))
    return 0 if ok else 1


def main() -> int:
    one_core()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref-dir", type=Path, default=ROOT.parent / "shared" / "bench",
                    help="folder of the reference designs (default ../shared/bench)")
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    ap.add_argument("--rounds", type=int, default=5,
                    help="interleaved rounds of the per-replication timings (the least counts)")
    ap.add_argument("--smoke", action="store_true", help="the CI guard only")
    ap.add_argument("--smoke-limit", type=float, default=3.0,
                    help="smoke fails if critmin per replication > this x the SimPy reference")
    a = ap.parse_args()
    if a.smoke:
        return smoke(a.ref_dir, a.smoke_limit)
    r: dict[str, Any] = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                     "platform": platform.platform()},
                         "written_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    base = model(["run.horizon_years=20"])
    full = model(["run.horizon_years=20", "scenario=full_package"])
    steps = base[0].calendar.n_ticks if hasattr(base[0].calendar, "n_ticks") else None
    pr = per_replication(base, full, a.ref_dir, a.rounds)
    r["default_batch_size"] = BATCH
    r.update({k: v for k, v in pr.items() if k.startswith(("a_", "b_", "c_", "e_"))})
    r["reference"] = {k: pr[k] for k in ("simpy_per_rep_s", "numpy_per_rep_s")}
    r["per_replication_rounds_s"] = pr["rounds_s"]
    r["d_peak_memory_batch200_mib"] = peak_memory(base, 200)
    r["uncertain"] = uncertain_runs()
    r["ticks"] = steps
    simpy, numpy_ = r["reference"]["simpy_per_rep_s"], r["reference"]["numpy_per_rep_s"]
    r["ratios"] = {k: {"vs_simpy": r[k] / simpy, "vs_numpy": r[k] / numpy_} for k in (
        "a_baseline_one_rep_s", "a_baseline_per_rep_default_batch_s", "b_full_package_one_rep_s",
        "b_full_package_per_rep_default_batch_s", "c_batch200_per_rep_s")}
    r["sweep_overhead"] = [sweep_overhead(kind, ts) for kind in SWEEPS for ts in ("all", "compare")]
    r["aggregation_memory"] = aggregation_memory([50, 1000])
    sc = scaling([5, 10, 20, 40], [5, 9, 20, 40], BATCH, repeats=5)
    r["scaling"] = sc
    h, g = sc["horizon"], sc["regions"]
    r["scaling_growth"] = {
        "horizon_x8_time_x": h[-1]["per_rep_s"] / h[0]["per_rep_s"],
        "regions_x8_time_x": g[-1]["per_rep_s"] / g[0]["per_rep_s"],
        "regions_x8_routes_x": g[-1]["routes"] / g[0]["routes"],
        "regions_x8_time_x_alone": sc["regions_alone"][-1]["per_rep_s"]
        / sc["regions_alone"][0]["per_rep_s"]}
    plot_scaling(sc, HERE / "scaling.png")
    a.out.write_text(json.dumps(r, indent=2))
    print_table(r)
    print(f"\nwrote {a.out} and {HERE / 'scaling.png'}")
    return 0


def print_table(r: dict[str, Any]) -> None:
    ref = r["reference"]
    print(f"\nreference designs (per replication, 20 years): SimPy {ref['simpy_per_rep_s']:.3f} s, "
          f"numpy {ref['numpy_per_rep_s']:.3f} s")
    print(f"{'critmin, 20 years':48s} {'s/rep':>8s} {'vs SimPy':>9s} {'vs numpy':>9s}")
    names = {"a_baseline_one_rep_s": "(a) baseline, one replication alone",
             "a_baseline_per_rep_default_batch_s": f"(a) baseline, per rep, default batch ({BATCH})",
             "b_full_package_one_rep_s": "(b) full_package, one replication alone",
             "b_full_package_per_rep_default_batch_s": f"(b) full_package, per rep, batch of {BATCH}",
             "c_batch200_per_rep_s": "(c) baseline, per rep, batch of 200"}
    for k, label in names.items():
        q = r["ratios"][k]
        print(f"{label:48s} {r[k]:8.3f} {q['vs_simpy']:9.3f} {q['vs_numpy']:9.2f}")
    print(f"(d) peak memory, batch of 200: {r['d_peak_memory_batch200_mib']:.0f} MiB; "
          f"(e) SimPy events: {r['e_events_one_rep']} (one rep), {r['e_events_batch200']} (200 reps)")
    print("sweep overhead per job (20 reps x 20 years, one worker; between jobs + planning + "
          "aggregating; the whole sweep's slope between 4 and 12 jobs as a check):")
    for so in r["sweep_overhead"]:
        p = so["parts_per_job_s"]
        print(f"  {so['kind']:42s} run.timeseries={so['timeseries']:8s} "
              f"{so['overhead_per_job_s']:.3f} s = {so['overhead_per_job_share']:4.0%} of a job's "
              f"{so['simulation_per_job_s']:.2f} s simulation ({p['between_jobs']:.3f} + "
              f"{p['planning']:.3f} + {p['aggregating']:.3f}; slope {so['slope_per_job_s']:.2f} s); "
              f"fixed per sweep {so['fixed_overhead_per_sweep_s']:.1f} s")
    for u in r["uncertain"]:
        print(f"uncertainty=baseline ({u['parameters']} parameters), {u['case']}: "
              f"{u['batched_per_rep_s']:.3f} s/rep in batches of {u['batch_size']} "
              f"({u['batched_simulations']} simulations), {u['alone_per_rep_s']:.3f} s/rep "
              "one at a time (each world built included)")
    for a in r["aggregation_memory"]:
        print(f"aggregate {a['jobs']} jobs ({a['rows']} rows): {a['seconds']:.1f} s; peak "
              f"{a['peak_mib']:.1f} MiB (tracemalloc), {a['peak_rss_mib']:.0f} MiB resident")
    g = r["scaling_growth"]
    print(f"scaling 5 -> 40: horizon x8 -> time x{g['horizon_x8_time_x']:.1f}; "
          f"regions x8 -> time x{g['regions_x8_time_x']:.1f} in batches of {BATCH}, "
          f"x{g['regions_x8_time_x_alone']:.1f} one replication alone (trading routes "
          f"x{g['regions_x8_routes_x']:.0f})")


if __name__ == "__main__":
    sys.exit(main())
