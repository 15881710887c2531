"""Turn Hydra and OmegaConf composition errors into one line for the user.

Names the key, the value given and what is allowed, e.g.
`run.horizn_years='10' is not a config key; allowed keys under run: horizon_years, ...`.
"""

from __future__ import annotations

import re
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from .schema import CritminConfig, WorldConfig


def _chain(exc: BaseException) -> list[BaseException]:
    out, seen = [], set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        out.append(e)
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return out


def _world_keys(parent: str, overrides: list[str]) -> list[str]:
    """The keys under `parent` (world.<mapping>) in the world file the command chose: names
    of facilities, regions, recipes... which the schema leaves open."""
    from .paths import config_dir

    choice = [o.partition("=")[2] for o in overrides if o.partition("=")[0] == "world"]
    defaults = OmegaConf.load(config_dir() / "config.yaml").defaults
    default = next((d["world"] for d in defaults if OmegaConf.is_dict(d) and "world" in d), "")
    node: Any = OmegaConf.load(config_dir() / "world" / f"{(choice or [default])[-1]}.yaml")
    for part in parent.split(".")[1:]:
        node = node[part]
    return [str(k) for k in node.keys()] if OmegaConf.is_dict(node) else []


def _schema_keys(parent: str) -> list[str]:
    """The keys the schema has under `parent` ([] if it leaves them open, or on failure)."""
    try:
        # the world is a config group (missing in the root schema): start at its own schema
        world = parent.split(".")[0] == "world"
        node: Any = OmegaConf.structured(WorldConfig if world else CritminConfig)
        for part in list(filter(None, parent.split(".")))[world:]:
            element = getattr(node._metadata, "element_type", None) if OmegaConf.is_dict(node) else None
            if part in node:
                node = node[part]
            elif isinstance(element, type) and hasattr(element, "__dataclass_fields__"):
                node = OmegaConf.structured(element)  # a named instance of a typed mapping
            else:
                return []
        if OmegaConf.is_dict(node):
            return [str(k) for k in node.keys() if not str(k).startswith("_")]
    except Exception:
        return []
    return []


def _allowed_keys(full_key: str, overrides: list[str] | None = None) -> str:
    """The keys allowed next to `full_key`: the schema's, or for a mapping of named entries
    of the world (facilities, regions...) the names in the chosen world's file (best effort)."""
    parent = full_key.rsplit(".", 1)[0] if "." in full_key else ""
    keys = _schema_keys(parent)
    if keys:
        return f"; allowed keys under {parent or 'the top level'}: {', '.join(keys)}"
    if parent.startswith("world.") and overrides is not None:
        try:
            names = _world_keys(parent, overrides)
        except Exception:  # best effort
            names = []
        if names:
            return f"; {parent} has: {', '.join(names)}"
    return ""


def _value_for(key: str, overrides: list[str], message: str = "") -> str | None:
    """The value given for `key`: the one the error `message` quotes, if it is one of them,
    else the last (a key given twice takes its last value)."""
    given = [o.lstrip("+~").partition("=")[2] for o in overrides
             if o.lstrip("+~").partition("=")[0] == key]
    quoted = re.search(r"Value '(.*?)' of type", message)
    if quoted and quoted.group(1) in given:
        return quoted.group(1)
    return given[-1] if given else None


def describe(exc: BaseException, overrides: list[str]) -> str:
    chain = _chain(exc)
    text = "\n".join(str(e) for e in chain)
    missing = re.search(r"Could not find '([\w/.-]+)/([\w.-]+)'", text)
    if missing:
        group, option = missing.groups()
        opts = re.search(r"Available options in '[\w/]+':\s*((?:\n\t.*)+)", text)
        allowed = ", ".join(o.strip() for o in opts.group(1).strip().splitlines()) if opts else "?"
        return f"{group}={option!r} is not a known {group}; allowed: {allowed}"
    for e in chain:
        if isinstance(e, ConfigKeyError) and getattr(e, "full_key", None):
            key = str(e.full_key)
            value = _value_for(key, overrides)
            shown = f"={value!r}" if value is not None else ""
            return f"{key}{shown} is not a config key (a typo?){_allowed_keys(key, overrides)}"
        if isinstance(e, ValidationError) and "is not a subclass of" in str(e):
            name = str(getattr(e, "full_key", "") or "")
            key = next((o.lstrip("+~").partition("=")[0] for o in overrides
                        if f".{name}" in o.partition("=")[0]), name)
            if key.startswith("uncertain."):
                return (f"{key}: a new uncertain parameter cannot be created on the command line; "
                        "add it in a configs/uncertainty/<name>.yaml option file "
                        "(docs/uncertainty.md), then tune its fields with overrides")
            if key.startswith("levers."):
                return (f"{key}: a new lever instance cannot be created on the command line; add "
                        "it in a scenario file or a configs/levers/<kind>/ option file "
                        "(docs/levers.md), then tune its fields with overrides")
            return (f"{key}: a new entry cannot be created on the command line; add it in a "
                    "config file (a world in configs/world/, a scenario in scenarios/), then "
                    "tune its fields with overrides")
        if isinstance(e, ValidationError) and getattr(e, "full_key", None):
            key = str(e.full_key)
            msg = str(e).splitlines()[0]
            value = _value_for(key, overrides, msg)
            expected = getattr(e, "ref_type", None) or getattr(e, "object_type", None)
            kind = re.search(r"converted to (\w+)|is not a valid (\w+)", msg)
            want = (kind.group(1) or kind.group(2)).lower() if kind \
                else str(expected or "another type")
            shown = repr(value) if value is not None else "the value given"
            article = "an" if want[:1] in "aeiou" else "a"
            return f"{key}={shown} has the wrong type: it must be {article} {want} ({msg})"
        if isinstance(e, OmegaConfBaseException) and getattr(e, "full_key", None):
            key = str(e.full_key)
            if re.search(r"Key '[^']+' (is )?not in", str(e)):
                value = _value_for(key, overrides)
                shown = f"={value!r}" if value is not None else ""
                return f"{key}{shown} is not a config key (a typo?){_allowed_keys(key, overrides)}"
            return f"{key}: {str(e).splitlines()[0]}"
    if "LexerNoViableAltException" in text or "mismatched input" in text or "token recognition" in text:
        bad = next((o for o in overrides if o in text), text.splitlines()[-1].strip())
        return (f"cannot read the override {bad!r}: write key=value; quote values with special "
                "characters, e.g. 'world.trade.transit_days={USA->CHN: 30}'")
    first = next((str(e).splitlines()[0] for e in chain if str(e).strip()), type(exc).__name__)
    parse = re.search(r"Error parsing override '([^']*)'", text)
    if parse:
        return (f"cannot read the override {parse.group(1)!r}: write key=value, "
                "e.g. run.horizon_years=10")
    return first
