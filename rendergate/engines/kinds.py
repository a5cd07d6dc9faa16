"""Targets by name: where a variant's checks run. A kind is one class with the same small surface
(its cells from the command line's options, its preparation, start / attach / release of one
target, how reports describe it) and one line in KINDS; the pytest plugin asks only KINDS.
The Target classes themselves (how a command reaches the machine) are rendergate.targets'.

A run's unit is a Cell: one variant on one kind of target, and in a GPU matrix on one GPU type.
"""
from __future__ import annotations

import fcntl
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from rendergate.engines.docker_engine import Engine, EngineError
from rendergate.core.gpuinfo import GpuInfo, nominal
from rendergate.core.host_gpus import host_gpu_names, host_gpus
from rendergate.engines.hostload import HostLoad, containers_seconds
from rendergate.core.manifest import Variant
from rendergate.engines.modal import GPU_TYPES, ModalTarget, ModalUnavailable, check_credentials, plan
from rendergate.engines.progress import BuildProgress
from rendergate.release.promotion import obtain
from rendergate.core.redact import redact
from rendergate.core.runstate import RunState
from rendergate.engines.targets import DockerTarget, LocalTarget, Target

# A Modal GPU of the matrix: TYPE or TYPE:COUNT.
GPU_SPEC = re.compile(r"(?P<type>[A-Za-z0-9-]+)(?::(?P<count>[1-9]))?")


class SetupError(Exception):
    """The run cannot start as asked (an option, the engine, an image); one actionable line."""


@dataclass(frozen=True)
class Cell:
    """One variant where this run checks it: on a kind of target, in a GPU matrix on one GPU type."""
    variant: Variant
    kind: str  # a key of KINDS
    gpu_type: str | None = None

    @property
    def key(self) -> str:
        """The cell as the run knows it (its verdict's file name): the variant, and the GPU type in a matrix."""
        return f"{self.variant.name}@{self.gpu_type}" if self.gpu_type else self.variant.name


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
    max_gpus: int = 4
    sandbox_timeout: int = 3600


class LocalKind:
    """This machine itself: a variant whose manifest says `host = true`. Nothing is shared: each
    process checks in place."""
    name = "local"
    runtimes = {"default": "none (this host)"}
    shared = False
    runs_images = False  # only a variant that says `host = true`, whatever --target says

    def cells(self, variants: list[Variant], gpu: str, image: str | None) -> list[Cell]:
        return [Cell(v, self.name) for v in variants]

    def prepare(self, cells: list[Cell], launch: Launch) -> None:
        """Nothing to prepare on this host."""

    def obtain(self, cells: list[Cell], launch: Launch, failed) -> None:
        """No image to obtain."""

    def checked_in(self, cell: Cell) -> str:
        return "local"

    def describe(self, cell: Cell, host: dict, runtime: str) -> dict:
        return {**host, "sandbox_runtime": self.runtimes["default"]}

    def gpus(self, cell: Cell) -> list[GpuInfo]:
        return host_gpus()

    def host_load(self, launch: Launch, owner_pid: int) -> HostLoad | None:
        """What other processes use of this host, measured beside a timed sample."""
        return HostLoad(owner_pid)

    def start(self, cell: Cell, launch: Launch) -> Target:
        return LocalTarget(cell.variant, launch.check_timeout)

    def release(self, handle: dict) -> None:
        """Nothing outlives a process here."""

    def sweep(self, run_id: str) -> None:
        """Nothing to sweep."""


