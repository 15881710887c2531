"""Sweeps as a user runs them: sweep -> aggregate -> compare, resume, failures, common draws."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from critmin.core import RESULTS_VERSION
from critmin.sweep import axes_of, config_digest, job_name

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["run.replications=3", "run.horizon_years=3", "run.plots=false"]
PLOTS = ["fan_price", "fan_unmet", "heatmap_shortfall_share", "cost_effectiveness", "china_share"]


def critmin(*args, cwd, timeout=600):
    env = {**os.environ, "CRITMIN_HOME": str(ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", "critmin.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def jobs_of(sweep: Path) -> dict[str, Path]:
    return {p.name: p for p in (sweep / "jobs").iterdir()}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A 2 x 2 sweep (two packages, two Chinese behaviours), run once for the module."""
    cwd = tmp_path_factory.mktemp("sweep")
    p = critmin("sweep", "package=none,stockpiles", "levers/export_control=none,ban_12m", *SMALL,
                "--dir", "results/sweeps/s", "--no-progress", cwd=cwd)
    assert p.returncode == 0, p.stderr
    return cwd, cwd / "results" / "sweeps" / "s", p


def test_job_names_are_stable_readable_and_distinct():
    assert job_name(["package=full", "levers/export_control=ban_12m", "sweep=quickstart"]) == \
        "levers.export_control=ban_12m,package=full"
    assert job_name(["b=2", "a=1"]) == job_name(["a=1", "b=2"])
    odd = job_name(["world.x=[1, 2]"])
    assert "/" not in odd and " " not in odd and odd != job_name(["world.x=[1,2]"])
    assert len(job_name([f"k{i}=value{i}" for i in range(40)])) <= 120
    assert job_name([]) == "default"


def test_axes_are_the_keys_with_more_than_one_value():
    axes, fixed = axes_of([["a=1", "b=x", "c=5"], ["a=2", "b=x", "c=5"], ["a=3", "b=x", "c=5"]])
    assert axes == {"a": ["1", "2", "3"]} and fixed == ["b=x", "c=5"]


def test_sweep_writes_one_complete_folder_per_job(swept):
    _, sweep, p = swept
    jobs = jobs_of(sweep)
    assert sorted(jobs) == sorted([
        "levers.export_control=ban_12m,package=none,run.horizon_years=3,run.plots=False,run.replications=3",
        "levers.export_control=ban_12m,package=stockpiles,run.horizon_years=3,run.plots=False,"
        "run.replications=3",
        "levers.export_control=none,package=none,run.horizon_years=3,run.plots=False,run.replications=3",
        "levers.export_control=none,package=stockpiles,run.horizon_years=3,run.plots=False,"
        "run.replications=3"])
    for folder in jobs.values():
        for name in ("manifest.json", "kpis.csv", "timeseries.parquet"):
            assert (folder / name).exists(), (folder.name, name)
        # the config-group choices are in the manifest (no .hydra/ folder per job)
        choices = json.loads((folder / "manifest.json").read_text())["choices"]
        assert choices["package"] in folder.name and choices["world"] == "rare_earths"
        assert not (folder / ".hydra").exists()
    table = pd.read_csv(sweep / "jobs.csv")
    assert list(table.status) == ["complete"] * 4
    record = json.loads((sweep / "sweep.json").read_text())
    assert record["axes"] == {"package": ["none", "stockpiles"],
                              "levers/export_control": ["none", "ban_12m"]}
    assert "4/4 jobs complete" in p.stdout


def test_summary_has_exactly_one_row_per_job_replication_region_product_lever_kpi(swept):
    _, sweep, _ = swept
    s = pd.read_parquet(sweep / "summary.parquet")
    assert list(s.columns) == ["sweep", "job", "package", "levers/export_control", "replication",
                               "region", "product", "lever", "kpi", "value"]
    expected = 0
    for name, folder in jobs_of(sweep).items():
        k = pd.read_csv(folder / "kpis.csv", keep_default_na=False)
        expected += len(k)
        rows = s[s.job == name]
        overrides = dict(o.split("=", 1) for o in
                         json.loads((folder / "manifest.json").read_text())["overrides"])
        assert set(rows.package) == {overrides["package"]}
        assert set(rows["levers/export_control"]) == {overrides["levers/export_control"]}
        assert rows.value.sum() == pytest.approx(pd.to_numeric(k.value, errors="coerce").sum())
    assert len(s) == expected
    key = ["job", "replication", "region", "product", "lever", "kpi"]
    assert not s.duplicated(key).any()
    assert sorted(s.replication.unique()) == [0, 1, 2]
    csv = pd.read_csv(sweep / "summary.csv")
    assert len(csv) == len(s)
    # re-running aggregate rebuilds the same table
    p = critmin("aggregate", str(sweep), cwd=sweep)
    assert p.returncode == 0, p.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(sweep / "summary.parquet"), s)


