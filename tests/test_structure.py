"""Project rules: a pure model core, configs that are data, every scenario runs."""

import ast
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from critmin.app import run_job
from critmin.config.paths import config_dir, first_comment, register_all, scenario_dir

SIM = Path(__file__).resolve().parents[1] / "sim" / "critmin"
ALLOWED_IN_CORE = {"numpy", "scipy", "simpy", "__future__", "dataclasses", "collections", "zlib",
                   "datetime", "math", "typing", "itertools", "functools"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            mods.add(node.module.split(".")[0])
    return mods


@pytest.mark.parametrize("path", sorted((SIM / "core").glob("*.py")), ids=lambda p: p.name)
def test_model_core_imports_only_stdlib_numpy_scipy_simpy(path):
    assert imports_of(path) <= ALLOWED_IN_CORE, imports_of(path) - ALLOWED_IN_CORE


def test_configs_cannot_run_code():
    """No instantiate/eval/exec anywhere: a config is data and can never call code."""
    for path in SIM.rglob("*.py"):
        text = path.read_text()
        for banned in ("instantiate(", "eval(", "exec(", "import_module(", "__import__("):
            assert banned not in text, f"{path.name} uses {banned}"


SCENARIOS = sorted(p.stem for p in scenario_dir().glob("*.yaml"))


def test_every_scenario_opens_with_its_question():
    for name in SCENARIOS:
        q = first_comment(scenario_dir() / f"{name}.yaml")
        assert q.endswith("?"), f"scenarios/{name}.yaml must open with a one-line question"


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_scenario_runs_on_a_short_horizon(name, tmp_path):
    register_all()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[f"scenario={name}", "run.horizon_years=1",
                                           "run.replications=2", "run.progress=false",
                                           "run.plots=false"])
    summary = run_job(cfg, tmp_path / name)
    assert summary["scenario"] == name
    assert (tmp_path / name / "manifest.json").exists()
