"""The back-test of the 2010-2011 rare-earth crisis stays inside its documented bands."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from critmin.backtest import calibrate, fit_loss, load_case, metrics, simulate_case
from critmin.config.paths import config_dir, register_all

ROOT = Path(__file__).resolve().parents[1]
CASE = load_case(config_dir() / "backtest" / "rare_earths_2010.yaml")


def case_config(*extra):
    register_all()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[*CASE.overrides, *extra])
    return OmegaConf.create({k: v for k, v in OmegaConf.to_container(cfg).items()})


@pytest.fixture(scope="module")
def crisis():
    world, results = simulate_case(case_config())
    return metrics(world, results, CASE.basket)


def test_the_crisis_peaks_in_2011_between_5x_and_30x(crisis):
    med = crisis.median()
    assert 5 <= med.basket_peak_multiple <= 30
    assert int(med.peak_year) == 2011


def test_prices_at_least_halve_within_two_years_of_the_peak(crisis):
    assert crisis.basket_24m_after_peak_share.median() <= 0.5


def test_china_domestic_prices_rise_far_less_than_export_prices(crisis):
    assert crisis.domestic_to_export_peak_ratio.median() <= 0.5


def test_without_the_shock_the_2009_world_stays_calm():
    world, results = simulate_case(case_config("scenario=status_quo", "run.replications=6"))
    m = metrics(world, results, CASE.basket)
    assert m.basket_peak_multiple.median() < 1.3


def test_calibration_searches_within_its_bounds_and_reports_its_loss():
    cfg = case_config()
    case = load_case(config_dir() / "backtest" / "rare_earths_2010.yaml")
    case.calibration["replications"] = 2
    fitted, loss, log = calibrate(cfg, case, maxiter=1, seed=1)
    for key, (lo, hi) in case.calibration["parameters"].items():
        assert lo <= fitted[key] <= hi
        assert log[key].between(lo, hi).all()
    assert loss == pytest.approx(log.loss.min())
    # the reported loss is the loss of the fitted parameters (same streams)
    for k, v in fitted.items():
        OmegaConf.update(cfg, k, v)
    world, results = simulate_case(cfg, 2)
    assert fit_loss(metrics(world, results, case.basket), case) == pytest.approx(loss)
    assert np.isfinite(log.loss).all()


def test_the_command_writes_the_table_and_the_overlay(tmp_path):
    p = subprocess.run([sys.executable, "-m", "critmin.cli", "backtest", "run.replications=4",
                        "--out", "bt"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "CRITMIN_HOME": str(ROOT)})
    assert p.returncode == 0, p.stderr
    t = pd.read_csv(tmp_path / "bt" / "backtest.csv")
    assert set(CASE.targets) == set(t.metric)
    for f in ("metrics.csv", "backtest.md", "overlay.png", "overlay.svg", "manifest.json"):
        assert (tmp_path / "bt" / f).exists(), f
    assert "basket_peak_multiple" in p.stdout
    md = (tmp_path / "bt" / "backtest.md").read_text()
    assert "| peak_year | 2011." in md and "e+03" not in md, md  # as a year, with a decimal


def test_a_backtest_of_another_world_is_refused_with_the_cases(tmp_path):
    p = subprocess.run([sys.executable, "-m", "critmin.cli", "backtest", "world=gallium"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "CRITMIN_HOME": str(ROOT)})
    assert p.returncode == 2
    assert "world=gallium" in p.stderr and "rare_earths_2010" in p.stderr
    assert not (tmp_path / "results").exists()
