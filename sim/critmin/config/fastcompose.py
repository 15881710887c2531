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
`hydra.overrides` and `hydra.job.override_dirname` as Hydra does. A job so
composed costs ~5 ms. A composition is made again if one of the files it read has
changed size or modification time since, so every job reads its files as they are
when it starts, as with Hydra. tests/test_fastcompose.py checks that the result equals Hydra's own
composition, Hydra settings included.

Jobs that do choose other files (`package=stockpiles`) are composed by Hydra's own
code, through `_PrefixLoader`:
- `_FileCache` keeps each config file as loaded (YAML parsed, as OmegaConf) for the
  next composition in the process, and hands Hydra a copy, made when Hydra first reads
  the config (`_LazyResult`: files merged in a kept prefix are read only for their
  defaults lists). It also spares Hydra's copy of its ConfigStore at every composition
  (ConfigRepository). A file is read again when its size or modification time changes.
- `_PrefixLoader` starts each composition from the configs an earlier one merged
  already (Hydra's settings, the schema, the world, the levers a package shares), and
  merges only the rest.
Measured on a sweep of packages x export controls: 0.25 s per composition with Hydra
alone, 0.15 s with the file cache, 0.065 s with both (the rest is mostly building the
defaults list and merging the export control, package and scenario).

`CachingConfigLoader` is a ConfigLoader for Hydra's launchers (set up by critmin's
sweeper), so each worker process composes each choice of files once.
"""

from __future__ import annotations

import copy
import io
import os
import pickle
import sys
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra._internal.config_repository import (
    CachingConfigRepository,
    ConfigRepository,
    IConfigRepository,
)
from hydra.core.config_loader import ConfigLoader
from hydra.core.default_element import ResultDefault
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import ConfigCompositionException
from hydra.plugins.config_source import ConfigResult, ConfigSource
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, flag_override, open_dict
from omegaconf.errors import OmegaConfBaseException


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
    kept result (Hydra merges and embeds what it loads), its config copied when first read
    (`_LazyResult`). Keyed by the file and the search path; a file is loaded again when its
    size or modification time has changed.
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

    def size(self, key: tuple[Any, ...]) -> int:
        """Bytes of the kept config of a file (by its `_key`); 0 if none is kept."""
        hit = self.loaded.get(key)
        return 0 if hit is None else len(hit[1].data)

    def load_config(self, config_path: str) -> ConfigResult | None:
        key = self._key(config_path)
        if key not in self.loaded:
            ret = super().load_config(config_path)
            self.loaded[key] = None if ret is None else (ret, _Frozen(ret.config))
        hit = self.loaded[key]
        if hit is None:
            return None
        return _LazyResult(*hit)


class _LazyResult(ConfigResult):
    """A copy of a kept ConfigResult whose config is copied from the kept one when it is
    first read. Hydra reads every file of a composition for its defaults list, but merges
    only those after the prefix `_PrefixLoader` starts from: the others need no copy."""

    def __init__(self, kept: ConfigResult, frozen: _Frozen) -> None:  # (not the dataclass's)
        self.provider, self.path = kept.provider, kept.path
        self.header = dict(kept.header)
        self.defaults_list = copy.deepcopy(kept.defaults_list)
        self.is_schema_source = kept.is_schema_source
        self._frozen: _Frozen | None = frozen
        self._config: Any = None

    @property  # type: ignore[override]
    def config(self) -> Any:
        if self._frozen is not None:
            self._config, self._frozen = self._frozen.copy(), None
        return self._config

    @config.setter
    def config(self, value: Any) -> None:
        self._config, self._frozen = value, None


class _Stamps:
    """The config files a composition read, with their size and modification time."""

    def __init__(self, files: _FileCache, stamps: tuple[tuple[Any, ...], ...]) -> None:
        self.files, self.stamps = files, stamps

    def unchanged(self) -> bool:
        return all(self.files._key(s[0]) == s for s in self.stamps)


class _PrefixLoader(ConfigLoaderImpl):
    """Hydra's ConfigLoaderImpl, loading files through a _FileCache and merging each
    composition from the longest part already merged by an earlier one.

    Hydra composes by merging the configs of the defaults list in order, from Hydra's own
    settings through the schema and the world (~0.05 s of merging, a third of a
    composition) to the levers, the package and the scenario. Jobs of a sweep over config
    groups share the start of that list and differ further on. The defaults lists composed
    so far are kept as a tree (`edges`); where a composition leaves it (its first default
    no earlier list had at that place, after the same ones), and right after a large file
    (the world; typed lever instances), the config merged so far is kept (`merged`,
    pickled), and a later composition with the same start copies it and merges only the
    rest. A default is keyed by what Hydra loads it by (path, package,
    primary) and by its file's size and modification time in each config source, so an
    edited file or another search path starts a new branch. Hydra's merging itself is
    unchanged, default by default; tests/test_fastcompose.py checks the results equal
    Hydra's own composition.
    """

    MAX_MERGED = 16  # merged prefixes kept (~60 kB each); the least recently used dropped first
    MIN_SPARED = 3  # a prefix is kept if it is at least this many defaults past the last kept
    LARGE_FILE = 10_000  # a prefix is kept after merging a file this large (bytes, as kept)
    MAX_EDGES = 20_000  # the tree is cleared past this (a prefix is then merged again)

    @classmethod
    def of(cls, loader: ConfigLoaderImpl) -> _PrefixLoader:
        fast = cls.__new__(cls)
        fast.__dict__.update(loader.__dict__)
        fast.repository = _FileCache(loader.repository)
        fast.edges: dict[tuple[int, tuple[Any, ...]], int] = {}
        fast.merged: dict[int, _Frozen] = {}
        fast.prefix_hits = 0  # compositions that started from a merged prefix (tests)
        fast.last_files = None  # the files the last composition read, with their stamps
        return fast

    def _path(self, stamps: list[tuple[Any, ...]], defaults: list[ResultDefault]) -> list[int]:
        """The tree's node after each default (node 0: nothing merged); the nodes a
        composition adds to the tree are numbered after all earlier ones. `stamps`: each
        default's file key (`_FileCache._key`)."""
        nodes = [0]
        for d, stamp in zip(defaults, stamps, strict=True):
            edge = (nodes[-1], (d.config_path, d.package, d.primary, d.is_self, d.parent, stamp))
            node = self.edges.get(edge)
            if node is None:
                node = self.edges[edge] = len(self.edges) + 1
            nodes.append(node)
        return nodes

    def _compose_config_from_defaults_list(self, defaults: list[ResultDefault],
                                           repo: IConfigRepository) -> DictConfig:
        self.last_files = None
        files = getattr(repo, "delegate", None)
        if not isinstance(repo, CachingConfigRepository) or not isinstance(files, _FileCache):
            return super()._compose_config_from_defaults_list(defaults, repo)
        if len(self.edges) > self.MAX_EDGES:
            self.edges.clear()
            self.merged.clear()
        known = len(self.edges)
        stamps = [files._key(str(d.config_path)) for d in defaults]
        self.last_files = _Stamps(files, tuple(stamps))
        nodes = self._path(stamps, defaults)
        # where this list leaves the tree (nodes[branch] is the last node an earlier list
        # reached too): the config merged up to there is worth keeping
        branch = next((i - 1 for i in range(1, len(nodes)) if nodes[i] > known), None)
        start = max((i for i in range(len(nodes)) if nodes[i] in self.merged), default=0)
        if start:
            prefix = self.merged.pop(nodes[start])
            self.merged[nodes[start]] = prefix  # (now the most recently used)
            cfg = prefix.copy()
            self.prefix_hits += 1
        else:
            cfg = OmegaConf.create()
        last_kept = start
        for i in range(start, len(defaults)):
            # kept where this composition leaves the tree, if that spares a later one
            # several merges (a copy costs ~4 ms to make, a merge after the world ~1.3 ms)
            if i == branch and i - last_kept >= self.MIN_SPARED:
                self._keep(nodes[i], cfg)
                last_kept = i
            default = defaults[i]
            loaded = self._load_single_config(default=default, repo=repo)
            # as ConfigLoaderImpl._compose_config_from_defaults_list, one default at a time
            # (so no merged prefix keeps the flag)
            with flag_override(cfg, "no_deepcopy_set_nodes", True):
                try:
                    cfg.merge_with(loaded.config)
                except OmegaConfBaseException as e:
                    raise ConfigCompositionException(
                        f"In '{default.config_path}': {type(e).__name__} raised while"
                        f" composing config:\n{e}"
                    ).with_traceback(sys.exc_info()[2]) from e
            # and after a large file, if several defaults follow: the first composition
            # cannot know where later ones will leave its path, but they will not want to
            # merge it again (the world: 38 kB kept, ~40 ms to merge; typed lever instances,
            # levers/capacity/allied_deals: 16 kB, ~19 ms; keeping costs ~4 ms)
            if files.size(stamps[i]) >= self.LARGE_FILE and \
                    len(defaults) - (i + 1) >= self.MIN_SPARED:
                self._keep(nodes[i + 1], cfg)
                last_kept = i + 1
        _strip_defaults(cfg)
        return cfg

    def _keep(self, node: int, cfg: DictConfig) -> None:
        """Keep the config merged up to `node` (unless kept already)."""
        if node in self.merged:
            return
        if len(self.merged) >= self.MAX_MERGED:
            self.merged.pop(next(iter(self.merged)))
        self.merged[node] = _Frozen(cfg)


