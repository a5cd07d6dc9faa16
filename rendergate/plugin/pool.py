"""The pool of targets a process's checks use, one per cell: a shared kind's target (a container,
a sandbox) opened once per run and attached to by every other worker."""
from __future__ import annotations

from rendergate.core import contents
from rendergate.core.diagnosis import Cause, CheckFailed
from rendergate.core.runstate import RunState
from rendergate.engines.docker_engine import EngineError
from rendergate.engines.kind import Cell
from rendergate.engines.kinds import KINDS
from rendergate.engines.targets import Target
from rendergate.plugin.run import RunConfig


class TargetPool:
    """The targets this process uses, one per cell. A shared kind's target (a container, a
    sandbox) is opened by the run's first process that needs it, under the cell's lock, and
    recorded; the others attach to it. A cell whose target cannot be opened (build failed, say)
    is recorded as such: every check of it fails fast with that line, in every worker, without
    trying again."""

    def __init__(self, run: RunConfig):
        self.run = run
        self.state = RunState(run.run_id)
        self._targets: dict[str, Target] = {}
        self.images: dict[str, dict] = {}  # by cell: the image its target runs, as verdicts name it
        self.started: list[dict] = []  # what this process started, as verdicts count it (Target.started)

    def get(self, cell: Cell) -> Target:
        if cell.key in self._targets:
            return self._targets[cell.key]
        kind = KINDS[cell.kind]
        if not kind.shared:  # this machine: nothing shared, each process checks in place
            self._targets[cell.key] = kind.start(cell, self.run.launch)
            return self._targets[cell.key]
        opened = False
        with self.state.claimed(cell.key) as record:
            if record is None:
                record, opened = self._open_and_record(cell), True
            elif "handle" in record:
                try:
                    self._targets[cell.key] = kind.attach(cell, record["handle"], self.run.launch.check_timeout)
                except EngineError as e:
                    record = {"failed": str(e)}
        if record.get("image"):  # an image that cannot start is still the one its verdict is about
            self.images[cell.key] = record["image"]
        if "failed" in record:
            raise CheckFailed(Cause(record.get("cause", Cause.TARGET_UNAVAILABLE.value)), record["failed"])
        if opened and self.run.record_sbom and record.get("image"):  # once the others may attach: they need not wait
            self._record_sbom(cell, self._targets[cell.key])
        return self._targets[cell.key]

    def _record_sbom(self, cell: Cell, target: Target) -> None:
        """What the cell's image is made of, as an SBOM beside its verdict. What cannot be read is
        said in it. Whatever else goes wrong (a file that cannot be written, an image's metadata no
        SBOM can hold) leaves the review without it, which it says: evidence for the reviewer, never
        a check failed or a run stopped for it."""
        path = contents.sbom_path(self.run.verdict_file(cell.key))
        try:
            contents.write(path, contents.record(target))
        except Exception:  # noqa: BLE001 (see the docstring)
            path.unlink(missing_ok=True)  # never an SBOM an earlier run left

    def _open_and_record(self, cell: Cell) -> dict:
        try:
            target = KINDS[cell.kind].start(cell, self.run.launch)
        except EngineError as e:
            record = {"failed": str(e), "image": e.image, "cause": e.cause.value}
        else:
            self._targets[cell.key] = target
            self.started.append(target.started())
            record = {"kind": cell.kind, "handle": target.handle(), "image": target.image_info()}
        self.state.record(cell.key, record)
        return record

    def close(self) -> None:
        for target in self._targets.values():
            target.close()
        self._targets.clear()
