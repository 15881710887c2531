"""Where critmin finds its configs and scenarios, and how scenarios join Hydra.

Configs live in `<project>/configs`, scenarios in `<project>/scenarios` (the
project's layout). `CRITMIN_HOME` points to another project folder. Each
`scenarios/<name>.yaml` becomes option `scenario=<name>`; its first comment
line is the question it answers and is recorded as `scenario_question`.
"""

from __future__ import annotations

import os
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from .schema import register


def project_home() -> Path:
    env = os.environ.get("CRITMIN_HOME")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[3]


def config_dir() -> Path:
    return project_home() / "configs"


def scenario_dir() -> Path:
    return project_home() / "scenarios"


def scenario_names() -> list[str]:
    return sorted(p.stem for p in scenario_dir().glob("*.yaml"))


def first_comment(path: Path) -> str:
    for line in path.read_text().splitlines():
        s = line.strip()
        if s.startswith("#"):
            return s.lstrip("#").strip()
        if s:
            break
    return ""


def _job_name(overrides: object) -> str:
    from ..sweep import job_name

    return job_name([str(o) for o in overrides])  # type: ignore[attr-defined]


def _run_name(scenario: str, overrides: object) -> str:
    """A run folder's name: the scenario, and what the command line changed beyond it
    (config groups and values; not run.* settings), as a sweep job's folder is named."""
    from ..sweep import job_name, override_key

    changed = [str(o) for o in overrides  # type: ignore[attr-defined]
               if override_key(str(o)) != "scenario" and not override_key(str(o)).startswith("run.")]
    return scenario if not changed else f"{scenario}_{job_name(changed)}"


_REGISTERED: set[Path] = set()


def register_all() -> None:
    """Register the schema, every scenario file and critmin's resolvers with Hydra (once per
    scenario folder and process: reading the scenario files costs a noticeable time)."""
    if scenario_dir() in _REGISTERED:
        return
    _REGISTERED.add(scenario_dir())
    register()
    # `hydra.sweep.subdir` names each sweep job's folder by its overrides (configs/config.yaml)
    if not OmegaConf.has_resolver("critmin_job_name"):
        OmegaConf.register_new_resolver("critmin_job_name", _job_name)
    # `hydra.run.dir` names a run's folder by its scenario and other overrides
    if not OmegaConf.has_resolver("critmin_run_name"):
        OmegaConf.register_new_resolver("critmin_run_name", _run_name)
    cs = ConfigStore.instance()
    for path in sorted(scenario_dir().glob("*.yaml")):
        node = OmegaConf.load(path)
        if node is None or OmegaConf.is_list(node):
            raise ValueError(f"{path}: a scenario file must hold a mapping of keys")
        node = OmegaConf.merge(
            {"scenario_name": path.stem, "scenario_question": first_comment(path)}, node
        )
        cs.store(group="scenario", name=path.stem, node=node, package="_global_")
