"""The decorator registry's one way to load built-ins: named modules are imported on the first lookup,
before the plugins, and before a plugin's own registration, so a plugin reusing a built-in name is the
one refused, with both modules named."""
from __future__ import annotations

import sys
import types

import pytest

from core.errors import BenchmarkError
from core.registry import Registry


@pytest.fixture
def builtin_module(monkeypatch):
    """A module whose import registers 'alpha' in the registry it is given (as the built-ins do)."""
    registry = Registry("widget", builtins=("fake_builtin_widgets",))
    imports = []

    def exec_module():
        mod = types.ModuleType("fake_builtin_widgets")
        imports.append(1)

        def alpha():
            return "alpha"

        alpha.__module__ = "fake_builtin_widgets"
        registry.register("alpha")(alpha)
        return mod

    class Finder:
        def find_spec(self, name, path=None, target=None):
            if name != "fake_builtin_widgets":
                return None
            import importlib.util

            class Loader:
                def create_module(self, spec):
                    return exec_module()

                def exec_module(self, module):
                    pass

            return importlib.util.spec_from_loader(name, Loader())

    monkeypatch.setattr(sys, "meta_path", [Finder(), *sys.meta_path])
    monkeypatch.delitem(sys.modules, "fake_builtin_widgets", raising=False)
    return registry, imports


def test_builtins_load_on_first_lookup_once(builtin_module) -> None:
    registry, imports = builtin_module
    assert imports == []
    assert registry.names() == ["alpha"] and registry.get("alpha")() == "alpha"
    assert "alpha" in registry and imports == [1]


def test_a_plugin_reusing_a_builtin_name_is_refused_naming_both(builtin_module) -> None:
    registry, imports = builtin_module

    def alpha():
        return "mine"

    with pytest.raises(BenchmarkError, match=r"widget .alpha. is registered twice, by fake_builtin_widgets\.\S*alpha and by test_registry\."):
        registry.register("alpha")(alpha)
    assert imports == [1], "the built-ins were loaded before the plugin's registration"
