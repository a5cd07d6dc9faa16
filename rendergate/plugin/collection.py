"""What a run collects and how: whether it validates at all, the suites and the user's folders of
checks added, each check parametrized over the run's cells (or marked as not applying), and what
was collected before anything deselected it (the order they run in: rendergate.plugin.schedule)."""
from __future__ import annotations

import json

import pytest

from rendergate.core import requirements
from rendergate.core.assets import SUITES
from rendergate.core.outcomes import Outcome
from rendergate.engines.kind import Cell
from rendergate.engines.kinds import KINDS
from rendergate.plugin.notes import NOTES_KEY, CheckNotes, notes_of
from rendergate.plugin.run import RUN_KEY


def pytest_collect_file(file_path, parent):
    """rendergate's suites, and the run's folders of checks (their subfolders too), are collected
    whatever the user's own `python_files` says: what the registry expects of them is what runs."""
    patterns = parent.config.getini("python_files")
    run = parent.config.stash.get(RUN_KEY, None)
    ours = file_path.parent == SUITES or (run is not None and any(f in file_path.parents for f in run.check_folders))
    if ours and file_path.match("test_*.py") and not any(file_path.match(p) for p in patterns):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def not_applying(cell: Cell, definition) -> tuple[Outcome, str] | None:
    """Why a check does not apply to a cell (counted neither as a pass nor as a problem), or
    None when it does: the one place this is decided."""
    marker = definition.get_closest_marker("requires")
    variant = cell.variant
    if definition.get_closest_marker("container_only") and not KINDS[cell.kind].runs_images:
        return Outcome.NOT_APPLICABLE, f"not applicable: {variant.name} is checked on the host, not in a container"
    if marker and not variant.declares(marker.args[0]):
        return Outcome.NOT_DECLARED, f"{variant.name} does not declare '{marker.args[0]}'"
    return None


def pytest_generate_tests(metafunc):
    if RUN_KEY not in metafunc.config.stash:
        return
    marker = metafunc.definition.get_closest_marker("requires")
    if "cell" not in metafunc.fixturenames:
        if marker:  # it would run once, about no variant: the gate would wait for it in vain
            raise pytest.Collector.CollectError(f"{metafunc.definition.nodeid}: requires({marker.args[0]!r}) but takes "
                                                "no `target`: a check of a requirement runs on each variant's target")
        return
    run = metafunc.config.stash[RUN_KEY]
    name = marker.args[0] if marker else None
    if name and requirements.get(name) is None:  # a module outside the folders of checks: said as it is collected
        raise pytest.Collector.CollectError(f"{metafunc.definition.nodeid}: requires({name!r}): no such requirement "
                                            "is declared (declare it with rendergate.core.requirements.declare, in a "
                                            "module of --checks)")
    per_item = "requirement" in metafunc.fixturenames
    params = []
    for cell in run.cells:
        base_id = f"{cell.variant.name}@{KINDS[cell.kind].checked_in(cell)}"
        value = cell.variant.declared(name) if name else True
        outside = not_applying(cell, metafunc.definition)
        if outside:
            outcome, reason = outside
            params.append(pytest.param(cell, *([None] if per_item else []), id=base_id, marks=[
                pytest.mark.skip(reason=reason), pytest.mark.not_applying(outcome)]))
            continue
        for item in requirements.params_of(value, per_item):
            item_id = f"{base_id}-{item}" if isinstance(value, list) and per_item else base_id
            params.append(pytest.param(cell, *([item] if per_item else []), id=item_id))
    metafunc.parametrize(["cell", "requirement"] if per_item else ["cell"], params)


COLLECTED = "rendergate_collected"  # what a worker hands the controller: its checks as collected, before any deselection
COLLECTED_KEY = pytest.StashKey[list]()


@pytest.hookimpl(wrapper=True, tryfirst=True)  # before -k, -m, --deselect and any conftest's own deselection
def pytest_collection_modifyitems(config, items):
    for item in items:
        params = getattr(item, "callspec", None) and item.callspec.params
        if params and "cell" in params and RUN_KEY in config.stash:
            cell = params["cell"]
            marker = item.get_closest_marker("requires")
            outside = item.get_closest_marker("not_applying")
            item.stash[NOTES_KEY] = CheckNotes(
                cell=cell.key, target=cell.kind, check=item.originalname,
                requirement=marker.args[0] if marker else "",
                item=requirements.item_of(params.get("requirement")),
                skip=outside.args[0] if outside else None)
    if RUN_KEY in config.stash:
        _count_collected(config, [notes_of(item) for item in items])
    return (yield)


def _count_collected(config, notes: list[CheckNotes | None]) -> None:
    """Every run of a check of a requirement that pytest collected, before anything deselected it:
    what the run must hold besides what the registry derives (a fixture's params, a module's own
    pytest_generate_tests, inherited tests multiply runs where the registry cannot see them)."""
    counted: dict[tuple, int] = {}
    for n in notes:
        if n and n.requirement and not n.skip:
            key = (n.cell, n.requirement, n.check, n.item)
            counted[key] = counted.get(key, 0) + 1
    found = [[*key, runs] for key, runs in counted.items()]
    if hasattr(config, "workeroutput"):  # an xdist worker: handed to the controller when it finishes
        config.workeroutput[COLLECTED] = json.dumps(found)
    config.stash[COLLECTED_KEY] = found
