"""Sweep jobs composed through the cache equal Hydra's own composition, Hydra settings included."""

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from hydra.types import RunMode
from omegaconf import OmegaConf

from critmin.config.fastcompose import CachingConfigLoader, ComposeCache
from critmin.config.paths import config_dir, register_all

HYDRA = ["hydra.sweep.dir=/tmp/critmin-test-sweep", "hydra.launcher.n_jobs=1"]
JOBS = [
    ["run.seed=3"],
    ["package=stockpiles", "levers/export_control=licensing_2025"],
    ["package=full", "run.seed=2", "run.replications=5"],
    ["run.replications=5", "levers/export_control=ban_12m", "run.horizon_years=4.5"],
    ["scenario=full_package", "+run.extra_note=hello", "run.timeseries=[price,capacity]"],
    ["world=gallium", "run.seed=7", "scenario=gallium_us_ban_2024"],
]


@pytest.fixture
def loader():
    register_all()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        yield GlobalHydra.instance().config_loader()
    GlobalHydra.instance().clear()


def plain(cfg):
    c = OmegaConf.to_container(cfg, resolve=False)
    c["hydra"]["runtime"].pop("output_dir", None)
    return c


@pytest.mark.parametrize("job", JOBS, ids=[" ".join(j) for j in JOBS])
def test_cached_composition_equals_hydras(loader, job):
    cache = ComposeCache(loader)
    cache.load("config", [*HYDRA, "run.seed=99"], RunMode.RUN)  # a cached base for the plain job
    for _ in range(2):  # the second time from the cache
        fast = cache.load("config", [*HYDRA, *job], RunMode.RUN)
        slow = loader.load_configuration("config", [*HYDRA, *job], RunMode.RUN)
        assert plain(fast) == plain(slow)
        # the copy keeps the schema's types and flags (a wrong type still fails on assignment)
        for node in ("run", "world", "hydra"):
            assert OmegaConf.get_type(fast, node) == OmegaConf.get_type(slow, node)
            assert OmegaConf.is_struct(fast[node]) == OmegaConf.is_struct(slow[node])
            assert OmegaConf.is_readonly(fast[node]) == OmegaConf.is_readonly(slow[node])
        assert list(fast.hydra.overrides.task) == job
        assert fast.hydra.job.override_dirname == slow.hydra.job.override_dirname


def test_a_job_does_not_change_the_cached_base(loader):
    cache = ComposeCache(loader)
    a = cache.load("config", [*HYDRA, "run.seed=1"], RunMode.RUN)
    a.run.replications = 999
    b = cache.load("config", [*HYDRA, "run.seed=2"], RunMode.RUN)
    assert b.run.replications != 999 and b.run.seed == 2 and a.run.seed == 1


def test_a_bad_key_fails_as_in_hydra(loader):
    cache = ComposeCache(loader)
    with pytest.raises(ConfigCompositionException) as fast:
        cache.load("config", [*HYDRA, "run.sed=3"], RunMode.RUN)
    with pytest.raises(ConfigCompositionException) as slow:
        loader.load_configuration("config", [*HYDRA, "run.sed=3"], RunMode.RUN)
    assert str(fast.value) == str(slow.value)


def test_the_launcher_loader_pickles_without_its_compositions(loader):
    import pickle

    wrapped = CachingConfigLoader(loader)
    master = loader.load_configuration("config", HYDRA, RunMode.MULTIRUN)
    job = wrapped.load_sweep_config(master, ["run.seed=4"])
    assert job.run.seed == 4 and wrapped._cache is not None and wrapped._cache.cache
    again = pickle.loads(pickle.dumps(wrapped))
    assert again._cache is None
    assert plain(again.load_sweep_config(master, ["run.seed=4"])) == plain(job)


def test_files_are_loaded_once_and_handed_out_as_copies(loader):
    cache = ComposeCache(loader)
    repo = cache.loader.repository  # the file cache (the loader given is left as it is)
    assert repo is not loader.repository
    first = cache.load("config", [*HYDRA, "package=stockpiles"], RunMode.RUN)
    kept = len(repo.loaded)
    assert kept > 10  # config.yaml, the world, the lever files, Hydra's own ...
    a = repo.load_config("world/rare_earths")
    a.config.name = "changed by a caller"
    b = repo.load_config("world/rare_earths")
    assert b.config.name != "changed by a caller" and len(repo.loaded) == kept
    # another choice of files loads only the files it adds
    second = cache.load("config", [*HYDRA, "package=full"], RunMode.RUN)
    assert len(repo.loaded) > kept
    assert plain(second) == plain(loader.load_configuration("config", [*HYDRA, "package=full"],
                                                            RunMode.RUN))
    assert plain(first) != plain(second)


def test_an_edited_file_is_read_again(tmp_path):
    (tmp_path / "world").mkdir()
    (tmp_path / "config.yaml").write_text("defaults:\n  - world: a\n  - _self_\nx: 1\n")
    (tmp_path / "world" / "a.yaml").write_text("name: first\n")
    (tmp_path / "other").mkdir()  # a second choice of files composes again, world/a included
    for option in ("x", "y", "z", "w"):
        (tmp_path / "other" / f"{option}.yaml").write_text(f"option: {option}\n")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
            cache = ComposeCache(GlobalHydra.instance().config_loader())
            assert cache.load("config", ["+other=x"], RunMode.RUN).world.name == "first"
            (tmp_path / "world" / "a.yaml").write_text("name: second, longer\n")
            assert cache.load("config", ["+other=y"], RunMode.RUN).world.name == "second, longer"
            # the config merged up to other/ is kept now; an edit before it is still seen
            assert cache.load("config", ["+other=z"], RunMode.RUN).world.name == "second, longer"
            assert cache.loader.prefix_hits == 1
            (tmp_path / "world" / "a.yaml").write_text("name: third, longer still\n")
            assert cache.load("config", ["+other=w"], RunMode.RUN).world.name == \
                "third, longer still"
            # jobs differing in plain values share a composition, until one of its files changes
            assert cache.load("config", ["x=5"], RunMode.RUN).x == 5
            (tmp_path / "world" / "a.yaml").write_text("name: fourth, the longest of all\n")
            job = cache.load("config", ["x=6"], RunMode.RUN)
            assert job.x == 6 and job.world.name == "fourth, the longest of all"
    finally:
        GlobalHydra.instance().clear()


def test_group_jobs_start_from_a_shared_merged_prefix_and_equal_hydras(loader):
    """Jobs of a sweep over config groups, in a sweep's order, through one cache: each
    equals Hydra's own composition, and all but two start from a config merged by an earlier
    job."""
    cache = ComposeCache(loader)
    jobs = [[f"package={p}", f"levers/export_control={c}"]
            for p in ("none", "stockpiles", "full") for c in ("none", "ban_12m")]
    jobs += [["package=full", "scenario=full_package"], ["world=gallium"],
             ["world=gallium", "levers/export_control=none"]]
    for job in jobs:
        fast = cache.load("config", [*HYDRA, *job], RunMode.RUN)
        slow = loader.load_configuration("config", [*HYDRA, *job], RunMode.RUN)
        assert plain(fast) == plain(slow), job
        for node in ("run", "world", "levers", "hydra"):
            assert OmegaConf.get_type(fast, node) == OmegaConf.get_type(slow, node)
            assert OmegaConf.is_struct(fast[node]) == OmegaConf.is_struct(slow[node])
    # every job but the first and the first in another world: the config merged up to the
    # end of the world (a large file) is kept at once, before any job leaves that path
    assert cache.loader.prefix_hits == len(jobs) - 2
