"""Scenario discovery: PRIM finds a planted box; `critmin discover` on an uncertain sweep."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from critmin.discover import DiscoverError, find_box, parse_goal

ROOT = Path(__file__).resolve().parents[1]


def test_prim_finds_a_planted_box_with_a_categorical_dimension():
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.random((2000, 4)), columns=["a", "b", "c", "d"])
    x["policy"] = pd.Categorical(rng.choice(["none", "full"], len(x)))
    y = ((x.a > 0.6) & (x.b < 0.3) & (x.policy == "none")).to_numpy()
    d = find_box(x, y)
    lim = d.limits.set_index("dimension")
    assert set(lim.index[lim.restricted]) == {"a", "b", "policy"}
    assert lim.low["a"] == pytest.approx(0.6, abs=0.03) and lim.high["b"] == pytest.approx(0.3, abs=0.03)
    assert lim["values"]["policy"] == "none"
    assert d.density > 0.95 and d.coverage > 0.9
    assert d.failures == int(y.sum()) and d.cases == 2000


def test_no_failure_or_only_failures_are_reported_not_boxed():
    x = pd.DataFrame({"a": np.linspace(0, 1, 50)})
    with pytest.raises(DiscoverError, match="no case fails"):
        find_box(x, np.zeros(50, bool))
    with pytest.raises(DiscoverError, match="every case fails"):
        find_box(x, np.ones(50, bool))


@pytest.mark.parametrize("goal, parsed", [("shortfall_share>0.05", ("shortfall_share", ">", 0.05)),
                                          (" unmet_demand_t <= 1e3 ", ("unmet_demand_t", "<=", 1000.0))])
def test_goals_are_parsed(goal, parsed):
    assert parse_goal(goal) == parsed


def critmin(*args, cwd):
    env = {**os.environ, "CRITMIN_HOME": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "critmin.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_discover_on_an_uncertain_sweep(tmp_path):
    p = critmin("sweep", "package=none,stockpiles", "levers/export_control=ban_12m",
                "uncertainty=baseline", "run.replications=16", "run.horizon_years=2",
                "run.plots=false", "--dir", "s", "--no-progress", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    s = pd.read_parquet(tmp_path / "s" / "summary.parquet")
    k = s[(s.kpi == "shortfall_share") & (s.region == "USA") & (s["product"] == "magnet")
          & (s.package == "none")]
    threshold = float(k.value.median())  # half the cases fail
    p = critmin("discover", "s", "--fails", f"shortfall_share>{threshold!r}", "--where",
                "package=none", "--out", "d", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert f"{int((k.value > threshold).sum())} of 16 cases fail" in p.stdout
    box = pd.read_csv(tmp_path / "d" / "box.csv")
    assert "electronics_price_elasticity" in set(box.dimension)
    m = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert 0 < m["coverage"] <= 1 and 0 < m["density"] <= 1
    for f in ("trajectory.csv", "tradeoff.png", "box.png", "box.svg"):
        assert (tmp_path / "d" / f).exists(), f
    # a sweep without uncertain parameters is refused, in one line
    p = critmin("sweep", "run.replications=2", "run.horizon_years=1", "--dir", "plain",
                "--no-progress", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    p = critmin("discover", "plain", "--fails", "shortfall_share>0.05", cwd=tmp_path)
    assert p.returncode == 2 and "uncertainty=baseline" in p.stderr
    p = critmin("discover", "s", "--fails", "shortfall_share=0.05", cwd=tmp_path)
    assert p.returncode == 2 and "is not a goal" in p.stderr
