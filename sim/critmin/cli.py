"""The `critmin` command.

    critmin run [key=value ...]     simulate one configuration (Hydra overrides)
    critmin --help                  this help

Before a run starts, the config is composed and checked once: any problem
(unknown key, wrong type, value out of range, unknown scenario, a results
folder already used) is reported in one line naming the key, the value and
what is allowed, with exit status 2 and nothing written. `--debug` shows the
Python traceback instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

USAGE = """usage: critmin COMMAND [options] [key=value ...]

commands:
  run      simulate a world with replications; writes tables, plots and a manifest
           into a new folder under results/runs/ (try: critmin run --help)

options for every command:
  --debug  show a Python traceback on errors

Examples:
  critmin run
  critmin run run.horizon_years=10 run.replications=50 run.seed=7
  critmin run --cfg job
"""

HYDRA_FLAGS = {"--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--resolve",
               "--package", "-p", "--shell-completion", "-sc", "--version", "--config-path",
               "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--multirun", "-m",
               "--experimental-rerun"}


class UserError(Exception):
    """A problem with the user's input; the message is one line."""


def _overrides(args: list[str]) -> list[str]:
    """The key=value overrides in `args` (flags and their values are skipped)."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("--cfg", "-c", "--package", "-p", "--info", "-i", "-cp", "-cn", "-cd",
                 "--config-path", "--config-name", "--config-dir", "-sc", "--shell-completion"):
            skip = a not in ("--info", "-i")
            continue
        if a.startswith("-"):
            continue
        out.append(a)
    return out


def check_config(overrides: list[str]) -> None:
    """Compose and build the config once; raise UserError with a one-line message."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from .config.build import ConfigError
    from .config.errors import describe
    from .config.model import build_model
    from .config.paths import config_dir, register_all
    from .results import MANIFEST, TIMESERIES

    register_all()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose("config", overrides=overrides, return_hydra_config=True)
        build_model(cfg)
    except ConfigError as e:
        raise UserError(str(e)) from e
    except Exception as e:  # composition errors from Hydra / OmegaConf
        raise UserError(describe(e, overrides)) from e
    finally:
        GlobalHydra.instance().clear()
    folder = Path(str(cfg.hydra.run.dir))
    if (folder / MANIFEST).exists() or (folder / TIMESERIES).exists():
        raise UserError(
            f"hydra.run.dir={str(folder)!r} already holds a run: critmin never overwrites "
            "results; choose a new folder or remove that one"
        )


def _run(args: list[str], debug: bool) -> int:
    if not (set(args) & HYDRA_FLAGS):
        check_config(_overrides(args))
    from . import app

    sys.argv = [sys.argv[0], *args]
    if debug:
        os.environ["HYDRA_FULL_ERROR"] = "1"
    app.hydra_run()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("CRITMIN_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    cmd, rest = args[0], args[1:]
    # shell completion installed via `critmin run -sc install=bash` calls `critmin -sc query=...`
    if cmd in ("-sc", "--shell-completion"):
        line = os.environ.get("COMP_LINE", "")
        words = line.split(" ", 2)
        if len(words) >= 2 and words[1] == "run":
            os.environ["COMP_LINE"] = " ".join([words[0], *words[2:]])
        cmd, rest = "run", args
    commands = {"run": _run}
    if cmd not in commands:
        print(f"critmin: unknown command {cmd!r}; allowed: {', '.join(commands)} "
              "(see critmin --help)", file=sys.stderr)
        return 2
    try:
        return commands[cmd](rest, debug)
    except UserError as e:
        if debug:
            raise
        print(f"critmin: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        if debug:
            raise
        from .results import RunFolderError

        if isinstance(e, RunFolderError):
            print(f"critmin: error: {e}", file=sys.stderr)
            return 2
        print(f"critmin: internal error: {type(e).__name__}: {e} (rerun with --debug for the "
              "traceback, and please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
