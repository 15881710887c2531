"""Uncertain parameters: declared in config, drawn per replication by Latin hypercube.

    uncertain:
      ev_price_elasticity:                        # a name of your choice
        key: world.demand.sectors.ev.price_elasticity
        dist: uniform                             # uniform | triangular | normal | lognormal | choice
        low: 0.02
        high: 0.10
        source: "ASSUMPTION: ..."

Replication r of a run gets row r of a Latin hypercube of the unit cube (one
stratum per replication on every parameter, scipy.stats.qmc), seeded from
`run.seed`, mapped through each distribution's quantile function. So the draws
are reproducible, and every job of a sweep (same seed) gets the same draws.
The values are written with the results (`parameters.csv`).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from .build import ConfigError

DISTS = {
    "uniform": ("low", "high"),
    "triangular": ("low", "mode", "high"),
    "normal": ("mean", "sd"),
    "lognormal": ("median", "sd_log"),
    "choice": ("values",),
}
LHS_STREAM = 0x5EED_1A7E  # keeps the hypercube's seed apart from the model's streams


@dataclass(frozen=True)
class UncertainParam:
    name: str
    key: str
    dist: str
    args: dict[str, Any]
    source: str

    def quantile(self, u: np.ndarray) -> np.ndarray:
        """Values at probabilities `u` in [0, 1)."""
        from scipy import stats  # here, not at import: scipy.stats takes 0.5 s to import

        a = self.args
        if self.dist == "uniform":
            return a["low"] + u * (a["high"] - a["low"])
        if self.dist == "triangular":
            c = (a["mode"] - a["low"]) / (a["high"] - a["low"])
            return stats.triang.ppf(u, c, loc=a["low"], scale=a["high"] - a["low"])
        if self.dist == "normal":
            lo = -np.inf if a.get("low") is None else (a["low"] - a["mean"]) / a["sd"]
            hi = np.inf if a.get("high") is None else (a["high"] - a["mean"]) / a["sd"]
            return stats.truncnorm.ppf(u, lo, hi, loc=a["mean"], scale=a["sd"])
        if self.dist == "lognormal":
            return a["median"] * np.exp(a["sd_log"] * stats.norm.ppf(u))
        values = np.asarray(a["values"], dtype=float)
        w = np.asarray(a["weights"] or [1.0] * len(values), dtype=float)
        edges = np.cumsum(w / w.sum())
        return values[np.minimum(np.searchsorted(edges, u, side="right"), len(values) - 1)]


def _num(v: Any, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(key, v, "must be a number")
    return float(v)


def parse_uncertain(cfg: Any) -> list[UncertainParam]:
    """Check `cfg.uncertain` against the config it perturbs; raise ConfigError in one line."""
    spec = OmegaConf.select(cfg, "uncertain", default=None) or {}
    out = []
    for name, u in spec.items():
        base = f"uncertain.{name}"
        key = str(u.key)
        if key.startswith(("uncertain.", "run.")):
            raise ConfigError(f"{base}.key", key, "must be a model parameter (world.* or levers.*)")
        worlds = [str(w) for w in (u.get("worlds") or [])]
        if worlds and str(cfg.world.name) not in worlds:
            continue  # a range sourced for other worlds (e.g. rare-earth demand growth)
        current = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if current is None and u.skip_if_absent:
            continue
        if isinstance(current, bool) or not isinstance(current, (int, float)):
            raise ConfigError(f"{base}.key", key, "must name a number in the config "
                              "(e.g. world.demand.growth_per_year; see critmin run --cfg job)")
        if u.dist not in DISTS:
            raise ConfigError(f"{base}.dist", u.dist, f"must be one of {', '.join(DISTS)}")
        args: dict[str, Any] = {}
        if u.dist == "choice":
            vals = list(u["values"])
            if not vals:
                raise ConfigError(f"{base}.values", vals, "list at least one value")
            args["values"] = [_num(v, f"{base}.values") for v in vals]
            args["weights"] = [_num(w, f"{base}.weights") for w in u.weights]
            if args["weights"] and (len(args["weights"]) != len(vals)
                                    or min(args["weights"]) < 0 or sum(args["weights"]) <= 0):
                raise ConfigError(f"{base}.weights", args["weights"],
                                  "one non-negative weight per value, not all zero")
        else:
            for f in DISTS[u.dist]:
                if u[f] is None:
                    raise ConfigError(f"{base}.{f}", None, f"a {u.dist} distribution needs "
                                      + ", ".join(DISTS[u.dist]))
                args[f] = _num(u[f], f"{base}.{f}")
            if u.dist == "normal":
                for f in ("low", "high"):
                    args[f] = None if u[f] is None else _num(u[f], f"{base}.{f}")
                if args["sd"] <= 0:
                    raise ConfigError(f"{base}.sd", args["sd"], "must be > 0")
            if u.dist == "lognormal" and (args["median"] <= 0 or args["sd_log"] <= 0):
                raise ConfigError(f"{base}.median", args["median"], "median and sd_log must be > 0")
            if u.dist in ("uniform", "triangular") and not args["low"] < args["high"]:
                raise ConfigError(f"{base}.high", args["high"], f"must be > low ({args['low']})")
            if u.dist == "triangular" and not args["low"] <= args["mode"] <= args["high"]:
                raise ConfigError(f"{base}.mode", args["mode"], "must be between low and high")
        out.append(UncertainParam(str(name), key, str(u.dist), args, str(u.source)))
    return out


def latin_hypercube(n_params: int, replications: int, seed: int) -> np.ndarray:
    """[replications, n_params] points in [0, 1): one per stratum 1/replications per axis."""
    if n_params == 0:
        return np.zeros((replications, 0))
    from scipy.stats import qmc

    sampler = qmc.LatinHypercube(d=n_params, seed=np.random.default_rng([seed, LHS_STREAM]))
    return sampler.random(replications)


def draw(params: list[UncertainParam], replications: int, seed: int) -> np.ndarray:
    """[replications, params] values: the Latin hypercube mapped through each distribution."""
    u = latin_hypercube(len(params), replications, seed)
    return np.column_stack([p.quantile(u[:, j]) for j, p in enumerate(params)]) if params \
        else u


def with_values(cfg: Any, params: list[UncertainParam], values: np.ndarray,
                in_place: bool = False) -> Any:
    """A copy of `cfg` with each parameter's key set to its value (the original is untouched).

    `in_place` sets them in `cfg` itself: for a working copy that every replication
    overwrites (all of its keys each time), saving a copy of the config per replication."""
    out = cfg if in_place else copy.deepcopy(cfg)
    for p, v in zip(params, values, strict=True):
        current = OmegaConf.select(out, p.key)
        whole = isinstance(current, int) and not isinstance(current, bool)
        OmegaConf.update(out, p.key, int(round(float(v))) if whole else float(v), force_add=False)
    return out


def ranges_key(cfg: Any) -> str:
    """A digest of what `check_ranges` depends on: the world, the levers, the uncertain
    parameters and the calendar; not the seed, the replications or the output settings,
    so the jobs of a sweep over those share one check."""
    part: dict[str, Any] = {
        k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
        for k in ("world", "levers", "uncertain") if k in cfg}
    part["calendar"] = [str(cfg.run.start_date), float(cfg.run.horizon_years),
                        int(cfg.run.tick_days)]
    return hashlib.sha256(json.dumps(part, sort_keys=True, default=str).encode()).hexdigest()


def check_ranges(cfg: Any, params: list[UncertainParam], build: Any,
                 checked: set[str] | None = None) -> None:
    """Build the model at each parameter's extremes (0.1 % and 99.9 % quantiles, the others at
    their medians), so a range that allows bad values fails before anything runs.

    With `checked` (a set kept by the caller), a config whose `ranges_key` passed before is
    not built again: 2 builds per parameter are ~0.4 s for each job a sweep plans."""
    if not params:
        return
    key = ranges_key(cfg) if checked is not None else None
    if checked is not None and key in checked:
        return
    mid = np.array([p.quantile(np.array([0.5]))[0] for p in params])
    for j, p in enumerate(params):
        for q in (0.001, 0.999):
            values = mid.copy()
            values[j] = p.quantile(np.array([q]))[0]
            try:
                build(with_values(cfg, params, values))
            except ConfigError as e:
                # the value refused may be another parameter's (at its median), not p's
                i = next((i for i, q in enumerate(params) if q.key == e.key), j)
                q = params[i]
                raise ConfigError(f"uncertain.{q.name}", f"{q.dist} range of {q.key}",
                                  f"it reaches {q.key}={values[i]:.6g}, where {e.allowed}") from e
    if checked is not None and key is not None:
        checked.add(key)
