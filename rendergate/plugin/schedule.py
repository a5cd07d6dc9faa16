"""The order checks run in, so that `-n auto` finishes when its slowest worker does, as early as it
can: the longest checks first, each handed to whichever worker is free (xdist's load scheduling,
one check at a time), so one variant's checks spread over the workers instead of one worker
holding the long ones. How long a check takes is what it took last time here (pytest's cache,
`rendergate/durations`): the run's controller reads it and hands it to its workers, so that
every process orders the same checks alike (xdist requires it); a check never timed yet counts
as long, its variants interleaved; a GPU check on a host without a GPU (it skips) as nothing.
xdist starts each worker on two checks at once, so the first of them go in pairs of about equal
length. What the run itself measured is written back at its end."""
from __future__ import annotations

import json
import math

import pytest

from rendergate.plugin.notes import notes_in, notes_of
from rendergate.plugin.run import RUN_KEY

DURATIONS = "rendergate/durations"  # pytest's cache key: seconds of each check's call, by check_key
DURATIONS_KEY = pytest.StashKey[dict]()
WORKER_INPUT = "rendergate_durations"
UNKNOWN = float("inf")  # never timed here: run early, where a long check costs least
HISTORY = 5000  # entries kept: every check of a few dozen variants


def check_key(cell: str, check: str, item: str | None) -> str:
    """A check's name in the history: its cell, its function and its item, not its image's tag."""
    return f"{cell}::{check}::{item or ''}"


def pytest_configure(config):
    if RUN_KEY not in config.stash:  # not validating (rendergate's own tests, say): pytest's order
        return
    worker = getattr(config, "workerinput", None)
    if worker is not None:
        config.stash[DURATIONS_KEY] = json.loads(worker.get(WORKER_INPUT, "{}"))
        return
    cache = getattr(config, "cache", None)  # absent under -p no:cacheprovider: no history, no harm
    config.stash[DURATIONS_KEY] = _durations(cache.get(DURATIONS, {}) if cache is not None else {})
    if cache is not None:
        config.pluginmanager.register(History(cache, config.stash[DURATIONS_KEY]), "rendergate-durations")
    if config.getoption("dist", "no") == "load" and config.getoption("maxschedchunk", None) is None:
        config.option.maxschedchunk = 1  # one check at a time to a free worker: the order above holds


class History:
    """In the process that writes the history (xdist's controller, or the only process): the
    call's seconds of each check that ran, written back over what was known at the run's end."""

    def __init__(self, cache, known: dict):
        self.cache, self.known, self.measured = cache, known, {}

    def pytest_runtest_logreport(self, report):
        """A check's call that ran (one that skipped took no time worth keeping: on a host where a
        GPU check runs, it is long, and the history may be shared with one, a CI cache say)."""
        notes = notes_in(report) if report.when == "call" and not report.skipped else None
        if notes is not None and notes.skip is None:
            self.measured[check_key(notes.cell, notes.check, notes.item)] = round(report.duration, 3)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self):
        if self.measured:  # this run's first, then what it did not run, up to HISTORY entries
            kept = {**self.measured, **{k: s for k, s in self.known.items() if k not in self.measured}}
            self.cache.set(DURATIONS, dict(list(kept.items())[:HISTORY]))


def _durations(found) -> dict[str, float]:
    """The history as a file may hold it, kept to what can order checks: seconds, finite, not negative."""
    if not isinstance(found, dict):
        return {}
    return {k: float(s) for k, s in list(found.items())[:HISTORY] if isinstance(k, str) and k.count("::") == 2
            and isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and s >= 0}


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: absent under -p no:xdist
def pytest_configure_node(node):
    node.workerinput[WORKER_INPUT] = json.dumps(node.config.stash.get(DURATIONS_KEY, {}))


def expected_seconds(durations: dict[str, float], longest: dict[str, float], cell: str, check: str,
                     item: str | None) -> float:
    """What the check took last time in this cell; else the longest it took in any cell
    (`longest`, by check); else UNKNOWN."""
    return durations.get(check_key(cell, check, item), longest.get(check, UNKNOWN))


@pytest.hookimpl(trylast=True)  # after -k, -m and --deselect: the order of what runs, its head most of all
def pytest_collection_modifyitems(config, items):
    if RUN_KEY in config.stash:
        order(config, items)


def order(config, items) -> None:
    """Sort `items` in place: host readiness first (a host that is not ready explains the failures
    after it), then the timed workloads (each takes the machine to itself: together, they keep the
    other workers waiting once, not at every turn), then the longest checks first; the checks that
    do not apply, and tests that are no checks, last."""
    durations = config.stash.get(DURATIONS_KEY, {})
    longest: dict[str, float] = {}
    for key, seconds in durations.items():
        check = key.split("::")[1]
        longest[check] = max(seconds, longest.get(check, 0.0))
    turn: dict[str, int] = {}  # the n-th check of its cell: checks never timed interleave the cells
    expected: dict[int, float] = {}  # by id(item): the seconds it is expected to take

    def key(item):
        notes = notes_of(item)
        if notes is None or notes.skip is not None:
            return (True, True, True, 0.0, 0)
        turn[notes.cell] = turn.get(notes.cell, -1) + 1
        if item.get_closest_marker("needs_gpu") and not config.stash[RUN_KEY].gpus_of(item.callspec.params["cell"]):
            seconds = 0.0  # skipped at once on this host: no GPU here, not validated
        else:
            seconds = expected_seconds(durations, longest, notes.cell, notes.check, notes.item)
        expected[id(item)] = seconds
        return (notes.requirement != "host_ready", False, item.get_closest_marker("timed") is None, -seconds,
                turn[notes.cell])
    items.sort(key=key)
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    if workers > 1 and len(items) >= 2 * workers:
        items[:2 * workers] = _paired(items[:2 * workers], lambda item: expected.get(id(item), 0.0))


def _paired(head: list, seconds) -> list:
    """xdist's load scheduling starts each of n workers on two checks, positions 2i and 2i+1 (a
    worker runs one while it holds the next), so the 2n first checks are handed in pairs. The n
    that start at once are of n different variants where the head has them (their containers start
    side by side, and no two checks begin on one container's first warm-up at once: the first
    import of Manim compiles it, whoever comes second finds it compiled); each is paired with one of
    the others, the longest with the shortest, so every worker's first pair takes about as long."""
    n = len(head) // 2
    first, cells = [], set()
    for item in head:
        cell = getattr(notes_of(item), "cell", None)
        if len(first) < n and cell not in cells:
            first.append(item)
            cells.add(cell)
    rest = [item for item in head if all(item is not f for f in first)]
    first, then = first + rest[:n - len(first)], sorted(rest[n - len(first):], key=seconds)
    first.sort(key=seconds, reverse=True)
    return [item for pair in zip(first, then) for item in pair]
