"""Every check's outcome kept in one verdict per variant under reports/verdicts/: written partial
when the run starts, rewritten as results arrive, complete only when the run finished; and the
verdicts said the same in the terminal and the JUnit XML."""
from __future__ import annotations

import importlib
import importlib.util
import json
import re
import time
from pathlib import Path

import pytest

from rendergate.core.assets import SUITES
from rendergate.core.comparison import gpu_seconds
from rendergate.core.outcomes import FAULTS, Outcome, State
from rendergate.core.redact import printable, redact
from rendergate.core.runstate import RunState
from rendergate.core.selection import Selection
from rendergate.core.times import now_iso
from rendergate.core.verdict import CheckResult, Verdict, write
from rendergate.engines.kinds import KINDS
from rendergate.plugin import pytest_internals
from rendergate.plugin.collection import COLLECTED, COLLECTED_KEY
from rendergate.plugin.notes import notes_in
from rendergate.plugin.run import RUN_KEY
from rendergate.plugin.selection import selection
from rendergate.release.review import Reviewer


def pytest_configure(config):
    config.pluginmanager.register(OutcomeLog(config), "rendergate-outcomes")


def _workload(config, nodeid: str) -> str | None:
    """What a workload check of rendergate's suites renders (its docstring's first line); None
    for any other check."""
    path, _, name = nodeid.partition("::")
    file = (config.rootpath / path).resolve()
    if file.parent != SUITES or not file.stem.startswith("test_workload_"):
        return None
    check = getattr(importlib.import_module(f"rendergate.suites.{file.stem}"), name.split("[")[0], None)
    return (check.__doc__ or "").strip().splitlines()[0] if check and check.__doc__ else None


def _of_checks(config, report, folders: list[Path]) -> bool:
    """Whether a report is of a test in one of `folders`: its node id is relative to the rootdir, or,
    for a folder outside it, to the folder itself (as pytest names them)."""
    written = report.nodeid.split("::")[0]
    places = [config.rootpath / (report.location[0] if report.location else written), config.rootpath / written]
    places += [folder / written for folder in folders]
    for place in places:
        path = place.resolve()
        if path.is_file() and any(folder == path or folder in path.parents for folder in folders):
            return True
    return False


_IMPORTING = re.compile(r"importing test module '([^']+)'")  # pytest's words when a worker cannot import one


def _param(nodeid: str) -> str:
    """The variant and image of a check's id: manim@rendergate/manim:dev."""
    return nodeid.partition("[")[2].rstrip("]") or nodeid


