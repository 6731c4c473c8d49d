"""Every module of the package imports (the floor of `make test-fast`, which leaves the slow tests out).

`__main__` modules are left out: they define absl flags that clash in one process (`--config` in main.py and
plan/__main__.py); tests/test_plan.py and tests/test_checkpoint_cli.py run them.
"""

import importlib
import pkgutil

import pytest

import configs
import vlmcls_jax

MODULES = sorted(m.name for package in (vlmcls_jax, configs)
                 for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
                 if not m.name.endswith(".__main__"))


def test_the_walk_finds_the_package():
    assert {"vlmcls_jax.main", "vlmcls_jax.models.llama", "configs.table1"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name):
    importlib.import_module(name)
