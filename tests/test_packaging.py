"""Packaging: one version (pyproject.toml's, read back through the installed metadata), the
``--version`` flag, the git revision of a checkout, the files a release carries, and every
third-party module gflow imports declared as a dependency."""

import ast
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

import gflow
from gflow import cli

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(gflow.__file__).resolve().parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
VERSION_LINE = re.compile(r"gflow (\S+)( \(git [0-9a-f]{4,40}(\+dirty)?\))?\n")


def test_one_version_from_pyproject():
    assert metadata.version("gflow") == VERSION, "stale install: pip install -e '.[dev]'"
    assert gflow.__version__ == VERSION
    assert gflow.version_info().version == VERSION
    # the other files that name the version follow pyproject.toml's
    citation = (ROOT / "CITATION.cff").read_text()
    assert re.search(r"^version: \"?([^\s\"]+)\"?$", citation, re.M).group(1) == VERSION
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(r"^## (\S+)", changelog, re.M).group(1) == VERSION  # the newest entry


def test_version_without_installed_metadata_is_unknown():
    code = (
        "from importlib import metadata\n"
        "def missing(name): raise metadata.PackageNotFoundError(name)\n"
        "metadata.version = missing\n"
        "import gflow; print(gflow.__version__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0+unknown"


def test_version_flag_in_process(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code in (0, None)
    out = capsys.readouterr().out
    assert VERSION_LINE.fullmatch(out), out
    assert out == f"gflow {gflow.version_info()}\n"
    assert VERSION_LINE.fullmatch(out).group(1) == VERSION


def test_version_flag_of_python_m_gflow(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "gflow", "--version"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert VERSION_LINE.fullmatch(done.stdout), done.stdout
    assert VERSION_LINE.fullmatch(done.stdout).group(1) == VERSION


def _git(*args):
    try:
        done = subprocess.run(
            ["git", "-C", str(PACKAGE), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def test_git_revision_of_this_checkout():
    tracked = _git("ls-files", "--error-unmatch", "--", "__init__.py") is not None
    head = _git("rev-parse", "--short", "HEAD") if tracked else None
    info = gflow.version_info()
    if head is None:  # an installed copy or an sdist: no revision
        assert info.git_revision is None and str(info) == VERSION
        return
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    assert info.git_revision == head + ("+dirty" if dirty else "")
    assert str(info) == f"{VERSION} (git {info.git_revision})"


@pytest.mark.parametrize(
    "answers, revision",
    [
        ({"ls-files": "__init__.py", "rev-parse": "abc1234", "status": ""}, "abc1234"),
        ({"ls-files": "__init__.py", "rev-parse": "abc1234", "status": " M x.py"}, "abc1234+dirty"),
        ({"ls-files": None, "rev-parse": "abc1234", "status": ""}, None),  # not gflow's checkout
        ({"ls-files": "__init__.py", "rev-parse": None, "status": None}, None),  # no commit yet
        ({"ls-files": "__init__.py", "rev-parse": "abc1234", "status": None}, None),  # unknown
    ],
)
def test_git_revision_rules(monkeypatch, answers, revision):
    monkeypatch.setattr(gflow, "_git", lambda command, *args: answers[command])
    info = gflow.version_info()
    assert info == (gflow.__version__, revision)
    assert str(info) == gflow.__version__ + (f" (git {revision})" if revision else "")


@pytest.mark.parametrize(
    "failure", [FileNotFoundError("git"), subprocess.TimeoutExpired("git", 2), PermissionError()]
)
def test_no_revision_when_git_is_missing_or_hangs(monkeypatch, failure):
    def run(*args, **kwargs):
        raise failure

    monkeypatch.setattr(subprocess, "run", run)
    assert gflow.version_info() == (gflow.__version__, None)


def test_release_files():
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License")
    assert "Copyright (c) 2026 the gflow authors" in license_text
    assert PYPROJECT["project"]["license"] == "MIT"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    assert (PACKAGE / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["gflow"]
    assert set(PYPROJECT["project"]["urls"]) >= {"Homepage", "Documentation", "Issues"}


# Import names whose distribution is named otherwise (used when the module is not installed;
# installed ones are looked up in the installed metadata, packages_distributions).
DISTRIBUTION = {"sklearn": "scikit-learn", "IPython": "ipython", "yaml": "PyYAML", "PIL": "pillow"}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(requirements) -> set[str]:
    return {_normalized(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r).group()) for r in requirements}


def _third_party_imports() -> dict[str, dict[str, list[str]]]:
    """{"module": {top-level import name: [where]}, "lazy": {...}}: the absolute imports of
    gflow/**/*.py that are neither the standard library nor gflow; an import anywhere inside a
    function body is lazy, every other one (module or class level, under try or if) is not."""
    found = {"module": {}, "lazy": {}}

    def visit(node, where, lazy):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0:
                names = [child.module]
            else:
                inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                visit(child, where, inner)
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("gflow", "__future__"):
                    place = f"{where}:{child.lineno}"
                    found["lazy" if lazy else "module"].setdefault(top, []).append(place)

    for path in sorted(PACKAGE.rglob("*.py")):
        visit(ast.parse(path.read_text(), str(path)), str(path.relative_to(ROOT)), False)
    return found


def test_every_imported_module_is_declared():
    """The rule: a third-party module imported at module level is needed by ``import gflow.X``,
    so its distribution is in [project].dependencies; one imported only inside functions (an
    optional feature: the explorer's ipywidgets, tqdm's bar) is in dependencies or an extra."""
    project = PYPROJECT["project"]
    required = _requirement_names(project["dependencies"])
    optional = set().union(*map(_requirement_names, project["optional-dependencies"].values()))
    installed = metadata.packages_distributions()
    imports = _third_party_imports()
    assert {"jax", "diffrax", "equinox", "optimistix", "lineax"} <= set(imports["module"])
    assert "ipywidgets" in imports["lazy"]  # the collection sees lazy imports

    def distributions(name):
        return {_normalized(d) for d in installed.get(name, [DISTRIBUTION.get(name, name)])}

    missing = []
    for kind, allowed in (("module", required), ("lazy", required | optional)):
        for name, places in sorted(imports[kind].items()):
            if not distributions(name) & allowed:
                how = "module-level" if kind == "module" else "lazy"
                missing.append(f"{name} ({how} import at {places[0]})")
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
