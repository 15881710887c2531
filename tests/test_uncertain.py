"""Uncertain parameters: Latin hypercube draws per replication, reproducible, applied, checked."""

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from critmin.config.build import ConfigError
from critmin.config.model import build_model
from critmin.config.paths import config_dir, register_all
from critmin.config.uncertain import draw, latin_hypercube, parse_uncertain, with_values


def composed(*overrides):
    register_all()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_latin_hypercube_puts_one_point_in_each_stratum_of_every_axis():
    for n in (1, 7, 40):
        u = latin_hypercube(5, n, seed=3)
        assert u.shape == (n, 5) and ((u >= 0) & (u < 1)).all()
        for j in range(5):
            assert sorted(np.floor(u[:, j] * n).astype(int)) == list(range(n))


def test_draws_are_reproducible_with_the_seed_and_change_with_it():
    params = parse_uncertain(composed("uncertainty=baseline"))
    a, b, c = draw(params, 20, 12345), draw(params, 20, 12345), draw(params, 20, 7)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_each_distribution_stays_in_its_range_and_hits_its_centre():
    params = {p.name: (p, j) for j, p in enumerate(parse_uncertain(composed("uncertainty=baseline")))}
    v = draw([p for p, _ in params.values()], 400, 1)
    ev, j = params["ev_price_elasticity"]
    assert v[:, j].min() >= 0.02 and v[:, j].max() <= 0.15
    assert np.mean(v[:, j]) == pytest.approx(0.085, abs=0.003)  # uniform: the mid-point
    lead, j = params["mine_lead_years"]
    assert np.median(v[:, j]) == pytest.approx(3.0, rel=0.03)  # lognormal: the median
    tri, j = params["ev_substitution_rate"]
    assert v[:, j].min() >= 0.03 and v[:, j].max() <= 0.15
    assert np.mean(v[:, j]) == pytest.approx((0.03 + 0.10 + 0.15) / 3, abs=0.003)


def test_lever_fields_are_drawn_only_when_the_lever_is_chosen():
    names = {p.name for p in parse_uncertain(composed("uncertainty=baseline"))}
    assert "licence_delay_days" not in names and "ev_price_elasticity" in names
    names = {p.name for p in parse_uncertain(
        composed("uncertainty=baseline", "levers/export_control=licensing_2025"))}
    assert {"licence_delay_days", "licence_approval_rate"} <= names


def test_a_range_sourced_for_one_world_is_not_drawn_in_another():
    assert "demand_growth" in {p.name for p in parse_uncertain(composed("uncertainty=baseline"))}
    for world in ("gallium", "germanium", "graphite", "rare_earths_2009"):
        names = {p.name for p in parse_uncertain(composed("uncertainty=baseline", f"world={world}"))}
        assert "demand_growth" not in names, world  # they keep their own growth rates


def test_drawn_values_reach_the_world_and_leave_the_config_untouched():
    cfg = composed("uncertainty=baseline")
    params = parse_uncertain(cfg)
    values = draw(params, 3, 12345)
    j = [p.name for p in params].index("utilisation_price_elasticity")
    _, world, _ = build_model(with_values(cfg, params, values[1]))
    assert world.supply.utilisation_price_elasticity == pytest.approx(values[1, j])
    assert OmegaConf.select(cfg, "world.supply_response.utilisation_price_elasticity") == 0.3


@pytest.mark.parametrize("override, words", [
    ("uncertain.ev_price_elasticity.dist=poisson", ["dist", "poisson", "uniform"]),
    ("uncertain.outage_rate.key=world.nope", ["key", "world.nope", "must name a number"]),
    ("uncertain.ev_price_elasticity.high=0.01", ["high", "> low"]),
])
def test_bad_uncertain_declarations_are_refused_in_one_line(override, words):
    with pytest.raises(ConfigError) as e:
        parse_uncertain(composed("uncertainty=baseline", override))
    for w in words:
        assert w in str(e.value)


def test_a_run_stores_the_draws_and_uses_them(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-m", "critmin.cli", "run", "uncertainty=baseline",
                        "run.replications=4", "run.horizon_years=1", "run.plots=false",
                        "run.progress=false"], cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "CRITMIN_HOME": str(root)}, timeout=300)
    assert p.returncode == 0, p.stderr
    (folder,) = (tmp_path / "results" / "runs").iterdir()
    par = pd.read_csv(folder / "parameters.csv")
    assert sorted(par.replication.unique()) == [0, 1, 2, 3]
    params = parse_uncertain(composed("uncertainty=baseline"))
    expected = draw(params, 4, 12345)
    got = par.pivot(index="replication", columns="parameter", values="value")[[p.name for p in params]]
    np.testing.assert_array_equal(got.to_numpy(), expected)  # stored exactly


