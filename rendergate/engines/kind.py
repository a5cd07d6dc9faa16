"""What a kind of target is: the TargetKind protocol every kind implements (docker, modal, local),
and what they share: a run's unit (Cell), a kind's own command-line options (Option), what
starting targets needs (Launch), and the one error a kind raises when a run cannot start as
asked (SetupError). The kinds by name are rendergate.engines.kinds'; the Target classes (how a
command reaches the machine) are rendergate.engines.targets' and each kind's module's.

A run's unit is a Cell: one variant on one kind of target, in a GPU matrix on one GPU type, and
on one Docker engine of several (--engine A --engine B).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from rendergate.core.gpuinfo import GpuInfo
from rendergate.core.manifest import Variant
from rendergate.engines.hostload import HostLoad
from rendergate.engines.targets import Target


class SetupError(Exception):
    """The run cannot start as asked (an option, the engine, an image); one actionable line."""


@dataclass(frozen=True)
class Cell:
    """One variant where this run checks it: on a kind of target, in a GPU matrix on one GPU type,
    on the Docker engine the user named (`engine`: a URL or a context; None: the environment's),
    which names the cell in a matrix of engines (`place`: the engine's label)."""
    variant: Variant
    kind: str  # a key of KINDS
    gpu_type: str | None = None
    engine: str | None = None
    place: str | None = None

    @property
    def key(self) -> str:
        """The cell as the run knows it (its verdict's file name): the variant, and in a matrix its
        GPU type or its engine."""
        where = self.gpu_type or self.place
        return f"{self.variant.name}@{where}" if where else self.variant.name


@dataclass(frozen=True)
class Option:
    """A command-line option of one kind of target (--gpu of modal): the plugin adds it, and a run
    on another --target that sets it is refused with `what` it is."""
    flag: str
    what: str  # "a GPU matrix on Modal", as the refusal says it
    help: str
    default: object = None
    type: Callable | None = None
    metavar: str | None = None
    action: str | None = None  # "append": the option may be given several times

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Launch:
    """What starting the run's targets needs: the run's identity and the command line's settings."""
    run_id: str
    owner: str  # host:pid of the process that owns the run's targets
    runtime: str  # --runtime
    check_timeout: float
    reports_dir: Path
    base_image: str | None = None
    extra_ca: Path | None = None
    options: Mapping[str, object] = field(default_factory=dict)  # the kinds' own options, by their dest
    engine_hosts: dict[str, dict] = field(default_factory=dict)  # by engine label: the host each kind's prepare() learned

    @property
    def owner_pid(self) -> int:
        return int(self.owner.rsplit(":", 1)[1])


class TargetKind(Protocol):
    """A kind of target: where a variant's checks run. One module implements it, one line of
    rendergate.engines.kinds registers it; the plugin asks only that table."""
    name: str  # what --target names it (the local kind is never named: `host = true` variants)
    runtimes: Mapping[str, str]  # the --runtime values it offers, each as reports describe it
    shared: bool  # one target per cell for the whole run, attached to by every worker; else one per process
    runs_images: bool  # it runs a variant's image (a --target choice); else it is this host
    options: tuple[Option, ...]  # its own command-line options

    def cells(self, variants: list[Variant], options: Mapping[str, object], image: str | None) -> list[Cell]:
        """The run's cells of these variants (SetupError when the options do not fit the kind)."""

    def prepare(self, cells: list[Cell], launch: Launch) -> None:
        """Before anything runs, in the run's owner: what the kind needs is there (SetupError if
        not); what it learns of the machines its cells run on goes in launch.engine_hosts (which the
        workers are handed)."""

    def obtain(self, cells: list[Cell], launch: Launch, failed: Callable[[Cell, str], None]) -> None:
        """Each cell's image made present; a cell that cannot be is handed to `failed` with its line."""

    def checked_in(self, cell: Cell) -> str:
        """Where the cell is checked, as its checks' ids say it ("rendergate/manim:dev", "modal-L4")."""

    def describe(self, cell: Cell, host: dict, launch: Launch) -> dict:
        """The host description a cell's verdict states, from this machine's (`host`)."""

    def gpus(self, cell: Cell, launch: Launch) -> list[GpuInfo]:
        """The GPUs the cell's checks run on."""

    def host_load(self, cell: Cell, launch: Launch, target: Target) -> HostLoad | None:
        """What else uses the machine the target runs on, for timed samples; None where unknown."""

    def start(self, cell: Cell, launch: Launch) -> Target:
        """A target of the cell, started (EngineError, with the image it was about, if it cannot be)."""

    def attach(self, cell: Cell, handle: dict, timeout: float) -> Target:
        """The target another process started and recorded (its handle())."""

    def release(self, handle: dict) -> None:
        """The target of a recorded handle, removed when the run ends."""

    def sweep(self, cells: list[Cell], run_id: str) -> None:
        """Targets of the run that were started but never recorded (a worker killed while starting one)."""
