"""What a run was asked to run beyond every check of every variant (pytest's options and ini
settings that leave checks out, a run stopped early), as its verdicts keep it: a trimmed run
proves only what it ran."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from rendergate.core.redact import bounded, printable


@dataclass
class Selection:
    """What pytest was asked to run, as a verdict records it: everything that makes a run hold
    fewer checks than its manifest implies, so that a check that did not run is said why."""
    named: list[str] = field(default_factory=list)  # files or node ids of checks named on the command line
    keyword: str = ""  # -k
    markexpr: str = ""  # -m
    deselect: list[str] = field(default_factory=list)  # --deselect
    ignore: list[str] = field(default_factory=list)  # --ignore, --ignore-glob
    last_failed: bool = False  # --lf
    stepwise: bool = False  # --sw
    maxfail: int = 0  # -x, --maxfail
    collection_errors: list[str] = field(default_factory=list)  # "path: the error", one line each
    stopped: str = ""  # why the session stopped before its end, as pytest says
    dry_run: str = ""  # an option that runs no check: --collect-only, --setup-only, --setup-plan, --fixtures
    overrides: list[str] = field(default_factory=list)  # -o of what pytest collects (python_files, norecursedirs, ...)
    collecting: list[str] = field(default_factory=list)  # the same keys as the run's ini file sets them (not a trim)
    ini: str = ""  # that ini file (-c, or the one pytest found)

    @classmethod
    def of(cls, verdict: dict) -> "Selection":
        return cls(**verdict.get("selection", {}))

    def trims(self) -> list[str]:
        """The options that left checks out, as typed: "-k 'not glx_answers'"."""
        found = [f"-k {self.keyword!r}"] if self.keyword else []
        found += [f"-m {self.markexpr!r}"] if self.markexpr else []
        found += [f"--deselect {', '.join(self.deselect)}"] if self.deselect else []
        found += [f"--ignore {', '.join(self.ignore)}"] if self.ignore else []
        found += ["--lf"] if self.last_failed else []
        found += ["--sw"] if self.stepwise else []
        found += [self.dry_run] if self.dry_run else []
        found += [f"-o {', '.join(self.overrides)}"] if self.overrides else []
        return found

    def why_missing(self, complete: bool) -> str:
        """Why expected checks are absent from the run, as far as the run knows."""
        deselecting = [t for t in self.trims() if t != self.dry_run]
        reasons = [f"deselected with {'; '.join(deselecting)}"] if deselecting else []
        reasons += [f"the run called no check ({self.dry_run})"] if self.dry_run else []
        reasons += [f"the run named only {', '.join(self.named)}"] if self.named else []
        reasons += [f"{len(self.collection_errors)} module{'s' * (len(self.collection_errors) != 1)} of checks failed "
                    "to collect"] if self.collection_errors else []
        reasons += [f"the run stopped early: {self.stopped}"] if self.stopped else []
        reasons += [] if complete else ["the run did not finish"]
        if self.collecting and not reasons:  # a repo's own ini may hide a folder of checks as well as -o does
            reasons.append(f"not collected under {self.ini or 'the ini file'}'s {', '.join(self.collecting)}")
        return printable("; ".join(reasons) or "never ran: a worker crashed, or a plugin left them out")

    def as_json(self) -> dict:
        return {k: bounded(v, 1024) if isinstance(v, str) else [bounded(x, 1024) for x in v[:64]] if isinstance(v, list)
                else v for k, v in asdict(self).items()}
