"""Every mineral's world: steady without shocks, hit by a Chinese stop, by-products deaf to price."""

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from critmin.compare import main_product
from critmin.config.model import build_model
from critmin.config.paths import config_dir, register_all
from critmin.core.engine import Simulation
from critmin.core.kpis import compute_kpis

MINERALS = ["rare_earths", "gallium", "germanium", "graphite"]


def model(world, *overrides, container=False):
    register_all()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[f"world={world}", *overrides])
    if container:
        return cfg
    return build_model(cfg)


def run(m, reps=4):
    spec, world, levers = m
    return world, Simulation(world, spec.calendar, list(range(reps)), spec.seed, levers=levers).run()


@pytest.mark.parametrize("mineral", MINERALS)
def test_each_world_is_steady_without_shocks(mineral):
    world, res = run(model(mineral, "run.start_date=2024-01-01", "run.horizon_years=10"), reps=20)
    median = np.median(res.price, axis=0)  # MT, M, K (median replication, as test_baseline)
    rel = median / median[0]
    assert np.all(np.abs(rel - 1) < 0.2), (mineral, rel.min(), rel.max())
    assert res.unmet.sum() / res.demand.sum() < 0.01


@pytest.mark.parametrize("mineral", MINERALS)
def test_a_chinese_stop_raises_ex_china_prices_and_cuts_chinas_share(mineral):
    common = ["run.start_date=2025-01-01", "run.horizon_years=3"]
    world, calm = run(model(mineral, *common))
    _, stop = run(model(mineral, *common, "levers/export_control=china_full_stop"))
    final = world.products.index(main_product(OmegaConf.to_container(
        model(mineral, *common, container=True).world, resolve=True)))
    ex = world.markets.index("ex_china")
    assert np.median(stop.price[:, :, ex, final].max(1)) > 1.2 * np.median(calm.price[:, :, ex, final].max(1))
    usa = world.regions.index("USA")

    def china_share(res):
        k = compute_kpis(world, res)
        sel = ((np.asarray(k.kpi) == "china_share_of_supply") & (np.asarray(k.region) == "USA")
               & (np.asarray(k.product) == world.products[final]))
        return np.median(k.value[sel])

    assert usa >= 0 and china_share(stop) < china_share(calm)


def byproduct_cases():
    out = []
    for mineral in MINERALS:
        cfg = model(mineral, container=True)
        recipes = [r for r, rc in cfg.world.recipes.items() if rc.get("byproduct_of", "")]
        out += [(mineral, r) for r in recipes]
    return out


@pytest.mark.parametrize("mineral, recipe", byproduct_cases())
def test_byproduct_output_does_not_follow_its_own_price(mineral, recipe):
    """Ex-China by-product plants make the same in the year after a Chinese stop as without it,
    although their output's price jumps; flagged as a main product, they make more. The
    unsold-stock brake (a plant that cannot sell slows down) is a separate channel, switched
    off here so that only the price channel is compared."""
    common = ["run.start_date=2025-01-01", "run.horizon_years=2", "world.outages.rate_per_year=0",
              "world.supply_response.unsold_stock_brake=1e9"]  # brake off
    as_main = [f"world.recipes.{recipe}.byproduct_of=", f"world.recipes.{recipe}.host_growth_per_year=null"]
    names = [n for n, fc in model(mineral, container=True).world.facilities.items()
             if fc.recipe == recipe and fc.region != "CHN"]
    if not names:
        pytest.skip(f"{mineral}: no plant of {recipe} outside China")

    def output(*extra):
        world, res = run(model(mineral, *common, *extra), reps=2)
        f = [world.facilities.index(n) for n in names]
        regions = sorted({int(world.fac_region[i]) for i in f})
        k = int(np.argmax(world.fac_outputs[f[0]]))
        others = [i for i in range(len(world.facilities)) if i not in f
                  and world.fac_region[i] in regions and world.fac_outputs[i, k] > 0]
        assert not others, "the regions' output of that product must come from these plants only"
        year = slice(12, 24)  # 2026: the year of the stop
        ex = world.markets.index("ex_china")
        return res.production[:, year][:, :, regions, k].sum(), res.price[:, year, ex, k].max()

    calm, p_calm = output()
    stop, p_stop = output("levers/export_control=china_full_stop")
    assert p_stop > 1.2 * p_calm  # the stop does lift the price these plants see
    assert stop == pytest.approx(calm, rel=1e-9)
    free_calm, _ = output(*as_main)
    free_stop, _ = output(*as_main, "levers/export_control=china_full_stop")
    assert free_stop > 1.02 * free_calm
