"""Compose the jobs of a sweep without composing each one from its files.

Hydra composes every job from scratch: it reads the YAML files, builds the defaults
tree and merges ~20 configs, about 0.25 s with critmin's world config, which is a
quarter of a 20-replication job's simulation (benchmarks/bench.py). Most jobs of a
sweep differ from each other only in plain values (`run.seed=3`,
`levers.tariff.us_magnets.rate=0.5`), not in which config files they select.

`ComposeCache` composes each distinct choice of config files (config groups,
Hydra's own settings) once per process, and applies the plain values to a copy the
way Hydra applies command-line values after composition
(`ConfigLoaderImpl._apply_overrides_to_config`), then records the overrides in
`hydra.overrides` and `hydra.job.override_dirname` as Hydra does. A copy costs
~0.01 s. tests/test_fastcompose.py checks that the result equals Hydra's own
composition, Hydra settings included.

Jobs that do choose other files (`package=stockpiles`) are composed by Hydra, but
through `_FileCache`, which keeps each config file as loaded (YAML parsed, as OmegaConf)
for the next composition in the process, and hands Hydra a copy. It also spares
Hydra's copy of its ConfigStore at every composition (ConfigRepository). Together
~0.06 s of the ~0.2 s a composition costs (the rest is OmegaConf merging). A file is
read again when its size or modification time changes.

`CachingConfigLoader` is a ConfigLoader for Hydra's launchers (set up by critmin's
sweeper), so each worker process composes each choice of files once.
"""

from __future__ import annotations

import copy
import io
import os
import pickle
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra._internal.config_repository import ConfigRepository
from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.plugins.config_source import ConfigResult, ConfigSource
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict


class _Frozen:
    """A composed config kept as pickle bytes, to make copies fast (3 ms, where copy.deepcopy
    takes 13 ms with the world config). Classes (the schema's dataclasses, Hydra plugins'
    configs) are kept by reference, not looked up by name: Hydra's plugin discovery can
    import a plugin module twice, and pickle would then refuse its config class."""

    def __init__(self, cfg: DictConfig) -> None:
        self.classes: list[type] = []
        buf = io.BytesIO()
        pickler = pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
        pickler.persistent_id = self._class_id  # type: ignore[method-assign]
        pickler.dump(cfg)
        self.data = buf.getvalue()

    def _class_id(self, obj: Any) -> int | None:
        if isinstance(obj, type):
            self.classes.append(obj)
            return len(self.classes) - 1
        return None

    def copy(self) -> DictConfig:
        unpickler = pickle.Unpickler(io.BytesIO(self.data))
        unpickler.persistent_load = self.classes.__getitem__  # type: ignore[assignment]
        return unpickler.load()


class _FileCache(ConfigRepository):
    """Hydra's ConfigRepository, keeping every config file it loads for later compositions.

    Hydra makes a fresh repository for each composition (a deep copy of this one, in
    ConfigLoaderImpl) and loads each file again. This one is copied shallowly: the copies
    share `loaded`, and Hydra's ConfigStore is not copied. Each load returns a copy of the
    kept result (Hydra merges and embeds what it loads). Keyed by the file and the search
    path; a file is loaded again when its size or modification time has changed.
    """

    def __init__(self, delegate: ConfigRepository) -> None:
        # (not super().__init__, which builds the sources from a search path: these are
        # the delegate's; initialize_sources, inherited, sets a new list, so copies stay apart)
        self.sources = list(delegate.sources)
        self.loaded: dict[tuple[Any, ...], tuple[ConfigResult, _Frozen] | None] = {}

    def __deepcopy__(self, memo: dict[int, Any]) -> _FileCache:
        new = copy.copy(self)
        new.sources = list(self.sources)
        return new

    def _key(self, config_path: str) -> tuple[Any, ...]:
        stamps = []
        for src in self.sources:
            where = (src.scheme(), src.path)
            if where[0] == "file":  # (not isinstance: Hydra's plugin scan can import the class twice)
                name = os.path.join(src.path, ConfigSource._normalize_file_name(config_path))
                try:
                    st = os.stat(name)
                    where += (st.st_size, st.st_mtime_ns)
                except OSError:
                    where += (None,)
            stamps.append(where)
        return (config_path, tuple(stamps))

    def load_config(self, config_path: str) -> ConfigResult | None:
        key = self._key(config_path)
        if key not in self.loaded:
            ret = super().load_config(config_path)
            self.loaded[key] = None if ret is None else (ret, _Frozen(ret.config))
        hit = self.loaded[key]
        if hit is None:
            return None
        kept, frozen = hit
        out = copy.copy(kept)
        out.config = frozen.copy()
        out.header = dict(kept.header)
        out.defaults_list = copy.deepcopy(kept.defaults_list)
        return out


