"""Sensitivity indices recover known structure: Ishigami, a linear model, a world with one lever."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from critmin.config.paths import config_dir, register_all
from critmin.config.uncertain import UncertainParam, parse_uncertain
from critmin.sensitivity import KpiEvaluator, run_sensitivity

ROOT = Path(__file__).resolve().parents[1]


def uniform(name, low, high):
    return UncertainParam(name, f"x.{name}", "uniform", {"low": low, "high": high}, "test")


def test_sobol_recovers_the_ishigami_indices():
    # Ishigami & Homma (1990), a=7, b=0.1: S1 = (0.314, 0.442, 0), ST = (0.558, 0.442, 0.244)
    params = [uniform(f"x{i}", -np.pi, np.pi) for i in (1, 2, 3)]

    def ishigami(x):
        return np.sin(x[0]) + 7 * np.sin(x[1]) ** 2 + 0.1 * x[2] ** 4 * np.sin(x[0])

    ix = run_sensitivity(params, ishigami, "sobol", 2048, seed=1)
    t = ix.table.set_index("parameter")
    np.testing.assert_allclose(t.S1, [0.314, 0.442, 0.0], atol=0.04)
    np.testing.assert_allclose(t.ST, [0.558, 0.442, 0.244], atol=0.04)
    assert len(ix.samples) == 2048 * 5


def test_morris_ranks_a_linear_model_by_its_slopes_times_ranges():
    params = [uniform("big", 0, 1), uniform("small", 0, 10), uniform("none", 0, 1)]
    ix = run_sensitivity(params, lambda x: 10 * x[0] + 0.1 * x[1] + 0 * x[2], "morris", 20, seed=2)
    t = ix.table.set_index("parameter")
    # elementary effects on the probability scale: slope x range (the 0.1 % clip at the grid's
    # ends shortens a few steps by 0.15 %)
    assert t.mu_star["big"] == pytest.approx(10, rel=0.002)
    assert t.mu_star["small"] == pytest.approx(1, rel=0.002)
    assert t.mu_star["none"] == 0 and (t.sigma < 1e-9).all()


def test_in_a_world_the_parameter_that_obviously_dominates_comes_first():
    register_all()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["run.horizon_years=2"])
    c = OmegaConf.to_container(cfg, resolve=True)
    c["uncertain"] = {  # US magnet capacity decides US import reliance; outage length hardly does
        "usa_magnets": {"key": "world.facilities.USA_magnets.capacity_tpy", "dist": "uniform",
                        "low": 0.0, "high": 20000.0, "source": "test"},
        "outage_days": {"key": "world.outages.mean_days", "dist": "uniform", "low": 40.0,
                        "high": 44.0, "source": "test"},
    }
    cfg = OmegaConf.create(c)
    params = parse_uncertain(cfg)
    evaluate = KpiEvaluator(cfg, params, "import_reliance", "USA", "magnet", replications=1)
    ix = run_sensitivity(params, evaluate, "morris", 3, seed=3)
    t = ix.table.set_index("parameter")
    assert t.mu_star["usa_magnets"] > 0.1  # 0 -> 20 kt/yr moves US import reliance by > 10 points
    assert t.mu_star["usa_magnets"] > 20 * t.mu_star["outage_days"]


def run_cli(*args, cwd):
    env = {**os.environ, "CRITMIN_HOME": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "critmin.cli", "sensitivity", *args,
                           "--no-progress"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_command_writes_indices_samples_and_a_plot(tmp_path):
    p = run_cli("run.horizon_years=1", "--n", "2", "--kpi", "price_peak_multiple",
                "--region", "ex_china", "--product", "ndpr_oxide", "--out", "sa", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    ix = pd.read_csv(tmp_path / "sa" / "indices.csv")
    samples = pd.read_csv(tmp_path / "sa" / "samples.csv")
    n_params = len(ix)
    assert n_params >= 8 and len(samples) == 2 * (n_params + 1)
    assert {"mu_star", "mu_star_conf", "sigma"} <= set(ix.columns)
    assert (tmp_path / "sa" / "indices.png").exists() and (tmp_path / "sa" / "indices.svg").exists()
    assert "warning" not in p.stderr  # the peak NdPr price moves with the parameters
    # the same command into the same folder is refused
    p = run_cli("run.horizon_years=1", "--n", "2", "--out", "sa", cwd=tmp_path)
    assert p.returncode == 2 and "never overwrites" in p.stderr


def test_a_kpi_that_no_parameter_moves_gets_a_warning_not_a_silent_zero(tmp_path):
    # no shock in a one-year status quo: the US never runs short of magnets
    p = run_cli("run.horizon_years=1", "--n", "2", "--out", "sa", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (pd.read_csv(tmp_path / "sa" / "indices.csv").mu_star == 0).all()
    assert "warning: shortfall_share (USA, magnet) is 0 at every point" in p.stderr, p.stderr
    assert "levers/export_control=ban_12m" in p.stderr


@pytest.mark.parametrize("args, words", [
    (["--kpi", "nope"], ["--kpi='nope'", "allowed KPIs", "shortfall_share"]),
    (["--method", "sobol", "--n", "100"], ["--n=100", "power of 2"]),
    (["--method", "sobol", "--n", "8"], ["--n=8", "from 16"]),
    (["uncertainty=none"], ["0 uncertain parameter", "uncertainty=baseline",
                            "configs/uncertainty/"]),
])
def test_bad_sensitivity_input_fails_in_one_line(tmp_path, args, words):
    p = run_cli("run.horizon_years=1", "--n", "2", *args, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    line = p.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    for w in words:
        assert w in line, (w, line)


def test_points_simulated_together_give_the_kpis_they_give_one_by_one(monkeypatch):
    """KpiEvaluator runs several points as one batch of points x replications when the
    engine reads their differences per replication (here: world and lever settings)."""
    from critmin.core.engine import Simulation
    from critmin.sensitivity import to_values

    register_all()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["run.horizon_years=3", "uncertainty=baseline",
                                           "levers/export_control=licensing_2025",
                                           "run.batch_size=10"])
    params = parse_uncertain(cfg)
    points = to_values(params, np.random.default_rng(5).random((4, len(params))))
    evaluate = KpiEvaluator(cfg, params, "shortfall_share", "USA", "magnet", replications=2)
    assert evaluate.points_at_once == 5  # run.batch_size 10 / 2 replications
    runs = []
    real_run = Simulation.run
    monkeypatch.setattr(Simulation, "run", lambda self: runs.append(self.R) or real_run(self))
    together = evaluate.many(points)
    assert runs == [8]  # 4 points x 2 replications, one simulation
    alone = [evaluate(p) for p in points]
    assert runs[1:] == [2, 2, 2, 2]
    np.testing.assert_allclose(together, alone, rtol=1e-9, atol=1e-12)
    assert len(set(np.round(alone, 12))) > 1  # the points differ