def test_ranges_are_checked_once_per_model_not_per_seed():
    """A sweep plans each job with the range check; jobs that differ only in the seed (or the
    replications, or output settings) share it, other model changes are checked again."""
    from critmin.config.uncertain import check_ranges

    builds = []

    def build(cfg):
        builds.append(cfg)
        return build_model(cfg)

    checked: set[str] = set()
    params = parse_uncertain(composed("uncertainty=baseline"))
    check_ranges(composed("uncertainty=baseline", "run.seed=1"), params, build, checked)
    assert len(builds) == 2 * len(params)
    check_ranges(composed("uncertainty=baseline", "run.seed=2", "run.replications=7"), params,
                 build, checked)
    assert len(builds) == 2 * len(params)
    check_ranges(composed("uncertainty=baseline", "run.horizon_years=5"), params, build, checked)
    check_ranges(composed("uncertainty=baseline", "world.demand.growth_per_year=0.1"), params,
                 build, checked)
    assert len(builds) == 6 * len(params)
    # a failing range is never remembered as checked
    bad = composed("uncertainty=baseline", "uncertain.outage_rate.low=-5")
    for _ in range(2):
        with pytest.raises(ConfigError, match="uncertain.outage_rate"):
            check_ranges(bad, parse_uncertain(bad), build_model, checked)


def _alone(cfg, spec, params, values, r):
    """Replication r run by itself in its own world (what runs did before batching)."""
    from critmin.core.engine import Simulation

    _, world, levers = build_model(with_values(cfg, params, values[r]))
    return Simulation(world, spec.calendar, [r], spec.seed, levers=levers).run()


def _arrays(res):
    import dataclasses

    out = {}
    for f in dataclasses.fields(res):
        v = getattr(res, f.name)
        if isinstance(v, dict):
            out.update({f"{f.name}.{k}": a for k, a in v.items()})
        elif isinstance(v, np.ndarray) and v.ndim >= 2:
            out[f.name] = v
    return out


# a drawn parameter the engine does not read per replication: the price adjustment time
OTHER = ["uncertain.demand_growth.key=world.market_rule.price_adjust_days",
         "uncertain.demand_growth.low=20", "uncertain.demand_growth.mode=30",
         "uncertain.demand_growth.high=40"]


@pytest.mark.parametrize("levers, batched", [
    ([], True),
    (["levers/export_control=licensing_2025"], True),
    (["scenario=trump_xi_truce"], True),
    (OTHER, False),
], ids=["world parameters", "licence delay and approval", "re-imposition chance",
        "a parameter not read per replication"])
def test_uncertain_replications_get_the_numbers_they_get_alone(levers, batched):
    """Replications with their own worlds and lever settings run as one batch when what
    differs is read per replication (engine.PER_REPLICATION, PER_REPLICATION_LEVERS),
    else one at a time. Each replication's results are those of running it alone, up to
    rounding."""
    import dataclasses

    from critmin.runner import simulate_uncertain

    cfg = composed("uncertainty=baseline", "run.horizon_years=3", *levers)
    spec, _, _ = build_model(cfg)
    spec = dataclasses.replace(spec, replications=4, batch_size=4)
    params = parse_uncertain(cfg)
    values = draw(params, 4, spec.seed)
    assert len(params) >= 10
    out = list(simulate_uncertain(cfg, spec, params, values))
    assert len(out) == (1 if batched else 4)
    for r in range(4):
        res = out[0][0] if len(out) == 1 else out[r][0]
        i = r if len(out) == 1 else 0
        alone = _arrays(_alone(cfg, spec, params, values, r))
        got = _arrays(res)
        assert got.keys() == alone.keys()
        for name, a in alone.items():
            np.testing.assert_allclose(got[name][i], a[0], rtol=1e-9, atol=1e-9, err_msg=name)
    # the draws matter: replications differ
    prices = out[0][0].price if len(out) == 1 else np.concatenate([o[0].price for o in out])
    assert not np.allclose(prices[0], prices[1])


def test_a_batch_refuses_worlds_that_differ_beyond_what_it_reads_per_replication():
    from critmin.core.engine import Simulation
    from critmin.core.world import differences

    spec, a, _ = build_model(composed())
    _, b, _ = build_model(composed("world.market_rule.price_adjust_days=60"))
    _, c, _ = build_model(composed("world.demand.growth_per_year=0.09"))
    assert differences(a, b) == ["market_rule.price_adjust_days"]
    assert "demand_growth_per_year" in differences(a, c)  # (and what the builder derives)
    with pytest.raises(ValueError, match="market_rule.price_adjust_days"):
        Simulation(a, spec.calendar, [0, 1], spec.seed, worlds=[a, b])
    Simulation(a, spec.calendar, [0, 1], spec.seed, worlds=[a, c])  # read per replication
