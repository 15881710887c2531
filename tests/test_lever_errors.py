"""Bad lever configs fail before a run, in one line naming the full key (docs/levers.md).

Through the CLI, as a user meets them: `critmin run levers/<kind>=<option> levers.<kinds>.<name>.<field>=...`
exits with status 2, prints exactly one line on stderr (no traceback) naming the key, the value
and what is allowed, and writes nothing. One fast in-process test checks the `ConfigError`
attributes raised by `build_model`.
"""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import open_dict

ROOT = Path(__file__).resolve().parents[1]

QUICK = ["run.horizon_years=0.2", "run.replications=1", "run.progress=false", "run.plots=false"]


def critmin_run(overrides, tmp_path):
    env = {**os.environ, "CRITMIN_HOME": str(ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("CRITMIN_DEBUG", None)
    args = ["run", *QUICK, f"hydra.run.dir={tmp_path / 'out'}", *overrides]
    return subprocess.run([sys.executable, "-m", "critmin.cli", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(p, tmp_path, words):
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("critmin: error: "), lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert not (tmp_path / "out").exists()  # nothing written
    assert not (tmp_path / "results").exists()


EC, TF, SP, PF, CA = ("levers.export_controls", "levers.tariffs", "levers.stockpiles",
                      "levers.price_floors", "levers.capacity_additions")

CASES = [
    pytest.param(["levers/price_floor=mp_110", f"{PF}.mp_ndpr_floor.floor_usd_per_kg=-5"],
                 [f"{PF}.mp_ndpr_floor.floor_usd_per_kg=-5", ">= 0"], id="floor_below_zero"),
    pytest.param(["levers/export_control=ban_12m", f"{EC}.china_ree_ban_12m.end_date=2025-12-01"],
                 [f"{EC}.china_ree_ban_12m.end_date='2025-12-01'", "after start_date", "2026-01-01"],
                 id="export_control_ends_before_start"),
    pytest.param(["levers/tariff=us_2025", f"{TF}.us_301_magnets.end_date=2025-06-01"],
                 [f"{TF}.us_301_magnets.end_date='2025-06-01'", "after start_date", "2026-01-01"],
                 id="tariff_ends_before_start"),
    pytest.param(["levers/export_control=quota_2010", f"{EC}.china_quota_ndpr.products=[unobtainium]"],
                 [f"{EC}.china_quota_ndpr.products='unobtainium'", "ndpr_oxide", "magnet"],
                 id="export_control_unknown_product"),
    pytest.param(["levers/export_control=ban_12m", f"{EC}.china_ree_ban_12m.destinations=[USA,ATLANTIS]"],
                 [f"{EC}.china_ree_ban_12m.destinations='ATLANTIS'", "USA", "CHN"],
                 id="export_control_unknown_destination"),
    pytest.param(["levers/tariff=us_2025", f"{TF}.us_301_magnets.importers=[ATLANTIS]"],
                 [f"{TF}.us_301_magnets.importers='ATLANTIS'", "USA", "CHN"],
                 id="tariff_unknown_importer"),
    pytest.param(["levers/stockpile=nds", f"{SP}.nds.holder=ATLANTIS"],
                 [f"{SP}.nds.holder='ATLANTIS'", "USA", "EU"], id="stockpile_unknown_holder"),
    pytest.param(["levers/stockpile=nds", f"{SP}.nds.release_share_per_month=1.5"],
                 [f"{SP}.nds.release_share_per_month=1.5", "(0, 1]"],
                 id="stockpile_releases_more_than_it_holds"),
    pytest.param(["levers/export_control=ban_12m", f"{EC}.china_ree_ban_12m.form=embargo"],
                 [f"{EC}.china_ree_ban_12m.form='embargo'", "ban", "quota", "licensing"],
                 id="export_control_unknown_form"),
    pytest.param(["levers/export_control=quota_2010", f"{EC}.china_quota_ndpr.quota_tpy=null"],
                 [f"{EC}.china_quota_ndpr.quota_tpy=None", "quota needs quota_tpy"],
                 id="quota_without_quota_tpy"),
    pytest.param(["levers/export_control=ban_12m", f"{EC}.china_ree_ban_12m.form=quota"],
                 [f"{EC}.china_ree_ban_12m.quota_tpy=None", "quota needs quota_tpy"],
                 id="ban_turned_quota_without_quota_tpy"),
    pytest.param(["levers/stockpile=nds", f"{SP}.nds.budgt_usd=5"],
                 [f"{SP}.nds.budgt_usd", "not a config key"], id="misspelt_lever_field"),
    pytest.param(["levers/stockpile=nonexistent"],
                 ["levers/stockpile='nonexistent'", "eu_reserve", "jogmec", "nds", "none",
                  "project_vault"], id="unknown_lever_option"),
    pytest.param(["levers/capacity=allied_deals", f"{CA}.mp_10x_magnets.recipe=cold_fusion"],
                 [f"{CA}.mp_10x_magnets.recipe='cold_fusion'", "make_magnets"],
                 id="capacity_unknown_recipe"),
    pytest.param(["levers/capacity=allied_deals", f"{CA}.lynas_heavy_expansion.offtake.JPN=0.9"],
                 [f"{CA}.lynas_heavy_expansion.offtake=", "'JPN': 0.9", "'USA': 0.25", "at most 1"],
                 id="capacity_offtake_above_one"),
    pytest.param(["levers/price_floor=mp_110", f"{PF}.mp_ndpr_floor.product=magnet"],
                 [f"{PF}.mp_ndpr_floor.product='magnet'", "USA_separation", "does not make magnet"],
                 id="floor_on_plant_not_making_product"),
    # --- typos in lever fields, and instances the command line cannot create ---
    pytest.param(["levers/stockpile=nds", f"{SP}.nds.budgt_usd=5"],
                 [f"{SP}.nds.budgt_usd", "not a config key", "budget_usd"],
                 id="misspelt_lever_field_suggests_fields"),
    pytest.param(["levers/stockpile=nds", f"+{SP}.nds.budgt_usd=5"],
                 [f"{SP}.nds.budgt_usd", "unknown field", "budget_usd"],
                 id="misspelt_lever_field_added_with_plus"),
    # new instances come from YAML (a scenario or a lever option); the CLI says so
    pytest.param([f"+{SP}.x.holder=ATLANTIS", f"+{SP}.x.products=[magnet]",
                  f"+{SP}.x.budget_usd=1e8"],
                 [f"{SP}.x.holder", "cannot be created on the command line", "scenario file"],
                 id="new_instance_by_override"),
    pytest.param([f"+{SP}.x={{holder: ATLANTIS, products: [magnet], budget_usd: 1e8}}"],
                 [f"{SP}.x", "cannot be created on the command line", "configs/levers"],
                 id="new_instance_as_dict_by_override"),
]


@pytest.mark.parametrize("overrides, words", CASES)
def test_bad_lever_fails_in_one_line_naming_the_key(tmp_path, overrides, words):
    assert_one_line_error(critmin_run(overrides, tmp_path), tmp_path, words)


# --- in process: build_model raises ConfigError with the key and the value ---------------------

def compose(overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from critmin.config.paths import config_dir, register_all

    register_all()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return hydra_compose("config", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


def with_levers(cfg, levers):
    """A copy of `cfg` with lever instances added as a scenario file adds them (a merge)."""
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):  # composed configs are struct: no new keys without this
        cfg.merge_with({"levers": levers})
    return cfg


def test_build_model_raises_config_error_with_key_and_value():
    from critmin.config.build import ConfigError
    from critmin.config.model import build_model

    base = compose([])
    cases = [
        (compose(["levers/price_floor=mp_110", f"{PF}.mp_ndpr_floor.floor_usd_per_kg=-5"]),
         f"{PF}.mp_ndpr_floor.floor_usd_per_kg", -5),
        (compose(["levers/stockpile=nds", f"{SP}.nds.release_share_per_month=1.5"]),
         f"{SP}.nds.release_share_per_month", 1.5),
        (compose(["levers/export_control=ban_12m", f"{EC}.china_ree_ban_12m.form=embargo"]),
         f"{EC}.china_ree_ban_12m.form", "embargo"),
        (with_levers(base, {"stockpiles": {"x": {"holder": "ATLANTIS", "products": ["magnet"],
                                                 "budget_usd": 1e8}}}),
         f"{SP}.x.holder", "ATLANTIS"),
        (with_levers(base, {"capacity_additions": {"x": {
            "region": "USA", "recipe": "make_magnets", "capacity_tpy": 1000,
            "announce_date": "2025-06-01", "lead_years": 2, "offtake": {"USA": 0.8, "EU": 0.5}}}}),
         f"{CA}.x.offtake", {"USA": 0.8, "EU": 0.5}),
    ]
    for cfg, key, value in cases:
        with pytest.raises(ConfigError) as e:
            build_model(cfg)
        assert (e.value.key, e.value.value) == (key, value), str(e.value)
        assert str(e.value).startswith(f"{key}=") and "\n" not in str(e.value)


def test_capacity_deals_needing_a_new_plant_build():
    """The control for the capacity cases above: the option itself is valid (some of its
    instances need a planned plant, REGION_recipe_new, added to the composed world)."""
    from critmin.config.model import build_model

    cfg = compose(["levers/capacity=allied_deals"])
    _, world, levers = build_model(cfg)
    assert "MYS_separate_ionic_clay_new" in world.facilities
    assert len(levers.capacity_additions) == len(cfg.levers.capacity_additions)
    # the planned plant goes into a copy: the composed config is left as it was
    assert "MYS_separate_ionic_clay_new" not in cfg.world.facilities
    assert build_model(cfg)[1].facilities == world.facilities
