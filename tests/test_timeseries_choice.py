"""run.timeseries: a run writes the series chosen, its KPIs do not depend on the choice."""

import pandas as pd
import pytest

from critmin.app import run_job
from critmin.cli import UserError, compose
from critmin.series import PRESETS

SMALL = ["run.replications=3", "run.horizon_years=2", "run.plots=false", "run.progress=false",
         "scenario=full_package"]


def run(tmp_path, choice):
    folder = tmp_path / str(choice)
    run_job(compose([*SMALL, f"run.timeseries={choice}"]), folder)
    return (pd.read_parquet(folder / "timeseries.parquet"),
            pd.read_csv(folder / "kpis.csv"))


def test_each_choice_writes_its_series_and_the_same_kpis(tmp_path):
    full, kpis = run(tmp_path, "all")
    assert {"stockpile_level", "tariff_revenue", "supply_by_origin", "capacity"} <= set(full.variable)
    lean, lean_kpis = run(tmp_path, "compare")
    assert set(lean.variable) == set(PRESETS["compare"])
    # the rows kept are exactly the full run's rows of those series
    want = full[full.variable.isin(PRESETS["compare"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(lean.reset_index(drop=True), want, check_categorical=False)
    picked, _ = run(tmp_path, "[price,stockpile_level]")
    assert set(picked.variable) == {"price", "stockpile_level"}
    none, none_kpis = run(tmp_path, "none")
    assert len(none) == 0 and list(none.columns) == list(full.columns)
    pd.testing.assert_frame_equal(kpis, lean_kpis)
    pd.testing.assert_frame_equal(kpis, none_kpis)


@pytest.mark.parametrize("choice, message", [
    ("some", "run.timeseries='some' is not allowed: must be one of all, compare, none"),
    ("[price,prices]", "run.timeseries='prices' is not allowed: not a series; the series are"),
])
def test_a_bad_choice_is_named_in_one_line(choice, message):
    with pytest.raises(UserError) as e:
        compose([f"run.timeseries={choice}"])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_supply_by_origin_means_count_missing_routes_as_zero():
    from critmin.plots import mean_supply_by_origin

    # replication 0's batch had no flow on JPN->USA (no rows); replication 1 shipped 10 t
    ts = pd.DataFrame({
        "replication": [0, 1, 0, 1], "date": ["2025-01-01"] * 4,
        "region": ["USA"] * 4, "origin": ["CHN", "CHN", "USA", "JPN"],
        "product": ["magnet"] * 4, "variable": ["supply_by_origin"] * 4,
        "value": [4.0, 6.0, 2.0, 10.0]})
    mean = mean_supply_by_origin(ts, "magnet").set_index("origin")["value"]
    assert mean.to_dict() == {"CHN": 5.0, "JPN": 5.0, "USA": 1.0}


def test_compare_says_in_one_line_when_jobs_kept_no_series(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]

    def critmin(*args):
        return subprocess.run([sys.executable, "-m", "critmin.cli", *args], cwd=tmp_path,
                              env={**os.environ, "CRITMIN_HOME": str(root)},
                              capture_output=True, text=True, timeout=600)

    p = critmin("sweep", "run.seed=1,2", "run.replications=2", "run.horizon_years=1",
                "run.timeseries=none", "--dir", "s", "--no-progress")
    assert p.returncode == 0, p.stderr
    p = critmin("compare", "s")
    assert p.returncode == 2
    assert "wrote no price series" in p.stderr and "run.timeseries=compare or all" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_each_row_group_holds_one_variable_and_says_which(tmp_path):
    """Readers filtering on a variable (critmin compare) skip the other row groups."""
    import pyarrow.parquet as pq

    folder = tmp_path / "run"
    run_job(compose([*SMALL, "run.timeseries=compare"]), folder)
    meta = pq.ParquetFile(folder / "timeseries.parquet").metadata
    names = meta.schema.names
    seen = set()
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(names.index("variable")).statistics
        assert stats is not None and stats.has_min_max and stats.min == stats.max
        seen.add(stats.min)
    assert seen == set(PRESETS["compare"])
    # every column is required (no null markers to write), and none holds a null
    table = pq.read_table(folder / "timeseries.parquet")
    assert not any(f.nullable for f in table.schema)
    assert all(table[c].null_count == 0 for c in table.column_names)


def test_region_flows_have_rows_only_where_the_world_allows_them():
    """A region-product series gets rows only in the cells the world lets be non-zero (a plant
    makes or uses the product there, or an end use buys it; imports where it is used, exports
    where it is made); every cell left out is zero in the run, and a non-zero one would stop
    the writing."""
    import numpy as np

    from critmin.config.model import build_model
    from critmin.core.invariants import InvariantError
    from critmin.results import VARIABLES, possible_cells, timeseries_tables
    from critmin.runner import simulate

    spec, world, levers = build_model(compose(SMALL))
    res = next(iter(simulate(world, spec, None, levers)))
    cells = possible_cells(world)
    names = {name for name, _ in VARIABLES.values()} | {"imports", "exports"}
    tables = {t["variable"][0].as_py(): t for t in timeseries_tables(world, res, levers)
              if t.num_rows and t["variable"][0].as_py() in names
              and t["sector"][0].as_py() == ""}
    R, MT, N, K = res.production.shape
    foreign = res.shipments.copy()  # imports and exports: shipments between regions
    foreign[:, :, np.arange(N), np.arange(N), :] = 0.0
    series = {field: (name, getattr(res, field)) for field, (name, _) in VARIABLES.items()}
    series |= {"imports": ("imports", foreign.sum(3)), "exports": ("exports", foreign.sum(2))}
    for field, (name, values) in series.items():
        keep = cells[field]
        assert not values[:, :, ~keep].any(), f"{name}: a cell left out is not zero"
        table = tables[name]
        assert table.num_rows == R * MT * keep.sum()
        got = set(zip(table["region"].to_pylist(), table["product"].to_pylist(), strict=True))
        assert got == {(world.regions[n], world.products[k]) for n, k in zip(*np.nonzero(keep),
                                                                             strict=True)}
    assert not cells["consumption"].all() and not cells["inventory"].all()
    assert cells["inventory"].sum() > cells["imports"].sum() > 0 and cells["exports"].any()
    # end use of magnets only where a sector buys them; no end use of ore anywhere
    end = cells["consumption"]
    assert end[:, world.product_index("magnet")].any()
    assert not end[:, world.product_index("conc_light")].any()
    # a non-zero value in a cell left out stops the writing, naming it
    res.consumption[0, 0, 0, world.product_index("conc_light")] = 1.0
    with pytest.raises(InvariantError, match=f"consumption is non-zero in {world.regions[0]} "
                                             "conc_light"):
        list(timeseries_tables(world, res, levers))


def test_shipments_are_recorded_only_for_the_series_made_from_them():
    import dataclasses

    import numpy as np

    from critmin.config.model import build_model
    from critmin.results import timeseries_tables
    from critmin.runner import simulate

    def batch(choice):
        spec, world, levers = build_model(compose([*SMALL, f"run.timeseries={choice}"]))
        return world, levers, spec, next(iter(simulate(world, spec, None, levers)))

    world, levers, spec, full = batch("all")
    for choice in ("compare", "[price,stockpile_level]", "none"):
        _, _, _, lean = batch(choice)
        assert lean.shipments is None
        for f in dataclasses.fields(full):  # the run is otherwise the same, bit for bit
            a, b = getattr(full, f.name), getattr(lean, f.name)
            if f.name == "shipments" or a is None:
                continue
            if isinstance(a, dict):
                assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
            else:
                assert np.array_equal(a, b), f.name
    for choice in ("[imports]", "[exports]", "[supply_by_origin]"):
        assert batch(choice)[3].shipments is not None
    with pytest.raises(ValueError, match="record_shipments"):
        list(timeseries_tables(world, dataclasses.replace(full, shipments=None), levers,
                               frozenset({"imports"})))


def test_trade_series_add_up_the_shipments_and_leave_them_as_they_were():
    """imports: what a region receives from other regions; exports: what it sends to them;
    supply by origin: every route, the domestic one included. Building them does not change
    the batch's shipments (imports and exports zero the domestic routes for a moment)."""
    import numpy as np

    from critmin.config.model import build_model
    from critmin.results import possible_cells, timeseries_tables
    from critmin.runner import simulate

    spec, world, levers = build_model(compose(SMALL))
    res = next(iter(simulate(world, spec, None, levers)))
    ship = res.shipments.copy()  # R, MT, dest, origin, K
    assert np.einsum("rmiik->rmik", ship).any(), "the test needs domestic shipments"
    tables = {t["variable"][0].as_py(): t.to_pandas()
              for t in timeseries_tables(world, res, levers,
                                         frozenset({"imports", "exports", "supply_by_origin"}))}
    assert np.array_equal(res.shipments, ship)
    N = world.n_regions
    foreign = ship * (1 - np.eye(N))[None, None, :, :, None]
    R, MT = ship.shape[:2]
    cells = possible_cells(world)
    for name, want in (("imports", foreign.sum(3)), ("exports", foreign.sum(2))):
        keep = cells[name]  # rows only where the world lets trade be (the other cells are 0)
        got = tables[name]["value"].to_numpy().reshape(R, MT, keep.sum())
        np.testing.assert_allclose(got, want[:, :, keep], rtol=1e-12, atol=0, err_msg=name)
        assert not want[:, :, ~keep].any() and want[:, :, keep].any()
    by_origin = tables["supply_by_origin"]
    assert by_origin["value"].sum() == pytest.approx(ship.sum(), rel=1e-12)
    home = by_origin[by_origin["region"] == by_origin["origin"]]
    assert home["value"].sum() == pytest.approx(np.einsum("rmiik->", ship), rel=1e-12)


def test_by_default_a_run_writes_every_series_and_a_sweep_job_compares_only(tmp_path):
    cfg = compose([*SMALL])
    assert cfg.run.timeseries is None  # the default
    run_job(cfg, tmp_path / "run")
    run_job(compose([*SMALL]), tmp_path / "job", in_sweep=True)
    ran = set(pd.read_parquet(tmp_path / "run" / "timeseries.parquet").variable)
    job = set(pd.read_parquet(tmp_path / "job" / "timeseries.parquet").variable)
    assert {"stockpile_level", "supply_by_origin", "capacity"} <= ran
    assert job == set(PRESETS["compare"])
    run_job(compose([*SMALL, "run.timeseries=all"]), tmp_path / "all_job", in_sweep=True)
    assert set(pd.read_parquet(tmp_path / "all_job" / "timeseries.parquet").variable) == ran
