"""Packaging: one import namespace, and what is imported is exactly what is declared."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
MAPPED = {"corpus": "corpus", "stages": "corpus.stages", "plugins": "corpus.plugins", "validation": "corpus.validation"}
# Declared for their side effects or their command, never imported by name (tensorboard: through
# torch.utils.tensorboard; python-multipart: through starlette's request.form(); httpx: through
# starlette's TestClient; httptools, uvloop: uvicorn's choice of HTTP parser and event loop).
NOT_IMPORTED = {"pytest-timeout", "pytest-xdist", "ruff", "tensorboard", "python-multipart", "httpx", "httptools",
                "uvloop"}


def _dist_name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower().replace("_", "-")


def _declared() -> dict[str, str]:
    """dist name -> where it is declared ('core' or the extra's name)."""
    out = {_dist_name(r): "core" for r in PYPROJECT["project"]["dependencies"]}
    for extra, reqs in PYPROJECT["project"].get("optional-dependencies", {}).items():
        for r in reqs:
            if _dist_name(r) != "corpusforge":  # `all` names our own extras
                out.setdefault(_dist_name(r), extra)
    return out


def _imports(folders: list[str]) -> dict[str, set[str]]:
    """top-level module -> files importing it, for the given folders."""
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            if "_work" in path.relative_to(ROOT).parts:  # benchmarks' scratch (git-ignored): other venvs live there
                continue
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                      and node.func.attr == "importorskip" and node.args and isinstance(node.args[0], ast.Constant)):
                    names = [node.args[0].value]
                for n in names:
                    found.setdefault(n.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def _third_party(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    """dist name -> files, for modules that come from an installed distribution other than ours. A module
    several distributions provide (fasttext: fasttext-wheel and fasttext-predict) counts for the one
    declared, if any."""
    dists = packages_distributions()
    declared = _declared()
    out: dict[str, set[str]] = {}
    for mod, files in modules.items():
        if mod in sys.stdlib_module_names or mod in ("corpus", "benchmarks", "helpers", "trainkit", "test_report"):
            continue
        names = [d.lower().replace("_", "-") for d in dists.get(mod, [])]
        names = [n for n in names if n != "corpusforge"]
        chosen = [n for n in names if n in declared] or names
        for name in chosen:
            out.setdefault(name, set()).update(files)
    return out


def test_all_installs_every_extra():
    extras = PYPROJECT["project"]["optional-dependencies"]
    listed = {e for r in extras["all"] for e in re.findall(r"\[(.*)\]", r)[0].split(",")}
    assert listed == set(extras) - {"all", "dev"}


def test_package_list_covers_every_folder():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = set()
    for top, name in MAPPED.items():
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            on_disk.add(".".join((name, *rel)))
    assert listed == on_disk


def test_every_import_is_declared_and_every_declaration_imported():
    declared = _declared()
    product = _third_party(_imports(["corpus", "stages", "plugins", "validation"]))
    everything = _third_party(_imports(["corpus", "stages", "plugins", "validation", "tests", "benchmarks",
                                        "examples"]))
    undeclared = {d: sorted(f)[:3] for d, f in product.items() if d not in declared}
    assert not undeclared, f"imported by the product but not declared: {undeclared}"
    test_only = {d: sorted(f)[:3] for d, f in everything.items() if d not in declared and not d.startswith("datatrove")}
    assert not test_only, f"imported by tests/benchmarks but declared nowhere (add to [dev]): {test_only}"
    unused = sorted(d for d in declared if d not in everything and d not in NOT_IMPORTED)
    assert not unused, f"declared but never imported: {unused}"
    core_users = {d for d, where in declared.items() if where == "core"}
    torch_in_core = {"torch", "transformers"} & core_users
    assert not torch_in_core, "the data toolkit must install without torch"


@pytest.mark.slow
def test_wheel_installs_one_namespace(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("corpusforge-*.whl"))
    tops = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"corpus"}
    names = zipfile.ZipFile(wheel).namelist()
    assert "corpus/stages/minhash.py" in names and "corpus/plugins/trainer.py" in names
    assert "corpus/stages/profile/unicode_classes.npz" in names


def test_command_workers_do_not_import_the_cli(tmp_path):
    """The `corpus` script pip writes imports its entry point's module, and a run's spawned workers run
    that script again (as ``__mp_main__``): the entry module must be light, the CLI imported only once
    main() is called (it cost each worker of a 500 MB `corpus run` about 0.1 s, docs/benchmarks.md)."""
    assert PYPROJECT["project"]["scripts"]["corpus"] == "corpus.__main__:main"
    (tmp_path / "probe.py").write_text(
        "import sys\n\ndef loaded(_):\n"
        "    return 'corpus.cli' in sys.modules, getattr(sys.modules.get('__mp_main__'), '__file__', None)\n")
    script = tmp_path / "corpus"  # what pip writes for `corpus = "corpus.__main__:main"`, plus a pool
    script.write_text("import sys\nfrom corpus.__main__ import main\n"
                      "if __name__ == '__main__':\n"
                      "    from corpus.executor import worker_pool\n"
                      "    from probe import loaded\n"
                      "    with worker_pool(2) as pool_map:\n"
                      "        print(pool_map(loaded, [0, 1]))\n")
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == repr([(False, str(script)), (False, str(script))])
    cli = subprocess.run([sys.executable, "-m", "corpus", "--help"], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0 and "corpus run" in cli.stdout
