"""Check modules as the requirement registry learns them: rendergate's suites, then each folder
of the user's checks, imported as pytest will collect them; the checks each holds (by their
`requires` marks) and a digest of the folders' code."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

from rendergate.core import requirements
from rendergate.core.assets import SUITES
from rendergate.core.requirements import Check, RegistryError, Requirement


def load(check_folders: Iterable[Path] = ()) -> dict[str, Requirement]:
    """Every requirement declared: rendergate's suites', then those of each folder of checks."""
    for path in sorted(SUITES.glob("test_*.py")):
        try:
            requirements.record_checks(path, checks_of(importlib.import_module(f"rendergate.suites.{path.stem}"), str(path)))
        except RegistryError:
            raise
        except (Exception, pytest.skip.Exception) as e:  # a broken install or checkout: one line naming the module
            raise RegistryError(f"{path}: rendergate's check module cannot be imported ({type(e).__name__}: "
                                f"{str(e)[:300]})") from None
    modules = []
    for folder in check_folders:
        folder = Path(folder).resolve()
        if requirements.folder_loaded(folder):
            continue
        if not folder.is_dir():
            raise RegistryError(f"--checks {folder}: no such folder of checks")
        modules += [(path, _import_checks(path)) for path in check_modules(folder)]
        requirements.record_folder(folder)
    requirements.declare_qualifiers()
    for path, module in modules:  # before anything is built: a check of a key nobody declares
        undeclared = sorted(_required_by(module) - set(requirements.declared()))
        if undeclared:
            raise RegistryError(f"{path}: requires({undeclared[0]!r}): no such requirement is declared (declare it "
                                "with rendergate.core.requirements.declare)")
        requirements.record_checks(path, checks_of(module, str(path)))
    return requirements.declared()


def _marks(obj) -> list:
    marks = getattr(obj, "pytestmark", [])
    return list(marks) if isinstance(marks, list) else [marks]


def _functions(module) -> list[tuple[str, object, list]]:
    """The test functions pytest collects from a module, by the name pytest gives them (`test*`
    callables, and the `test*` methods of its `Test*` classes, inherited and nested ones too),
    each with the marks above it, nearest first."""
    found = []
    for name, value in vars(module).items():
        if name.startswith("test") and callable(value) and not inspect.isclass(value):
            found.append((name, value, _marks(value) + _marks(module)))
        elif name.startswith("Test") and inspect.isclass(value):
            found += _methods(value, _marks(module))
    return found


def _methods(cls, above: list, depth: int = 0) -> list[tuple[str, object, list]]:
    marks = _marks(cls) + above
    found = []
    for name, value in inspect.getmembers(cls):
        if name.startswith("test") and callable(value) and not inspect.isclass(value):
            found.append((name, value, _marks(value) + marks))
        elif name.startswith("Test") and inspect.isclass(value) and depth < 8:
            found += _methods(value, marks, depth + 1)
    return found


def check_modules(folder: Path) -> list[Path]:
    """The modules of a folder of checks: its `test_*.py` files, in subfolders too (pytest collects
    them there, and so do rendergate's runs whatever `python_files` says)."""
    return [p for p in requirements.walk(Path(folder)) if p.match("test_*.py")]


def _required_by(module) -> set[str]:
    """The requirement keys a check module's marks name: its `pytestmark` and its test functions'."""
    return {m.args[0] for _, _, marks in _functions(module) for m in marks if getattr(m, "name", None) == "requires"
            and m.args} | {m.args[0] for m in _marks(module) if getattr(m, "name", None) == "requires" and m.args}


def checks_of(module, path: str) -> list[Check]:
    """The checks of a module that prove a requirement: each test function under a `requires`
    mark (the nearest, as pytest's get_closest_marker finds it), with the runs pytest makes of it."""
    checks = []
    for name, function, marks in _functions(module):
        required = next((m for m in marks if getattr(m, "name", None) == "requires" and m.args), None)
        if required is None:
            continue
        try:
            takes_item = "requirement" in inspect.signature(function).parameters
        except (TypeError, ValueError):
            takes_item = False
        cases = math.prod(max(1, _count(m.args[1] if len(m.args) > 1 else m.kwargs.get("argvalues", ())))
                          for m in marks if getattr(m, "name", None) == "parametrize")
        checks.append(Check(name, required.args[0], path, takes_item,
                            any(getattr(m, "name", None) == "container_only" for m in marks), cases))
    return checks


def _count(values) -> int:
    """How many runs a parametrize mark makes; 1 for values that cannot be counted without being
    used up (a generator): the run counts those as it collects them."""
    try:
        return len(values)
    except TypeError:
        return 1


def _import_checks(path: Path):
    """A user's check module, imported as pytest will collect it (its folder on sys.path, as
    pytest's default import mode puts it, for the helpers beside it): its declarations register."""
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(f"rendergate_checks.{path.parent.name}.{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except RegistryError:
        raise
    except pytest.skip.Exception as e:  # pytest.skip(allow_module_level=True), importorskip: its checks cannot be known
        raise RegistryError(f"{path}: the check module skips itself as it is imported ({e.msg}): a module of checks "
                            "must import, or its checks are never run") from None
    except Exception as e:  # whatever a user's module raises: one line naming it
        raise RegistryError(f"{path}: the check module cannot be imported ({type(e).__name__}: {e})") from None
    return module