def _strip_defaults(cfg: Any) -> None:
    """Remove the defaults lists left in the composed config (Hydra's own step, from
    ConfigLoaderImpl._compose_config_from_defaults_list, where it is a local function).
    Hydra lifts `readonly` and `struct` on every node before it looks at the flag; here only
    on the nodes that have it (the flag is not one of those two, so it reads the same), as
    lifting them costs more than the rest of the walk (~3 ms per composition)."""
    if isinstance(cfg, DictConfig):
        if cfg._is_missing() or cfg._is_none():
            return
        if cfg._get_flag("HYDRA_REMOVE_TOP_LEVEL_DEFAULTS"):
            with flag_override(cfg, ["readonly", "struct"], False):
                cfg._set_flag("HYDRA_REMOVE_TOP_LEVEL_DEFAULTS", None)
                cfg.pop("defaults", None)
        for _key, value in cfg.items_ex(resolve=False):
            _strip_defaults(value)


def _fast_loader(loader: ConfigLoader) -> ConfigLoader:
    """`loader` as a _PrefixLoader (a copy: `loader` itself is left as it is); `loader` as it
    is if it is not Hydra's ConfigLoaderImpl."""
    if type(loader) is not ConfigLoaderImpl or \
            type(getattr(loader, "repository", None)) is not ConfigRepository:
        return loader
    return _PrefixLoader.of(loader)


class ComposeCache:
    """Compositions keyed by the overrides that select config files."""

    def __init__(self, loader: ConfigLoader, size: int = 64) -> None:
        self.loader = _fast_loader(loader)
        self.size = size  # compositions kept (each ~0.3 MB pickled); oldest dropped first
        self.cache: dict[tuple[Any, ...], tuple[_Frozen, _Stamps | None]] = {}
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
        hit = self.cache.get(key)
        if hit is None or (hit[1] is not None and not hit[1].unchanged()):
            # (composed again if one of its files was edited since, as Hydra would read it)
            self.cache.pop(key, None)
            cfg = self.loader.load_configuration(config_name, files, run_mode)
            if len(self.cache) >= self.size:
                self.cache.pop(next(iter(self.cache)))
            # kept as it is now; this job takes the composition itself, later ones a copy
            self.cache[key] = (_Frozen(cfg), getattr(self.loader, "last_files", None))
        else:
            cfg = hit[0].copy()
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

