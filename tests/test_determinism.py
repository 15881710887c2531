"""Same config and seed give identical results; replications differ; batching does not matter."""

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from critmin.app import run_job
from critmin.config.paths import config_dir, register_all


def compose_cfg(*overrides):
    register_all()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=["run.progress=false", "run.plots=false",
                                            "run.horizon_years=2", *overrides])


def test_same_seed_gives_identical_kpis_and_another_seed_does_not(tmp_path):
    cfg = compose_cfg("run.replications=3", "run.seed=7")
    run_job(cfg, tmp_path / "a")
    run_job(cfg, tmp_path / "b")
    a = (tmp_path / "a" / "kpis.csv").read_bytes()
    assert a == (tmp_path / "b" / "kpis.csv").read_bytes()
    run_job(compose_cfg("run.replications=3", "run.seed=8"), tmp_path / "c")
    assert a != (tmp_path / "c" / "kpis.csv").read_bytes()


def test_replications_differ_and_do_not_depend_on_batching(tmp_path):
    import pandas as pd

    run_job(compose_cfg("run.replications=4", "run.batch_size=4"), tmp_path / "a")
    run_job(compose_cfg("run.replications=4", "run.batch_size=1"), tmp_path / "b")
    a = pd.read_csv(tmp_path / "a" / "kpis.csv")
    b = pd.read_csv(tmp_path / "b" / "kpis.csv")
    np.testing.assert_allclose(a.value, b.value, rtol=1e-9, atol=1e-12)
    peaks = a[(a.kpi == "price_peak_multiple") & (a.region == "ex_china")
              & (a["product"] == "dytb_oxide")].value
    assert peaks.nunique() == 4  # each replication has its own draws


def test_an_earlier_run_is_never_overwritten(tmp_path):
    from critmin.results import RunFolderError

    cfg = compose_cfg("run.replications=1")
    run_job(cfg, tmp_path / "a")
    before = (tmp_path / "a" / "kpis.csv").read_bytes()
    with pytest.raises(RunFolderError, match="already holds a run"):
        run_job(cfg, tmp_path / "a")
    assert (tmp_path / "a" / "kpis.csv").read_bytes() == before