class OutcomeLog:
    """Every check's outcome, as the controlling process sees the reports, kept in one verdict per
    variant under reports/verdicts/: written partial when the run starts, rewritten as results
    arrive, and marked complete only when the run finished."""

    def __init__(self, config):
        self.config = config
        self.run = config.stash.get(RUN_KEY, None)
        self.verdicts: dict[str, Verdict] = {}
        self.written: dict[str, dict] = {}  # each verdict as its file holds it, judged when last written
        self.started: set[str] = set()
        self.complete = False
        self.selection = Selection()  # what the run was asked to run, shared by its verdicts
        self.cell_ids: dict[str, str] = {}  # by cell: the id its checks' node ids carry ("small@rendergate/small:dev")
        self.unwritable: set[Path] = set()
        self.interrupted = False
        self.reviewer = Reviewer(self.run.promoted_dir if self.run else None,
                                 self.run.reports_dir / "mutate" if self.run else None)  # what changed since the promoted image

    @property
    def active(self) -> bool:
        return self.run is not None and not hasattr(self.config, "workerinput")

    def _say(self, line: str) -> None:
        """A line of its own, also amid the progress letters of xdist's workers."""
        terminal = self.config.pluginmanager.getplugin("terminalreporter")
        if terminal is None:
            return
        if pytest_internals.line_open(terminal):  # xdist writes its letters there, unended
            terminal.write("\n")
        terminal.write_line(line)

    @pytest.hookimpl(tryfirst=True)  # partial verdicts before images are built and workers start
    def pytest_sessionstart(self, session):
        if not self.active:
            return
        options = {"allow_no_gpu": self.run.allow_no_gpu, "tier": self.run.tier}
        self.selection = selection(self.config, self.run.check_folders)
        self.cell_ids = {cell.key: f"{cell.variant.name}@{KINDS[cell.kind].checked_in(cell)}" for cell in self.run.cells}
        for cell in self.run.cells:
            self.verdicts[cell.key] = Verdict.start(cell.variant, self.run.run_id, cell.kind, self.run.host_of(cell),
                                                    options, self.selection)
            self._write(cell.key)

    def pytest_collection_finish(self, session):
        """Without xdist this process collected: the checks it found count in what the run expects."""
        self._expect(self.config.stash.get(COLLECTED_KEY, None))

    @pytest.hookimpl(optionalhook=True)  # pytest-xdist's: a worker ended, with what it collected
    def pytest_testnodedown(self, node, error):
        found = getattr(node, "workeroutput", {}).get(COLLECTED)
        self._expect(json.loads(found) if found else None)

    def _expect(self, found: list | None) -> None:
        if not (self.active and found):
            return
        for cell, requirement, check, item, runs in found:
            if cell in self.verdicts:
                expected = self.verdicts[cell].expected
                expected[(requirement, check, item)] = max(runs, expected.get((requirement, check, item), 0))
        for name in self.verdicts:
            self._write(name)

    def pytest_collectreport(self, report):
        """A module that failed to collect (an import error, say): its checks never run, and the
        verdicts say which module and why (xdist hands the controller its workers' failures)."""
        if not (self.active and report.failed and self.verdicts):
            return
        lines = [line.strip() for line in report.longreprtext.strip().splitlines() if line.strip()] or ["no message"]
        module = report.nodeid or next((m[1] for m in map(_IMPORTING.search, lines) if m), "a module")
        line = redact(f"{module}: {lines[-1].removeprefix('E').strip()}")
        if line not in self.selection.collection_errors:
            self.selection.collection_errors.append(line)
            for name in self.verdicts:
                self._write(name)

    @pytest.hookimpl(tryfirst=True)  # before the HTML report is regenerated from it
    def pytest_runtest_logreport(self, report):
        notes = notes_in(report) if self.active else None
        if notes is None and self.active and report.failed:
            self._failed_without_notes(report)
        if notes is None or notes.cell not in self.verdicts:
            return
        verdict = self.verdicts[notes.cell]
        entry = verdict.check(report.nodeid, notes.check, notes.requirement, notes.item)
        entry.figures.update(notes.figures)
        for started in notes.started:
            if "container" in started and started["container"] not in self.started:
                self.started.add(started["container"])
                verdict.containers_started += 1
            if "sandbox" in started and started["sandbox"] not in verdict.sandboxes:
                verdict.sandboxes.append(started["sandbox"])
        verdict.image = notes.image or verdict.image
        verdict.platform = notes.platform or verdict.platform
        if report.failed:
            entry.outcome = Outcome.FAILED if report.when == "call" else Outcome.ERROR
            entry.cause = notes.cause
            entry.message = report.longreprtext.strip().splitlines()[-1] if report.longreprtext else ""
        elif entry.outcome in FAULTS:  # a failure stands: a later pass of the same check (--dist each) does not undo it
            pass
        elif report.skipped:
            entry.outcome = Outcome(notes.skip or Outcome.SKIPPED)
            entry.message = report.longrepr[2].removeprefix("Skipped: ") if isinstance(report.longrepr, tuple) else ""
        elif report.when == "call":  # only a check that was called passes (--setup-only calls none)
            entry.outcome = Outcome.PASSED
        self._say_workload(report, entry)
        if report.when == "teardown":
            self._write(notes.cell)

    def _failed_without_notes(self, report) -> None:
        """A failed report that carries no check's notes: xdist's, for a check whose worker crashed
        (os._exit, a segfault) before it could report; or a test of the run's folders of checks
        that takes no target. It fails, with its own line: never left as a check that merely did
        not run, nor as a test no verdict knows."""
        known = [name for name, verdict in self.verdicts.items() if any(c.nodeid == report.nodeid for c in verdict.checks)]
        running = self._running_on(report)
        known = known or [cell for cell in [running.get("cell")] if cell in self.verdicts]
        param = report.nodeid.partition("[")[2].rstrip("]")
        named = [name for name in self.verdicts if re.search(rf"(^|-){re.escape(self.cell_ids[name])}(-|$)", param)]
        of_checks = _of_checks(self.config, report, [SUITES, *self.run.check_folders])
        # The variant whose check it was (its setup reported); else whichever its id names; else, for
        # a test of the run's folders of checks that is about no variant, every verdict: their code failed.
        for name in known or named or (list(self.verdicts) if of_checks else []):
            verdict = self.verdicts[name]
            entry = next((c for c in verdict.checks if c.nodeid == report.nodeid), None)
            entry = entry or verdict.check(report.nodeid, running.get("check") or report.nodeid.split("::")[-1].split("[")[0],
                                           running.get("requirement", ""), running.get("item"))
            entry.outcome = Outcome.FAILED
            lines = report.longreprtext.strip().splitlines()
            entry.message = redact(lines[-1] if lines else "its worker crashed")
            self._write(name)

    def _running_on(self, report) -> dict:
        """The check a crashed xdist worker was running (its cell, check, requirement, item), as the
        worker wrote it down before it began (pytest_runtest_protocol below); {} when not this one."""
        worker = getattr(getattr(report, "node", None), "gateway", None)
        try:
            running = json.loads(RunState(self.run.run_id).lock_file(f"{worker.id}.running").read_text())
        except (AttributeError, OSError, ValueError):
            return {}
        return running if running.get("nodeid") == report.nodeid else {}

    def _say_workload(self, report, entry: CheckResult) -> None:
        """A workload takes minutes, and xdist's workers print nothing: once it is set up (it
        applies to the variant), say what it renders (its docstring's first line); then how it ended."""
        what = _workload(self.config, report.nodeid)
        if what and report.when == "setup" and report.passed:
            self._say(f"{_param(report.nodeid)}: rendering: {what}")
        elif what and report.when == "call":
            self._say(f"{_param(report.nodeid)}: {entry.check} {entry.outcome} after {report.duration:.0f} s")

    def _write(self, name: str) -> None:
        self.written[name] = self.verdicts[name].as_json()
        path = self.run.verdict_file(name)
        try:
            write(path, self.written[name])
        except OSError as e:  # a folder in the way, a full disk: said once, and the run goes on
            if path not in self.unwritable:
                self.unwritable.add(path)
                self._say(f"rendergate: {path}: the verdict cannot be written ({e.strerror or e})")

    def pytest_keyboard_interrupt(self, excinfo):
        """Ctrl-C, SIGTERM, or pytest.exit() in a check (whatever its return code): the run did not finish."""
        self.interrupted = True
        if isinstance(excinfo.value, pytest.exit.Exception) and self.active:
            self.selection.stopped = redact(f"pytest.exit({excinfo.value.msg!r})")[:1024]

    @pytest.hookimpl(tryfirst=True)  # before pytest's junitxml writes the file
    def pytest_sessionfinish(self, session, exitstatus):
        self.complete = exitstatus not in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR) and not self.interrupted
        distributed = self.config.pluginmanager.getplugin("dsession")
        stopped = session.shouldfail or session.shouldstop or getattr(distributed, "shouldstop", False)
        if stopped and self.verdicts:
            self.selection.stopped = redact(str(stopped))
        for name, verdict in self.verdicts.items():
            verdict.complete, verdict.finished = self.complete, now_iso()
            if verdict.sandboxes:  # each sandbox held its GPU until the end of the run
                verdict.gpu_seconds = round(sum(time.time() - s["at"] for s in verdict.sandboxes))
            self._write(name)
        xml = pytest_internals.junit_xml(self.config) if self.active else None
        for name, written in sorted(self.written.items()) if xml else ():
            xml.add_global_property(f"rendergate.verdict.{name}", State(written["state"]).label)
            xml.add_global_property(f"rendergate.summary.{name}", "\n".join(written["summary"]))

    def pytest_terminal_summary(self, terminalreporter):
        checks = [c for v in self.verdicts.values() for c in v.checks]
        if not checks:
            return
        counts: dict[str, int] = {}
        for entry in checks:
            counts[entry.outcome] = counts.get(entry.outcome, 0) + 1
        terminalreporter.section("rendergate")
        terminalreporter.line("checks: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
        for name, verdict in sorted(self.written.items()):
            state = State(verdict["state"])
            colour = {State.PASSED: "green", State.FAILED: "red"}.get(state, "yellow")
            ran_on = verdict["host"].get("host")
            where = f" on {ran_on}" if ran_on != self.run.host["host"] else ""  # an engine on another machine
            terminalreporter.line(f"verdict {name}{where}: {state.said} "
                                  f"({self.run.verdict_file(name)})", **{colour: True})
            review = self.reviewer(Verdict.from_json(verdict), self.run.verdict_file(name))
            for line in ([review.headline()] if review else []) + verdict["summary"]:
                terminalreporter.line(f"  {printable(line)}")
        used = gpu_seconds([Verdict.from_json(v) for v in self.written.values()])
        if used:
            terminalreporter.line("Modal GPU-seconds: " + ", ".join(f"{gpu} {s} s" for gpu, s in used.items()))
        if not self.complete:
            terminalreporter.line("the run was interrupted: these results are PARTIAL")
