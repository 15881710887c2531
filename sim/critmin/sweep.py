"""Sweeps: many jobs of one study, each its own `critmin run`, in one folder.

    SWEEP_DIR/
      sweep.json            the axes, the fixed overrides and every launch (for re-running the study)
      jobs/<name>/          one folder per job, named by its overrides (stable across re-runs)
        manifest.json       written last: the completion marker
        failed.json         the error of a job that failed (the others go on)
        progress.json       replications done, read by the sweep's progress bar
      jobs.csv              status of every job after the last launch
      summary.parquet/.csv  the KPI table of all completed jobs (`critmin aggregate`)

A job whose folder holds a manifest with the same config digest is skipped, so a
sweep that was interrupted or had failures is resumed by running it again. A
completed job whose config differs (e.g. a changed replication count) is never
overwritten: the sweep stops before launching and says so.

Every job uses the same `run.seed`, and every replication draws from its own
named streams (core/streams.py), so all jobs meet the same random draws
(common random numbers) unless `run.seed` itself is swept.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import json
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core import RESULTS_VERSION
from .results import MANIFEST, write_atomic

JOBS = "jobs"
RECORD = "sweep.json"
FAILED = "failed.json"
PROGRESS = "progress.json"
JOB_TABLE = "jobs.csv"
NAME_EXCLUDED_KEYS = ("sweep",)  # names the sweep file, not a job setting
MAX_NAME = 120


_GC_SETTLED = False


def settle_gc() -> None:
    """Make Python's cyclic garbage collector cheaper for the rest of a sweep process
    (once per process; called before a process's first sweep job, and by `critmin sweep`).

    Composing configs creates many small objects (OmegaConf nodes), and the collector's
    passes over them, and over every module and cache alive since start-up, cost a sweep
    job ~36 ms over config groups and ~16 ms over values (measured with gc.callbacks,
    20 replications x 20 years). `gc.freeze()` leaves what is alive now (modules, Hydra,
    the config caches) out of later passes, and a first-generation threshold of 10,000
    allocations (Python's default is 700) makes passes rarer: ~12 and ~5 ms. Garbage is
    still collected; objects alive now are kept for the life of the process, as they
    would be anyway. The simulation's results do not depend on it (its own time in the
    collector is ~0.1 ms per run).
    """
    global _GC_SETTLED
    if _GC_SETTLED:
        return
    _GC_SETTLED = True
    gc.freeze()
    gc.set_threshold(10_000, *gc.get_threshold()[1:])


def override_key(override: str) -> str:
    key = override.split("=", 1)[0]
    return key.lstrip("+~")


def override_value(override: str) -> str:
    return override.split("=", 1)[1] if "=" in override else ""


def job_name(overrides: Sequence[str]) -> str:
    """A folder name for a job from its overrides: readable, stable, distinct.

    Sorted `key=value` joined by commas, with `/` as `.`; other characters that
    are unsafe in file names become `_`, and then (or when the name is long) a
    short digest of the exact overrides keeps names distinct.
    """
    items = sorted(str(o) for o in overrides if override_key(str(o)) not in NAME_EXCLUDED_KEYS)
    if not items:
        return "default"
    exact = ",".join(items)
    name = ",".join(o.replace("/", ".") for o in items)
    safe = re.sub(r"[^A-Za-z0-9._=,+~@-]", "_", name)
    digest = hashlib.sha1(exact.encode()).hexdigest()[:8]
    if safe != name or len(safe) > MAX_NAME:
        safe = f"{safe[:MAX_NAME - 9]}-{digest}"
    return safe


def config_digest(config: dict[str, Any]) -> str:
    """SHA-256 of the resolved job config (without Hydra's own settings)."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Job:
    name: str
    overrides: tuple[str, ...]
    replications: int
    digest: str | None  # of the config, known for jobs already complete in the folder


@dataclass
class Plan:
    """What one `critmin sweep` will launch."""

    folder: Path
    jobs: list[Job]
    axes: dict[str, list[str]]          # swept key -> values, in the order given
    fixed: list[str]                    # overrides every job shares
    sweep_name: str
    launcher: str


def result_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The first difference (`first_difference`) between a job's recorded config `old` and
    its config now, `new`, that can change its results: "" if none.

    run.plots true in `old` and null in `new` is none: until 2026-12 run.plots was true by
    default, and sweeps' jobs drew plots; now it is null, and they draw none. Plots do not
    change results, so such a job is complete, not stale."""
    if (old.get("run") or {}).get("plots") is True and (new.get("run") or {}).get("plots") is None:
        old = {**old, "run": {**old["run"], "plots": None}}
    return first_difference(old, new)


def job_status(folder: Path, digest: str | None = None,
               config: dict[str, Any] | None = None) -> str:
    """complete | stale (complete, other config) | failed | incomplete | new.

    With `config` (the job's, whose digest is `digest`), a job recorded with a config that
    differs in nothing that changes results (`result_difference`) is complete."""
    if (folder / MANIFEST).exists():
        if digest is None:
            return "complete"
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError):
            return "incomplete"
        if manifest.get("results_version", 1) != RESULTS_VERSION:
            return "stale"  # the same config now gives other numbers
        if manifest.get("config_sha256") == digest:
            return "complete"
        if config is not None and not result_difference(manifest.get("config") or {}, config):
            return "complete"
        return "stale"
    if (folder / FAILED).exists():
        return "failed"
    return "incomplete" if folder.exists() else "new"


def axes_of(job_overrides: list[list[str]]) -> tuple[dict[str, list[str]], list[str]]:
    """Swept keys (more than one value) with their values in order, and the fixed overrides."""
    values: dict[str, list[str]] = {}
    for overrides in job_overrides:
        for o in overrides:
            vals = values.setdefault(override_key(o), [])
            if override_value(o) not in vals:
                vals.append(override_value(o))
    axes = {k: v for k, v in values.items() if len(v) > 1 and k not in NAME_EXCLUDED_KEYS}
    fixed = [f"{k}={v[0]}" for k, v in values.items() if len(v) == 1]
    return axes, fixed


def write_record(plan: Plan, argv: list[str]) -> None:
    """Add this launch to `sweep.json`; axes merge with earlier launches (values appended)."""
    path = plan.folder / RECORD
    record: dict[str, Any] = {"axes": {}, "launches": []}
    if path.exists():
        record = json.loads(path.read_text())
    axes = record.setdefault("axes", {})
    for k, vals in plan.axes.items():
        old = axes.setdefault(k, [])
        old.extend(v for v in vals if v not in old)
    record["sweep"] = plan.sweep_name
    record["fixed"] = plan.fixed
    record.setdefault("launches", []).append({
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "argv": argv,
        "launcher": plan.launcher,
        "jobs": [j.name for j in plan.jobs],
    })
    plan.folder.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=2))


def read_record(folder: Path) -> dict[str, Any]:
    path = folder / RECORD
    return json.loads(path.read_text()) if path.exists() else {"axes": {}, "launches": []}


class ProgressFile:
    """Replications done by one job, written at most twice a second for the sweep's bar."""

    def __init__(self, folder: Path, total: int) -> None:
        self.path, self.total, self.last = folder / PROGRESS, total, 0.0

    def __call__(self, done: float, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last > 0.5:
            self.last = now
            write_atomic(self.path, json.dumps({"done": done, "total": self.total}))


def read_progress(folder: Path, total: int) -> float:
    if (folder / MANIFEST).exists() or (folder / FAILED).exists():
        return float(total)
    try:
        return float(json.loads((folder / PROGRESS).read_text())["done"])
    except (OSError, ValueError, KeyError):
        return 0.0


class SweepMonitor:
    """One progress bar over all jobs and replications, fed from the job folders.

    It reads files, so it works with any launcher whose jobs write to a folder
    this machine sees (local processes, a local Ray cluster, submitit).
    """

    def __init__(self, plan: Plan, enabled: bool = True) -> None:
        from tqdm import tqdm

        self.plan = plan
        self.total = sum(j.replications for j in plan.jobs)
        self.bar = tqdm(total=self.total, unit="rep", desc="sweep", disable=not enabled,
                        bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} reps [{elapsed}<{remaining}]{postfix}")
        self.finished: set[str] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _poll(self) -> None:
        # a finished job stays finished: only unfinished jobs' folders are read again
        done, failed = 0.0, 0
        for job in self.plan.jobs:
            if job.name in self.finished:
                done += job.replications
                continue
            folder = self.plan.folder / JOBS / job.name
            if (folder / MANIFEST).exists():
                self.finished.add(job.name)
                done += job.replications
                continue
            done += read_progress(folder, job.replications)
            failed += (folder / FAILED).exists()
        self.bar.n = done
        self.bar.set_postfix_str(f"jobs {len(self.finished)}/{len(self.plan.jobs)} done"
                                 + (f", {failed} failed" if failed else ""), refresh=False)
        self.bar.refresh()

    def _loop(self) -> None:
        while not self.stop.wait(0.5):
            self._poll()

    def __enter__(self) -> SweepMonitor:
        self._poll()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self._poll()
        self.bar.close()


class SweepError(Exception):
    """A problem with a sweep's input; the message is one line for the user."""


def is_hydra_override(o: str) -> bool:
    return override_key(o).startswith(("hydra.", "hydra/"))


def first_difference(old: Any, new: Any, path: str = "") -> str:
    """The first key whose value differs between two configs, as 'key: old -> new'."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new), key=str):
            if old.get(k, "<absent>") != new.get(k, "<absent>"):
                return first_difference(old.get(k, "<absent>"), new.get(k, "<absent>"),
                                        f"{path}.{k}" if path else str(k))
        return ""
    return f"{path}: {old!r} -> {new!r}"


def plan_sweep(args: list[str], folder: str | None, compose_job: Any) -> Plan:
    """Expand the command line (and a named sweep file) into jobs and check them.

    `compose_job(overrides) -> (job config, replications, Hydra settings)` composes one
    job and raises on bad input; the job config comes as a function that makes it (only
    jobs already in the folder need it); the settings are the sweep file's `params`, the
    `sweep_dir` and the `launcher` target. The expansion is Hydra's own
    (BasicSweeper), so the jobs are exactly those Hydra will launch.

    Checks, before anything runs: the first job, and every other value of every axis
    (with the other axes at their first value), so a bad value fails in one line at a
    cost of one composition per value, not per job. Jobs already complete in the folder
    are composed in full, to refuse any whose config changed (never overwritten).
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    hydra_args = [a for a in args if is_hydra_override(a)]
    task_args = [a for a in args if not is_hydra_override(a)]
    sweep_args = [a for a in task_args if override_key(a) == "sweep"]
    if len(sweep_args) > 1 or any("," in override_value(a) for a in sweep_args):
        raise SweepError(f"{sweep_args[-1]!r}: name one sweep file (configs/sweep/<name>.yaml), "
                         "not several")
    _, _, hydra_cfg = compose_job(sweep_args + hydra_args)
    params = hydra_cfg["params"]
    try:
        parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()]
                                                          + task_args)
        (batch,) = BasicSweeper.split_arguments(parsed, None)
    except HydraException as e:
        raise SweepError(f"cannot read the sweep's overrides: {e}".replace("\n", " ")) from e
    where = Path(folder) if folder else Path(hydra_cfg["sweep_dir"])
    where = where.expanduser().resolve()
    launcher = hydra_cfg["launcher"]
    unique: dict[str, list[str]] = {}
    for overrides in batch:  # the same value twice on an axis gives one job
        unique.setdefault(job_name(overrides), list(overrides))
    axes, fixed = axes_of(list(unique.values()))
    first = next(iter(unique.values()))
    _, base_reps, _ = compose_job(first + hydra_args)
    for key, values in axes.items():
        for value in values[1:]:
            compose_job([o.split("=", 1)[0] + "=" + value if override_key(o) == key else o
                         for o in first] + hydra_args)
    jobs = []
    for name, overrides in unique.items():
        reps = next((int(override_value(o)) for o in overrides
                     if override_key(o) == "run.replications"), base_reps)
        digest = None
        if (where / JOBS / name / MANIFEST).exists():
            config_of, reps, _ = compose_job(overrides + hydra_args)
            config = config_of()
            digest = config_digest(config)
            status = job_status(where / JOBS / name, digest, config)
            if status in ("complete", "stale"):  # (job_status read the manifest: it is valid)
                recorded = json.loads((where / JOBS / name / MANIFEST).read_text())
                # a complete job keeps its recorded digest, if `result_difference` let it differ
                digest = recorded["config_sha256"] if status == "complete" else digest
            if status == "stale":
                version = recorded.get("results_version", 1)
                diff = result_difference(recorded.get("config", {}), config)
                why = (f"by results version {version} of the model, and this critmin gives "
                       f"version {RESULTS_VERSION} (docs/results.md says what changed)"
                       if version != RESULTS_VERSION else
                       f"with a different config ({diff or 'code or defaults changed'})")
                raise SweepError(
                    f"{where / JOBS / name} was completed {why}; critmin never overwrites "
                    "results: sweep into a new folder with --dir, or remove that job folder")
        jobs.append(Job(name, tuple(overrides), reps, digest))
    return Plan(where, jobs, axes, fixed, override_value(sweep_args[0]) if sweep_args else "",
                launcher.rsplit(".", 1)[-1])


def write_job_table(plan: Plan, launched: dict[str, str]) -> list[dict[str, Any]]:
    """`jobs.csv`: one row per job of this launch with its status and, if failed, the error."""
    import pandas as pd

    rows = []
    for job in plan.jobs:
        folder = plan.folder / JOBS / job.name
        status = job_status(folder, job.digest)
        row = {"job": job.name, "status": status, "this_launch": launched.get(job.name, ""),
               "overrides": " ".join(job.overrides), "runtime_seconds": float("nan"), "error": ""}
        if status == "complete":
            row["runtime_seconds"] = json.loads((folder / MANIFEST).read_text()).get(
                "runtime_seconds", float("nan"))
        elif status == "failed":
            row["error"] = json.loads((folder / FAILED).read_text()).get("error", "")
        rows.append(row)
    write_atomic(plan.folder / JOB_TABLE, pd.DataFrame(rows).to_csv(index=False))
    return rows
