"""`critmin run` as a user runs it: one folder per run, tidy files, one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def critmin(*args, cwd):
    env = {**os.environ, "CRITMIN_HOME": str(ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", "critmin.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_run_writes_tables_manifest_and_plots(tmp_path):
    p = critmin("run", "run.horizon_years=2", "run.replications=3", "run.progress=false",
                cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    (folder,) = list((tmp_path / "results" / "runs").iterdir())
    assert folder.name.endswith("_status_quo")  # run.* settings do not name the folder
    for name in ("timeseries.parquet", "kpis.csv", "manifest.json", "prices.png",
                 "unmet_demand.png", "supply_by_origin_magnet.png"):
        assert (folder / name).stat().st_size > 0, name
    k = pd.read_csv(folder / "kpis.csv")
    assert list(k.columns) == ["replication", "region", "product", "lever", "kpi", "value"]
    assert set(k.kpi) == {"shortfall_share", "unmet_demand_t", "peak_shortfall_share", "min_days_of_cover",
                          "price_peak_multiple", "china_share_of_supply", "import_reliance",
                          "time_to_recover_days"}
    assert sorted(k.replication.unique()) == [0, 1, 2]
    ts = pd.read_parquet(folder / "timeseries.parquet")
    assert {"production", "consumption", "demand", "unmet_demand", "inventory", "price",
            "imports", "supply_by_origin"} <= set(ts.variable)
    m = json.loads((folder / "manifest.json").read_text())
    assert m["seed"] == 12345 and m["replications"] == 3
    assert m["config"]["run"]["horizon_years"] == 2
    assert "numpy" in m["package_versions"] and "git_commit" in m["code_version"]
    # the US imports nearly all its magnets, mostly Chinese (DOMAIN: import reliance ~80 %+)
    us = k[(k.region == "USA") & (k["product"] == "magnet")].groupby("kpi").value.median()
    assert us["import_reliance"] > 0.9 and us["china_share_of_supply"] > 0.8


@pytest.mark.parametrize("override, words", [
    ("run.horizn_years=10", ["run.horizn_years", "not a config key", "horizon_years"]),
    ("run.horizon_years=abc", ["run.horizon_years", "'abc'", "float"]),
    ("run.replications=-1", ["run.replications=-1", ">= 1"]),
    ("run.replications=abc", ["run.replications", "'abc'", "must be an integer"]),
    ("run.plots=maybe", ["run.plots", "'maybe'", "must be a bool"]),
    ("world.facilities.USA_mine.capacity_tpy=-5", ["capacity_tpy=-5.0", ">= 0"]),
    ("world.recipes.separate_hard_rock.unrecovered=0.5", ["separate_hard_rock", "add up"]),
    ("world.facilities.USA_mine.region=MARS", ["region='MARS'", "CHN"]),
    ("scenario=no_such_thing", ["scenario='no_such_thing'", "status_quo"]),
    ("+world.trade.flows_tpy.magnet={CHN->ATLANTIS: 5}", ["CHN->ATLANTIS", "ATLANTIS"]),
    ("run.start_date=2025-13-45", ["run.start_date", "ISO date"]),
    ("run.tick_days=30", ["run.tick_days=30", "from 1 to 28", "calendar month"]),
    ("world.facilities.USA_mine.capacity_tpy=???",
     ["world.facilities.USA_mine.capacity_tpy", "Missing mandatory value"]),
    ("+world.facilities.USA_new={region: USA, recipe: mine_hard_rock}",
     ["world.facilities.USA_new", "new entry", "configs/world/"]),
    ("world.facilities.NOPE=5", ["world.facilities.NOPE='5'", "not a config key", "USA_mine"]),
    (("world=gallium", "world.facilities.NOPE=5"), ["world.facilities has:", "CHN_refining"]),
    ("world.facilities.USA_mine.capcity_tpy=5", ["capcity_tpy", "capacity_tpy"]),
    (("run.replications=3", "run.replications=x"), ["run.replications='x'", "integer"]),
    (("--jobs", "2"), ["no option --jobs", "critmin sweep", "key=value"]),
])
def test_bad_input_fails_in_one_line_without_traceback(tmp_path, override, words):
    p = critmin("run", *(override if isinstance(override, tuple) else (override,)), cwd=tmp_path)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    for w in words:
        assert w in lines[0], lines[0]
    assert not (tmp_path / "results").exists()  # nothing written


def test_a_used_run_folder_is_refused_and_kept(tmp_path):
    args = ["run", "run.horizon_years=1", "run.replications=1", "run.progress=false",
            "run.plots=false", f"hydra.run.dir={tmp_path / 'mine'}"]
    assert critmin(*args, cwd=tmp_path).returncode == 0
    before = (tmp_path / "mine" / "kpis.csv").read_bytes()
    p = critmin(*args, cwd=tmp_path)
    assert p.returncode == 2 and "already holds a run" in p.stderr
    assert (tmp_path / "mine" / "kpis.csv").read_bytes() == before


def test_hydra_flags_work_through_critmin(tmp_path):
    p = critmin("run", "--cfg", "job", "run.seed=7", cwd=tmp_path)
    assert p.returncode == 0 and "seed: 7" in p.stdout
    p = critmin("run", "--help", cwd=tmp_path)
    assert p.returncode == 0 and "critmin run" in p.stdout and "scenario" in p.stdout
    p = critmin("--help", cwd=tmp_path)
    assert p.returncode == 0 and "commands" in p.stdout
    p = critmin("run", "--info", "config", cwd=tmp_path)
    assert p.returncode == 0 and "Config search path" in p.stdout
    p = critmin("run", "-sc", "install=bash", cwd=tmp_path)
    assert p.returncode == 0 and "complete" in p.stdout


def test_the_run_summary_gives_shortfall_by_product_and_marks_a_price_at_the_cap(tmp_path, capsys):
    from critmin.app import _print_summary

    rows = [(r, "ex_china", p, "price_peak_multiple", v) for r in (0, 1)
            for p, v in (("magnet", 50.0), ("ndpr_oxide", 1.5))]
    rows += [(0, "USA", "magnet", "shortfall_share", 0.4), (0, "EU", "magnet", "shortfall_share", 0.1),
             (0, "EU", "ndpr_oxide", "shortfall_share", 0.3)]
    pd.DataFrame(rows, columns=["replication", "region", "product", "kpi", "value"]).to_csv(
        tmp_path / "kpis.csv", index=False)
    _print_summary(tmp_path, {"replications": 2, "runtime_seconds": 1.0}, price_cap=50.0)
    out = capsys.readouterr().out
    assert "magnet 50.00x (the cap), ndpr_oxide 1.50x\n" in out, out
    # shortfall by product, never a median pooled over products
    assert "shortfall share of magnet by region: USA 40.0%, EU 10.0%\n" in out, out
    assert "shortfall share of ndpr_oxide by region: EU 30.0%\n" in out, out
    assert "price_max_multiple=50" in out
    _print_summary(tmp_path, {"replications": 2, "runtime_seconds": 1.0}, price_cap=80.0)
    assert "cap" not in capsys.readouterr().out


def test_a_run_folder_is_named_by_its_scenario_and_what_else_the_command_changed():
    from critmin.config.paths import _run_name

    assert _run_name("status_quo", ["run.replications=3"]) == "status_quo"
    assert (_run_name("project_vault", ["scenario=project_vault", "world=gallium",
                                        "levers/export_control=ban_12m"])
            == "project_vault_levers.export_control=ban_12m,world=gallium")


def test_version_names_the_results_version():
    from critmin.core import RESULTS_VERSION

    p = critmin("--version", cwd=ROOT)
    assert p.returncode == 0 and f"(results version {RESULTS_VERSION})" in p.stdout, p.stdout