def test_a_ban_raises_us_shortfall_and_reserves_spend_money(swept):
    _, sweep, _ = swept
    s = pd.read_parquet(sweep / "summary.parquet")
    us = s[(s.kpi == "unmet_demand_t") & (s.region == "USA") & (s["product"] == "magnet")]
    med = us.groupby(["package", "levers/export_control"]).value.median()
    assert med[("none", "ban_12m")] > 5 * med[("none", "none")]
    cost = s[s.kpi == "fiscal_cost_usd"].groupby("package").value.sum()
    assert "none" not in cost.index and cost["stockpiles"] > 0


def test_compare_writes_every_plot_the_tables_and_a_self_contained_report(swept):
    cwd, sweep, _ = swept
    p = critmin("compare", str(sweep), cwd=cwd)
    assert p.returncode == 0, p.stderr
    out = sweep / "compare"
    for stem in PLOTS:
        for ext in ("png", "svg"):
            assert (out / f"{stem}.{ext}").stat().st_size > 1000, f"{stem}.{ext}"
    table = pd.read_csv(out / "summary_table.csv")
    assert {"package", "levers/export_control", "kpi", "median", "p05", "p95", "diff_median"} \
        <= set(table.columns)
    ref = table[table.package == "none"]
    assert (ref.diff_median.dropna() == 0).all() and len(ref) > 0
    assert (table.p05 <= table["median"]).all() and (table["median"] <= table.p95).all()
    md = (out / "summary_table.md").read_text()
    assert "| package | levers/export_control |" in md and "reference" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(PLOTS)
    assert "sweep.json" in html and "<table" in html and "src=\"http" not in html
    ce = pd.read_csv(out / "cost_effectiveness.csv")
    assert set(ce.package) == {"stockpiles"} and len(ce) == 2
    # a cost per kg only where demand is averted in 95 % of the draws
    assert (ce.usd_per_kg_averted_median.isna() | (ce.unmet_averted_t_p05 > 0)).all()
    assert "unmet demand averted, t: median" in html and "unmet_averted_t_p05" not in html
    # a PDF instead of SVG, another region, and a bad option
    p = critmin("compare", str(sweep), "--format", "pdf", "--region", "EU", "--out", "cmp_eu",
                cwd=cwd)
    assert p.returncode == 0, p.stderr
    assert (cwd / "cmp_eu" / "fan_unmet.pdf").exists()
    p = critmin("compare", str(sweep), "--region", "ATLANTIS", cwd=cwd)
    assert p.returncode == 2
    assert "--region='ATLANTIS'" in p.stderr and "USA" in p.stderr and "Traceback" not in p.stderr


def test_all_jobs_meet_the_same_random_draws(tmp_path):
    # an axis that changes nothing in the model: every KPI must match replication by replication
    # (null is the default of run.plots: a sweep's jobs then draw no plots)
    p = critmin("sweep", "run.plots=true,false,null", "run.replications=2", "run.horizon_years=2",
                "--dir", "s", "--no-progress", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    s = pd.read_parquet(tmp_path / "s" / "summary.parquet")
    wide = s.pivot_table(index=["replication", "region", "product", "lever", "kpi"],
                         columns="run.plots", values="value", dropna=False)
    pd.testing.assert_series_equal(wide["True"], wide["False"], check_names=False)
    pd.testing.assert_series_equal(wide["True"], wide["null"], check_names=False)
    pngs = {name: len(list(folder.glob("*.png"))) for name, folder in jobs_of(tmp_path / "s").items()}
    assert pngs == {"run.horizon_years=2,run.plots=True,run.replications=2": 3,
                    "run.horizon_years=2,run.plots=False,run.replications=2": 0,
                    "run.horizon_years=2,run.plots=null,run.replications=2": 0}, pngs


def test_resume_reruns_only_jobs_without_their_completion_marker(tmp_path):
    args = ["sweep", "package=none,stockpiles", "run.replications=2", "run.horizon_years=2",
            "run.plots=false", "--dir", "s", "--no-progress"]
    assert critmin(*args, cwd=tmp_path).returncode == 0
    jobs = jobs_of(tmp_path / "s")
    done = next(f for n, f in jobs.items() if "package=none" in n)
    broken = next(f for n, f in jobs.items() if "package=stockpiles" in n)
    done_manifest = (done / "manifest.json").read_text()
    done_mtime = (done / "manifest.json").stat().st_mtime_ns
    # an interrupted job: no manifest, a half-written table
    (broken / "manifest.json").unlink()
    (broken / "timeseries.parquet.partial").write_bytes(b"half")
    summary_before = pd.read_parquet(tmp_path / "s" / "summary.parquet")
    p = critmin(*args, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "1 complete (skipped), 1 to run" in p.stdout
    assert (done / "manifest.json").stat().st_mtime_ns == done_mtime
    assert (done / "manifest.json").read_text() == done_manifest
    assert (broken / "manifest.json").exists() and not (broken / "timeseries.parquet.partial").exists()
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "s" / "summary.parquet"), summary_before)
    # a third run has nothing to do
    p = critmin(*args, cwd=tmp_path)
    assert p.returncode == 0 and "2 complete (skipped), 0 to run" in p.stdout


