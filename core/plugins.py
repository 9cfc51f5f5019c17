"""Plugins: a user's package registers models, datasets, treatments, protocols and target kinds
without editing the harness (the eva / THUNDER idea).

A plugin is a module whose import runs the registration decorators. It is found in two ways:

- an entry point in the group ``wbc_bench.plugins`` of an installed package's ``pyproject.toml``
  (``[project.entry-points."wbc_bench.plugins"] mylab = "mylab.wbc"``);
- ``$WBC_PLUGINS`` (comma-separated module names), which ``--plugin`` extends; spawned worker
  processes inherit the environment, so every process loads the same plugins.

Every registry loads the plugins before it answers (:class:`core.registry.Registry`), after its
built-ins, so a plugin that reuses a built-in name fails with both modules named.
"""
from __future__ import annotations

import importlib
import os
import traceback
from functools import cache
from importlib.metadata import entry_points

from core.errors import BenchmarkError

ENTRY_POINT_GROUP = "wbc_bench.plugins"
ENV_VAR = "WBC_PLUGINS"

DOCS = "docs/plugins.md"

_loaded: set[str] = set()


def _from_env() -> list[str]:
    return [m.strip() for m in os.environ.get(ENV_VAR, "").split(",") if m.strip()]


def add_plugins(modules: list[str]) -> None:
    """Name plugin modules for this process and every worker it spawns (``--plugin``, each item may
    be a comma-separated list), then load them."""
    named = [m.strip() for item in modules for m in item.split(",") if m.strip()]
    merged = list(dict.fromkeys([*_from_env(), *named]))
    os.environ[ENV_VAR] = ",".join(merged)
    load_plugins()


@cache
def _entry_point_modules() -> tuple[tuple[str, str], ...]:
    """Installed entry points, scanned once per process: the scan reads every installed package's
    metadata, and registries ask for the plugins on every lookup."""
    return tuple((ep.value.split(":")[0], f"entry point '{ep.name}' of group {ENTRY_POINT_GROUP}")
                 for ep in entry_points(group=ENTRY_POINT_GROUP))


def plugin_modules() -> list[tuple[str, str]]:
    """(module, where it was named) for every plugin: installed entry points, then ``$WBC_PLUGINS``."""
    return [*_entry_point_modules(), *((m, f"${ENV_VAR} / --plugin") for m in _from_env())]


def load_plugins() -> None:
    """Import every plugin module once per process; a failure names the plugin and the fix."""
    for module, origin in plugin_modules():
        if module in _loaded:
            continue
        _loaded.add(module)  # before the import: a plugin that asks a registry for names does not recurse
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            _loaded.discard(module)
            if e.name and (module == e.name or module.startswith(e.name + ".")):
                raise BenchmarkError(
                    f"plugin '{module}' (named by {origin}) cannot be found: no module named '{e.name}'. "
                    f"Install its package (`pip install -e PATH`), put its folder on PYTHONPATH, or stop "
                    f"naming it ({_how_to_drop(origin)}); see {DOCS}") from e
            raise _failed(module, origin, e) from e
        except BenchmarkError as e:  # e.g. a name that clashes with a built-in: say which plugin
            _loaded.discard(module)
            raise BenchmarkError(f"plugin '{module}' (named by {origin}): {e}; see {DOCS}") from e
        except Exception as e:  # a plugin's own bug: say which plugin and where
            _loaded.discard(module)
            raise _failed(module, origin, e) from e


def _how_to_drop(origin: str) -> str:
    return f"remove it from ${ENV_VAR} / --plugin" if origin.startswith("$") else "uninstall the package that declares it"


def _failed(module: str, origin: str, e: BaseException) -> BenchmarkError:
    frame = traceback.extract_tb(e.__traceback__)[-1]
    return BenchmarkError(f"plugin '{module}' (named by {origin}) failed while importing: "
                          f"{type(e).__name__}: {e} (at {frame.filename}:{frame.lineno}); fix the plugin or "
                          f"stop naming it ({_how_to_drop(origin)}); see {DOCS}")