class DockerKind:
    """A container of the variant's image in the local Docker engine, shared by the run's workers."""
    name = "docker"
    runtimes = {"default": "engine default (runc)", "gvisor": "gVisor (runsc)"}
    engine_runtimes = {"default": None, "gvisor": "runsc"}  # --runtime -> the engine's OCI runtime
    shared = True
    runs_images = True

    def cells(self, variants: list[Variant], gpu: str, image: str | None) -> list[Cell]:
        if gpu:
            raise SetupError("--gpu is a GPU matrix on Modal: it needs --target modal")
        for variant in variants:
            if not variant.image_ref:
                raise SetupError(f"{variant.manifest}: no image to check: no Dockerfile beside it, no "
                                 "`image = \"REF\"` in it and no --image; a manifest of the machine running the "
                                 "suite itself says `host = true`")
        return [Cell(v, self.name) for v in variants]

    def prepare(self, cells: list[Cell], launch: Launch) -> None:
        """Before anything runs: the engine answers, stale containers are gone, the runtime asked
        for is there."""
        try:
            engine = Engine()
        except EngineError as e:
            raise SetupError(str(e)) from None
        engine.sweep_stale()
        wanted = self.engine_runtimes[launch.runtime]
        if wanted and not engine.has_runtime(wanted):
            raise SetupError(f"--runtime {launch.runtime}: the Docker engine has no {wanted} runtime: "
                             "run scripts/ensure-gvisor (installs Debian's runsc and registers it)")

    def obtain(self, cells: list[Cell], launch: Launch, failed) -> None:
        """Each cell's image here before any worker starts (promotion.obtain: built from its
        Dockerfile, or pulled with the engine's stored credentials), the progress shown as it goes.
        A build that fails is handed to `failed(cell, line)`: each of its checks then fails with
        that line; an image that cannot be pulled leaves nothing to validate (SetupError)."""
        engine = Engine()
        with BuildProgress(stream=sys.stdout) as progress:
            def build(variant: Variant) -> str:
                return engine.build(variant, launch.reports_dir / "logs", launch.base_image, launch.extra_ca,
                                    progress=progress)

            for cell in cells:
                variant = cell.variant
                try:
                    obtain(engine, variant, variant.image_ref, build, progress)
                except EngineError as e:
                    if not variant.built_here(variant.image_ref):
                        raise SetupError(f"{variant.name}: {e}") from None
                    failed(cell, str(e))

    def checked_in(self, cell: Cell) -> str:
        return cell.variant.image_ref

    def describe(self, cell: Cell, host: dict, runtime: str) -> dict:
        return host

    def gpus(self, cell: Cell) -> list[GpuInfo]:
        return host_gpus()

    def host_load(self, launch: Launch, owner_pid: int) -> HostLoad | None:
        """Other processes' use of this host, the run's own containers not counted as others."""
        return HostLoad(owner_pid, containers_seconds(Engine(), launch.run_id))

    def start(self, cell: Cell, launch: Launch) -> Target:
        return DockerTarget.start(Engine(), cell.variant, cell.variant.image_ref, launch.run_id, launch.owner,
                                  launch.reports_dir / "logs", launch.check_timeout, gpus=bool(host_gpu_names()),
                                  runtime=self.engine_runtimes[launch.runtime])

    def attach(self, cell: Cell, handle: dict, timeout: float) -> Target:
        return DockerTarget.attach(cell.variant, handle, timeout)

    def release(self, handle: dict) -> None:
        Engine().remove(handle["container"])

    def sweep(self, run_id: str) -> None:
        """Containers of the run started but never recorded (a worker killed while starting one)."""
        try:
            engine = Engine()
        except EngineError:
            return
        for container in engine.containers(run_id):
            engine.remove(container["id"])


