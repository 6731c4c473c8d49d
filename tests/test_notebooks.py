"""The notebooks in colabs/ run top to bottom (code cells executed in order in one namespace, offline), and the
package works outside the repository.

`installed` builds the package's wheel and unpacks it into a folder: exactly what setup.py ships (vlmcls_jax,
configs, the study's data files), nothing else of the repository. From a copy of colabs/ in another folder, with
only that folder on the path, a subprocess runs the cheapest notebook (convert_and_classify, ~30 s) end to end
and the others' setup and import cells, loads `configs/table1.py:flowers` from the installed copy with only
`--config.data.image_root`, and reads the shipped manifest. The other notebooks run end to end in this process.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "colabs").glob("*.ipynb"))
CHEAPEST = "convert_and_classify.ipynb"


def code_cells(path: pathlib.Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.name != CHEAPEST], ids=lambda p: p.name)
def test_notebook_runs(path, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for i, source in enumerate(code_cells(path)):
        exec(compile(source, f"{path.name}[code cell {i}]", "exec"), namespace)


def test_there_are_notebooks_and_each_starts_by_installing_the_package():
    assert CHEAPEST in [p.name for p in NOTEBOOKS], "colabs/ lost the notebook the outside run executes"
    for path in NOTEBOOKS:
        setup = code_cells(path)[0]
        assert setup.startswith("# Setup: installs vlmcls_jax") and '"pip", "install"' in setup, path.name


def test_setup_cell_installs_the_clone_it_sits_in_or_names_what_to_set(monkeypatch, tmp_path):
    """Where vlmcls_jax is missing: inside a clone, `pip install -e` of the clone; outside one with no
    REPOSITORY_URL, one error naming it; with one, pip's `git+URL` (pip itself is not run here)."""
    import importlib.util
    import subprocess as sp
    setup = code_cells(NOTEBOOKS[0])[0]
    calls = []
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vlmcls_jax" else
                        real_find_spec(name, *a))
    monkeypatch.setattr(sp, "run", lambda cmd, check: calls.append(cmd))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(REPO / "colabs")
    exec(compile(setup, "setup cell", "exec"), {})
    assert calls == [[sys.executable, "-m", "pip", "install", "-q", "-e", str(REPO)]]
    assert sys.path[0] == str(REPO)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError, match="REPOSITORY_URL"):
        exec(compile(setup, "setup cell", "exec"), {})
    exec(compile(setup.replace('REPOSITORY_URL = ""', 'REPOSITORY_URL = "https://example.org/r"'), "cell", "exec"), {})
    assert calls[-1][-1] == "git+https://example.org/r"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> pathlib.Path:
    """The wheel's contents unpacked into a folder (an install without pip's bookkeeping)."""
    tmp = tmp_path_factory.mktemp("installed")
    source = tmp / "source"                      # only what a build reads, so nothing is written in the repository
    source.mkdir()
    for name in ("setup.py", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("vlmcls_jax", "configs"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(tmp / "wheel"), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp / "wheel").glob("vlmcls_jax-*.whl")
    site = tmp / "site"
    zipfile.ZipFile(wheel).extractall(site)
    return site


OUTSIDE = textwrap.dedent('''
    import ast, json, pathlib, sys
    site, notebooks, data = map(pathlib.Path, sys.argv[1:4])
    cells = lambda p: ["".join(c["source"]) for c in json.loads(p.read_text())["cells"] if c["cell_type"] == "code"]
    # The other notebooks: their setup cell, then every import statement of their cells.
    for p in sorted(notebooks.glob("*.ipynb")):
        if p.name != "{cheapest}":
            setup, *rest = cells(p)
            exec(compile(setup, f"{{p.name}}[setup cell]", "exec"), {{}})
            imports = [n for s in rest for n in ast.parse(s).body if isinstance(n, (ast.Import, ast.ImportFrom))]
            assert imports, p.name
            exec(compile(ast.Module(imports, []), f"{{p.name}}[imports]", "exec"), {{}})
    # The cheapest one end to end.
    namespace = {{}}
    for i, source in enumerate(cells(notebooks / "{cheapest}")):
        exec(compile(source, f"{cheapest}[code cell {{i}}]", "exec"), namespace)

    import configs, vlmcls_jax
    from vlmcls_jax.data import study
    for module in (vlmcls_jax, configs, study):
        assert pathlib.Path(module.__file__).is_relative_to(site), module.__file__
    # configs/table1.py:flowers from the installed copy needs only the image root.
    from absl import flags
    from ml_collections import config_flags
    config = config_flags.DEFINE_config_file("config")
    sys.argv = ["prog", f"--config={{site}}/configs/table1.py:flowers", f"--config.data.image_root={{data}}"]
    flags.FLAGS(sys.argv)      # ml-collections reads the overrides from sys.argv, as in vlmcls_jax.main
    from vlmcls_jax.data.sources import ClassList, read_manifest
    c = config.value
    examples = read_manifest(c.data.manifest, c.data.image_root, ClassList.from_file(c.data.classes), c.data.split)
    assert len(examples) == 6149 and examples[0].image.startswith(str(data)), (len(examples), examples[0])
    print("outside: ok")
''').format(cheapest=CHEAPEST)


def test_notebooks_and_configs_work_outside_the_repository(installed, tmp_path):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(REPO / "colabs", notebooks)
    (tmp_path / "data").mkdir()
    (tmp_path / "check.py").write_text(OUTSIDE)
    # Only the installed copy on the path (plus the caller's own extra entries, never the repository).
    keep = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
            if p and pathlib.Path(p).resolve() not in (REPO, REPO / "tests")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed)] + keep)}
    result = subprocess.run([sys.executable, str(tmp_path / "check.py"), str(installed), str(notebooks),
                             str(tmp_path / "data")], cwd=notebooks, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "outside: ok" in result.stdout
