"""The local kind of target: this machine itself, for a variant whose manifest says
`host = true`. Nothing is shared: each process checks in place."""
from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import testinfra

from rendergate.core.gpuinfo import GpuInfo
from rendergate.core.host_gpus import host_gpus
from rendergate.core.manifest import Variant
from rendergate.engines.hostload import HostLoad
from rendergate.engines.kind import Cell, Launch
from rendergate.engines.targets import Target


class LocalTarget(Target):
    """This machine itself (a variant that says `host = true`)."""

    in_container = False

    def __init__(self, variant: Variant, default_timeout: float):
        super().__init__(variant, testinfra.get_host("local://"), tempfile.mkdtemp(prefix="rendergate-"),
                         sys.executable, default_timeout)

    @property
    def name(self) -> str:
        return "this host"

    def put(self, local_dir: Path, remote_dir: str) -> None:
        shutil.copytree(local_dir, remote_dir, dirs_exist_ok=True)

    def fetch(self, remote_path: str) -> bytes:
        return Path(remote_path).read_bytes()

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


class LocalKind:
    """This machine itself: a variant whose manifest says `host = true`. Nothing is shared: each
    process checks in place."""
    name = "local"
    runtimes = {"default": "none (this host)"}
    shared = False
    runs_images = False  # only a variant that says `host = true`, whatever --target says

    options = ()

    def cells(self, variants: list[Variant], options: Mapping[str, object], image: str | None) -> list[Cell]:
        return [Cell(v, self.name) for v in variants]

    def prepare(self, cells: list[Cell], launch: Launch) -> None:
        """Nothing to prepare on this host."""

    def obtain(self, cells: list[Cell], launch: Launch, failed) -> None:
        """No image to obtain."""

    def checked_in(self, cell: Cell) -> str:
        return "local"

    def describe(self, cell: Cell, host: dict, launch: Launch) -> dict:
        return {**host, "sandbox_runtime": self.runtimes["default"]}

    def gpus(self, cell: Cell, launch: Launch) -> list[GpuInfo]:
        return host_gpus()

    def host_load(self, cell: Cell, launch: Launch, target: Target) -> HostLoad | None:
        """What other processes use of this host, measured beside a timed sample."""
        return HostLoad(launch.owner_pid)

    def start(self, cell: Cell, launch: Launch) -> Target:
        return LocalTarget(cell.variant, launch.check_timeout)

    def attach(self, cell: Cell, handle: dict, timeout: float) -> Target:
        """Never asked (nothing is shared): this host, in place."""
        return LocalTarget(cell.variant, timeout)

    def release(self, handle: dict) -> None:
        """Nothing outlives a process here."""

    def sweep(self, cells: list[Cell], run_id: str) -> None:
        """Nothing to sweep."""