class ModalKind:
    """A Modal Sandbox per (variant, GPU type) of the --gpu matrix, built from the variant's
    Dockerfile on Modal; at most --max-gpus at once across the run's workers."""
    name = "modal"
    runtimes = {"default": "Modal default (gVisor today)", "gvisor": "gVisor (Modal)", "vm": "VM (Modal)"}
    shared = True
    runs_images = True

    def cells(self, variants: list[Variant], gpu: str, image: str | None) -> list[Cell]:
        if image:
            raise SetupError("--image is for a local engine: on Modal each variant's image is built from its Dockerfile")
        gpus = [g.strip() for g in gpu.split(",") if g.strip()]
        unknown = [g for g in gpus if not (m := GPU_SPEC.fullmatch(g)) or m["type"] not in GPU_TYPES]
        if not gpus or unknown:
            raise SetupError(f"--target modal needs --gpu with Modal GPU types, each TYPE or TYPE:COUNT (1 to 9) "
                             f"({', '.join(GPU_TYPES)})" + (f"; not one: {', '.join(unknown)}" if unknown else ""))
        for variant in variants:
            if not variant.dockerfile:
                raise SetupError(f"{variant.manifest}: --target modal builds each variant's Dockerfile, and "
                                 f"{variant.name} has none")
        try:
            check_credentials()
        except ModalUnavailable as e:
            raise SetupError(str(e)) from None
        return [Cell(v, self.name, g) for v in variants for g in gpus]

    def prepare(self, cells: list[Cell], launch: Launch) -> None:
        """Modal builds and starts on its side: nothing to prepare here."""

    def obtain(self, cells: list[Cell], launch: Launch, failed) -> None:
        """Modal builds each image when its sandbox starts."""

    def checked_in(self, cell: Cell) -> str:
        return f"modal-{cell.gpu_type}"

    def describe(self, cell: Cell, host: dict, runtime: str) -> dict:
        return {**host, "host": "Modal", "gpu_type": cell.gpu_type, "gpus": f"Modal {cell.gpu_type}",
                "driver": "Modal's", "cuda": "Modal's", "container_toolkit": "Modal's", "docker_engine": "none",
                "sandbox_runtime": self.runtimes[runtime]}

    def gpus(self, cell: Cell) -> list[GpuInfo]:
        return [nominal(cell.gpu_type)]

    def host_load(self, launch: Launch, owner_pid: int) -> HostLoad | None:
        """The sandbox is not on this host: nothing here says what else ran beside it."""
        return None

    def start(self, cell: Cell, launch: Launch) -> Target:
        """A sandbox on the cell's GPU type, once one of the run's --max-gpus slots is free (the
        slot is held until the target closes)."""
        slot = _gpu_slot(launch)
        p = plan(cell.variant, cell.gpu_type, launch.base_image, launch.sandbox_timeout, launch.run_id, launch.runtime)
        try:
            return ModalTarget.start(cell.variant, cell.gpu_type, p, launch.check_timeout, slot)
        except Exception as e:  # Modal's client raises many kinds; the line must say which and why
            slot.close()
            raise EngineError(f"Modal could not start a sandbox of {cell.variant.name} on {cell.gpu_type}: "
                              f"{type(e).__name__}: {redact(str(e)).splitlines()[0] if str(e) else ''}") from None

    def attach(self, cell: Cell, handle: dict, timeout: float) -> Target:
        return ModalTarget.attach(cell.variant, cell.gpu_type, handle, timeout)

    def release(self, handle: dict) -> None:
        ModalTarget.release(handle)

    def sweep(self, run_id: str) -> None:
        """Every sandbox started is recorded (and ends with its timeout whatever happens)."""


def _gpu_slot(launch: Launch):
    """One of --max-gpus lock files of the run, held while a sandbox runs: all workers together
    never hold more GPUs than that."""
    while True:
        for i in range(launch.max_gpus):
            slot = open(RunState(launch.run_id).lock_file(f"gpu-{i}.lock"), "a")
            try:
                fcntl.flock(slot, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return slot
            except BlockingIOError:
                slot.close()
        time.sleep(1)


KINDS = {kind.name: kind for kind in (DockerKind(), ModalKind(), LocalKind())}
# What --target chooses among: the kinds that run a variant's image (`host = true` is always local).
IMAGE_TARGETS = tuple(name for name, kind in KINDS.items() if kind.runs_images)


def cells(variants: list[Variant], target: str, gpu: str, runtime: str, image: str | None) -> list[Cell]:
    """The run's cells: each variant on --target (a host variant on this host), with --image in
    place of the one variant's own image. SetupError when the options do not fit the target."""
    if runtime not in KINDS[target].runtimes:
        raise SetupError(f"--runtime {runtime} is not available with --target {target}")
    if image:
        if len(variants) != 1:
            raise SetupError("--image needs exactly one --variant: the manifest the image is checked against")
        if variants[0].host:
            raise SetupError(f"--image: {variants[0].name} is this machine itself (host = true in "
                             f"{variants[0].manifest}), not an image")
    on_images = [replace(v, image=image) if image else v for v in variants if not v.host]
    return KINDS[target].cells(on_images, gpu, image) + KINDS["local"].cells([v for v in variants if v.host], gpu, image)