def _file_caching(loader: ConfigLoader) -> ConfigLoader:
    """`loader` composing through a _FileCache (a copy: `loader` itself is left as it is);
    `loader` as it is if it is not Hydra's ConfigLoaderImpl."""
    if not isinstance(loader, ConfigLoaderImpl) or \
            type(getattr(loader, "repository", None)) is not ConfigRepository:
        return loader
    fast = copy.copy(loader)
    fast.repository = _FileCache(loader.repository)
    return fast


class ComposeCache:
    """Compositions keyed by the overrides that select config files."""

    def __init__(self, loader: ConfigLoader, size: int = 64) -> None:
        self.loader = _file_caching(loader)
        self.size = size  # compositions kept (each ~0.3 MB pickled); oldest dropped first
        self.cache: dict[tuple[Any, ...], _Frozen] = {}
        self.parser = OverridesParser.create()

    def _is_value(self, o: Override) -> bool:
        """A plain config value (applied after composition), not a choice of config files."""
        if o.is_hydra_override() or o.package is not None:
            return False
        key = o.key_or_group
        repo = getattr(self.loader, "repository", None)
        if repo is None:  # an unknown loader: compose everything the slow, sure way
            return False
        return not repo.group_exists(key)

    def load(self, config_name: str | None, overrides: list[str], run_mode: RunMode
             ) -> DictConfig:
        parsed = self.parser.parse_overrides(overrides=overrides)
        values = [o for o in parsed if self._is_value(o)]
        files = [o.input_line for o in parsed if not self._is_value(o)]
        key = (config_name, run_mode, tuple(files))
        base = self.cache.get(key)
        if base is None:
            base = _Frozen(self.loader.load_configuration(config_name, files, run_mode))
            if len(self.cache) >= self.size:
                self.cache.pop(next(iter(self.cache)))
            self.cache[key] = base
        cfg = base.copy()
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        # Hydra's record of the overrides, in the order given (as load_configuration does)
        task = [o for o in parsed if not o.is_hydra_override()]
        with open_dict(cfg.hydra):
            cfg.hydra.overrides.task = [o.input_line for o in task]
            cfg.hydra.overrides.hydra = [o.input_line for o in parsed if o.is_hydra_override()]
            conf = cfg.hydra.job.config.override_dirname
            cfg.hydra.job.override_dirname = get_overrides_dirname(
                overrides=task, kv_sep=conf.kv_sep, item_sep=conf.item_sep,
                exclude_keys=conf.exclude_keys)
        return cfg


class CachingConfigLoader(ConfigLoader):
    """Hydra's config loader, with `load_sweep_config` going through a ComposeCache."""

    def __init__(self, delegate: ConfigLoader) -> None:
        self.delegate = delegate
        self._cache: ComposeCache | None = None

    def __getstate__(self) -> dict[str, Any]:  # sent to launcher workers without compositions
        return {"delegate": self.delegate, "_cache": None}

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]
                          ) -> DictConfig:
        # as ConfigLoaderImpl.load_sweep_config, composing through the cache
        if self._cache is None:
            self._cache = ComposeCache(self.delegate)
        hydra_overrides = OmegaConf.to_container(master_config.hydra.overrides.hydra)
        assert isinstance(hydra_overrides, list)
        cfg = self._cache.load(master_config.hydra.job.config_name,
                               [*hydra_overrides, *sweep_overrides], RunMode.RUN)
        OmegaConf.copy_cache(from_config=master_config, to_config=cfg)
        return cfg

    def load_configuration(self, config_name: str | None, overrides: list[str],
                           run_mode: RunMode, from_shell: bool = True,
                           validate_sweep_overrides: bool = True) -> DictConfig:
        return self.delegate.load_configuration(config_name, overrides, run_mode, from_shell,
                                                validate_sweep_overrides)

    def get_search_path(self) -> Any:
        return self.delegate.get_search_path()

    def get_sources(self) -> list[Any]:
        return self.delegate.get_sources()

    def list_groups(self, parent_name: str) -> list[str]:
        return self.delegate.list_groups(parent_name)

    def get_group_options(self, group_name: str, *args: Any, **kwargs: Any) -> list[str]:
        return self.delegate.get_group_options(group_name, *args, **kwargs)

    def compute_defaults_list(self, config_name: str | None, overrides: list[str],
                              run_mode: RunMode) -> Any:
        return self.delegate.compute_defaults_list(config_name, overrides, run_mode)