def test_a_failing_job_is_recorded_and_the_others_finish(tmp_path):
    args = ["sweep", "package=none,stockpiles,build_out", "run.replications=2",
            "run.horizon_years=2", "run.plots=false", "--dir", "s", "--no-progress"]
    p = critmin(*args, "--dry-run", cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.count("  new ") == 3
    assert not (tmp_path / "s").exists()  # a dry run writes nothing
    # make one job fail while it runs: its result file's name is taken by a folder
    bad = tmp_path / "s" / "jobs" / ("package=stockpiles,run.horizon_years=2,run.plots=False,"
                                     "run.replications=2")
    (bad / "kpis.csv").mkdir(parents=True)
    p = critmin(*args, cwd=tmp_path)
    assert p.returncode == 1
    assert "2/3 jobs complete" in p.stdout and "failed: package=stockpiles" in p.stderr
    assert "run the same command again" in p.stderr
    failed = json.loads((bad / "failed.json").read_text())
    assert "kpis.csv" in failed["error"] and "Traceback" in failed["traceback"]
    table = pd.read_csv(tmp_path / "s" / "jobs.csv")
    assert sorted(table.status) == ["complete", "complete", "failed"]
    s = pd.read_parquet(tmp_path / "s" / "summary.parquet")
    assert sorted(s.package.unique()) == ["build_out", "none"]
    # fixed, the same command retries only the failed job
    shutil.rmtree(bad / "kpis.csv")
    p = critmin(*args, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "2 complete (skipped), 1 to run" in p.stdout and not (bad / "failed.json").exists()
    assert sorted(pd.read_parquet(tmp_path / "s" / "summary.parquet").package.unique()) == \
        ["build_out", "none", "stockpiles"]


def test_a_completed_job_with_another_config_is_never_overwritten(tmp_path):
    args = ["sweep", "package=none", "run.replications=2", "run.horizon_years=1", "run.plots=false",
            "--dir", "s", "--no-progress"]
    assert critmin(*args, cwd=tmp_path).returncode == 0
    (folder,) = jobs_of(tmp_path / "s").values()
    m = json.loads((folder / "manifest.json").read_text())
    m["config"]["run"]["seed"] = 999  # as if run before a default changed
    m["config_sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(m))
    p = critmin(*args, cwd=tmp_path)
    assert p.returncode == 2
    assert "run.seed: 999 -> 12345" in p.stderr and "never overwrites" in p.stderr
    assert json.loads((folder / "manifest.json").read_text())["config"]["run"]["seed"] == 999


def test_a_sweep_from_when_jobs_drew_plots_by_default_resumes_without_rerunning(tmp_path):
    args = ["sweep", "package=none,stockpiles", "run.replications=1", "run.horizon_years=1",
            "--dir", "s", "--no-progress"]
    assert critmin(*args, cwd=tmp_path).returncode == 0
    folders = jobs_of(tmp_path / "s")
    old = folders["package=none,run.horizon_years=1,run.replications=1"]
    m = json.loads((old / "manifest.json").read_text())
    assert m["config"]["run"]["plots"] is None
    m["config"]["run"]["plots"] = True  # the default until 2026-12, as that version recorded it
    m["config_sha256"] = config_digest(m["config"])
    (old / "manifest.json").write_text(json.dumps(m))
    shutil.rmtree(folders["package=stockpiles,run.horizon_years=1,run.replications=1"])
    p = critmin(*args, cwd=tmp_path)  # plots change no result: that job is complete
    assert p.returncode == 0 and "1 complete (skipped), 1 to run" in p.stdout, p.stdout + p.stderr
    assert json.loads((old / "manifest.json").read_text()) == m  # skipped, not run again
    m["config"]["run"]["seed"] = 999  # any other difference still counts
    m["config_sha256"] = config_digest(m["config"])
    (old / "manifest.json").write_text(json.dumps(m))
    p = critmin(*args, cwd=tmp_path)
    assert p.returncode == 2 and "run.seed: 999 -> 12345" in p.stderr


def test_a_sweep_does_not_resume_jobs_that_an_earlier_results_version_computed(tmp_path):
    """The same config gives other numbers after a model change: mixing both in one sweep
    would compare policies across versions."""
    args = ["sweep", "package=none,stockpiles", "run.replications=1", "run.horizon_years=1",
            "--dir", "s", "--no-progress"]
    assert critmin(*args, cwd=tmp_path).returncode == 0
    old = jobs_of(tmp_path / "s")["package=none,run.horizon_years=1,run.replications=1"]
    m = json.loads((old / "manifest.json").read_text())
    assert m["results_version"] == RESULTS_VERSION
    del m["results_version"]  # as version 1 wrote it
    (old / "manifest.json").write_text(json.dumps(m))
    before = {f: f.read_bytes() for f in old.iterdir()}
    p = critmin(*args, cwd=tmp_path)
    assert p.returncode == 2, p.stdout + p.stderr
    for words in ("results version 1", f"version {RESULTS_VERSION}", "--dir"):
        assert words in p.stderr, p.stderr
    assert {f: f.read_bytes() for f in old.iterdir()} == before  # nothing overwritten


@pytest.mark.parametrize("args, words", [
    (["package=none,nosuch"], ["package", "nosuch", "stockpiles"]),
    (["run.replications=2,-1"], ["run.replications=-1", ">= 1", "[job:"]),
    (["sweep=nosuch"], ["sweep", "nosuch", "quickstart"]),
    (["package"], ["'package' is not an override", "key=value"]),
    (["--jobs", "0", "package=none"], ["--jobs=0", ">= 1"]),
])
def test_bad_sweep_input_fails_in_one_line_before_anything_runs(tmp_path, args, words):
    p = critmin("sweep", *args, "--dir", "s", cwd=tmp_path)
    assert p.returncode == 2, p.stdout + p.stderr
    line = p.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, line
    for w in words:
        assert w in line, (w, line)
    assert not (tmp_path / "s").exists()


def test_aggregate_and_compare_refuse_a_folder_that_is_not_a_sweep(tmp_path):
    for cmd in ("aggregate", "compare"):
        p = critmin(cmd, str(tmp_path), cwd=tmp_path)
        assert p.returncode == 2 and "not a sweep folder" in p.stderr, p.stderr


def test_quickstart_is_four_packages_by_two_chinese_behaviours(tmp_path):
    p = critmin("sweep", "sweep=quickstart", "--dry-run", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "8 jobs, axes package (4) x levers/export_control (2)" in p.stdout
    assert "results/sweeps/quickstart" in p.stdout


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.slow
@pytest.mark.skipif(not _have("hydra_plugins.hydra_submitit_launcher"),
                    reason="needs the cluster extra: pip install -e '.[cluster]'")
def test_sweep_through_submitit_local_executor(tmp_path):
    p = critmin("sweep", "package=none,stockpiles", "run.replications=2", "run.horizon_years=1",
                "run.plots=false", "--dir", "s", "--no-progress", "hydra/launcher=submitit_local",
                cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "LocalLauncher" in p.stdout and "2/2 jobs complete" in p.stdout
    assert (tmp_path / "s" / "summary.parquet").exists()


@pytest.mark.slow
@pytest.mark.skipif(not _have("hydra_plugins.hydra_ray_launcher"),
                    reason="needs the cluster extra: pip install -e '.[cluster]'")
def test_sweep_on_a_local_ray_cluster_with_the_shipped_launcher_config(tmp_path):
    # the shipped config as a user runs it: `ray start --head`, then a sweep joins it (address: auto)
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = subprocess.run([ray, "start", "--head", "--num-cpus=2", "--include-dashboard=false"],
                           capture_output=True, text=True, env=env, timeout=180)
    assert start.returncode == 0, start.stderr
    try:
        p = critmin("sweep", "package=none,stockpiles", "run.replications=2",
                    "run.horizon_years=1", "run.plots=false", "--dir", "s", "--no-progress",
                    "hydra/launcher=ray_cluster", cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        assert "RayLauncher" in p.stdout and "2/2 jobs complete" in p.stdout
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, env=env, timeout=120)


def test_compare_a_one_job_sweep_and_two_sweeps_together(swept, tmp_path):
    cwd, sweep, _ = swept
    p = critmin("sweep", "run.replications=2", "run.horizon_years=3", "run.plots=false",
                "--dir", str(tmp_path / "one"), "--no-progress", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    p = critmin("compare", str(tmp_path / "one"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "one" / "compare" / "report.html").exists()
    p = critmin("compare", str(sweep), str(tmp_path / "one"), "--out", str(tmp_path / "both"),
                cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    table = pd.read_csv(tmp_path / "both" / "summary_table.csv")
    # the one-job sweep ran with the defaults: package none, no export control
    one = table[table.sweep == "one"]
    assert set(one.package) == {"none"} and set(one["levers/export_control"]) == {"none"}
    assert set(table.sweep) == {"s", "one"}


def test_config_group_choices_come_from_the_manifest_or_an_older_jobs_hydra_record(tmp_path):
    from critmin.aggregate import job_values

    new, old = tmp_path / "jobs" / "new", tmp_path / "jobs" / "old"
    for job in (new, old):
        job.mkdir(parents=True)
    (new / "manifest.json").write_text(json.dumps(
        {"overrides": [], "choices": {"package": "full"}, "config": {"run": {"seed": 1}}}))
    (old / "manifest.json").write_text(json.dumps({"overrides": [], "config": {"run": {"seed": 2}}}))
    (old / ".hydra").mkdir()
    (old / ".hydra" / "hydra.yaml").write_text("hydra:\n  runtime:\n    choices:\n      package: none\n")
    values = job_values(tmp_path, [new, old], ["package", "run.seed"])
    assert values == {"new": {"package": "full", "run.seed": "1"},
                      "old": {"package": "none", "run.seed": "2"}}


def test_aggregate_keeps_missing_kpi_values_missing_and_empty_labels_empty(tmp_path):
    import pyarrow.parquet as pq

    from critmin.aggregate import aggregate

    job = tmp_path / "jobs" / "a"
    job.mkdir(parents=True)
    (job / "manifest.json").write_text(json.dumps({"overrides": ["run.seed=3"], "config": {}}))
    (job / "kpis.csv").write_text("replication,region,product,lever,kpi,value\n"
                                  "0,USA,magnet,,time_to_recover_days,nan\n"
                                  "0,world,all,vault,fiscal_cost_usd,12.5\n")
    assert aggregate(tmp_path) == (1, 2, [])  # one job: no key varies
    s = pq.read_table(tmp_path / "summary.parquet").to_pylist()
    assert s[0] == {"sweep": tmp_path.name, "job": "a", "replication": 0,
                    "region": "USA", "product": "magnet", "lever": "",
                    "kpi": "time_to_recover_days", "value": None}
    assert s[1]["lever"] == "vault" and s[1]["value"] == 12.5
    csv = pd.read_csv(tmp_path / "summary.csv", keep_default_na=False)
    assert list(csv.value) == ["", "12.5"] and list(csv.lever) == ["", "vault"]


def test_a_sweep_process_settles_the_garbage_collector_once(monkeypatch):
    import gc

    from critmin import sweep

    before = gc.get_threshold()
    monkeypatch.setattr(sweep, "_GC_SETTLED", False)
    gc.unfreeze()
    try:
        sweep.settle_gc()
        frozen = gc.get_freeze_count()
        assert frozen > 1000 and gc.get_threshold() == (10_000, *before[1:])
        junk = [object() for _ in range(100)]
        sweep.settle_gc()  # a second call changes nothing
        assert gc.get_freeze_count() == frozen and junk
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_tables_show_a_paired_difference_at_rounding_level_as_zero_and_keep_real_ones():
    from critmin.compare import _fmt_diff, _level

    row = pd.Series({"median": 0.905, "p05": 0.886, "p95": 0.938})
    level = _level(row)
    assert level == 0.938
    assert _fmt_diff(-6.12e-12, level) == "0"  # the sums' rounding, not an effect
    assert _fmt_diff(-9.31e-07, level) == "-9.31e-07"  # small, but a million times the rounding
    assert _fmt_diff(-0.0898, level) == "-0.0898"
    assert _fmt_diff(float("nan"), level) == "n/a"
    assert _fmt_diff(1e-12, 0.0) == "1e-12"  # a KPI at zero has no level to round against
