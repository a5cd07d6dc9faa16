"""The modal kind of target: a variant on Modal's GPUs, behind the same run() / put() / fetch() as
the local and docker targets. Modal is the distributed engine: the variant's image is built there
from the same Dockerfile (build args passed through), and one Sandbox per (variant, GPU type)
runs the checks; the matrix is fanned out by pytest-xdist, not by a scheduler of ours.

What can be decided offline is here as plain data (plan()), so that the translation from a
manifest to Modal's image and sandbox arguments is tested without Modal's servers.
"""
from __future__ import annotations

import base64
import fcntl
import hashlib
import io
import os
import re
import shlex
import tarfile
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rendergate.core.gpuinfo import GpuInfo, nominal
from rendergate.core.manifest import Variant, positive
from rendergate.core.redact import redact, remember_secrets
from rendergate.core.runstate import RunState
from rendergate.engines.docker_engine import EngineError
from rendergate.engines.hostload import HostLoad
from rendergate.engines.kind import Cell, Launch, Option, SetupError
from rendergate.engines.targets import Target, worker_folder, worker_slot

APP_NAME = "rendergate"
# Modal's GPU types (modal.com/docs/guide/gpu); `:N` asks for N of them.
GPU_TYPES = ("T4", "L4", "A10", "A10G", "L40S", "A100", "A100-40GB", "A100-80GB", "H100", "H200", "B200")
CONFIG = Path(os.environ.get("MODAL_CONFIG_PATH", Path.home() / ".modal.toml"))


class ModalUnavailable(Exception):
    """Modal cannot be used from here; one actionable line, without any secret in it."""


def require_client() -> None:
    """Modal's client is an optional extra of rendergate: without it, say how to get it."""
    try:
        import modal  # noqa: F401
    except ImportError:
        raise ModalUnavailable("--target modal needs Modal's client, an optional extra: "
                               "pip install 'rendergate[modal]'") from None


def check_credentials() -> None:
    """Modal's own credential sources (MODAL_TOKEN_ID / MODAL_TOKEN_SECRET, or its config file),
    remembered for redaction; without them, Modal's client says why, as one line of ours."""
    tokens = {k: os.environ[k] for k in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET") if os.environ.get(k)}
    if CONFIG.exists() or CONFIG.is_symlink():
        try:
            profiles = tomllib.loads(CONFIG.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as e:
            raise ModalUnavailable(f"{CONFIG}: Modal's config cannot be read ({type(e).__name__}): fix or remove it, "
                                   "then `modal token new`") from None
        for profile in profiles.values():
            if isinstance(profile, dict):
                tokens.update({f"MODAL_{k.upper()}": v for k, v in profile.items()
                               if k in ("token_id", "token_secret") and isinstance(v, str)})
    remember_secrets(tokens)
    require_client()
    if len(tokens) >= 2:
        return
    import modal
    import modal.exception

    try:
        modal.Client.from_env()
    except modal.exception.AuthError as e:
        raise ModalUnavailable(f"no Modal credentials ({str(e).split('.')[0]}): run `modal token new` (it writes "
                               f"{CONFIG}) or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET") from None


@dataclass(frozen=True)
class Plan:
    """Everything Modal is asked for one (variant, GPU type) cell."""
    dockerfile: Path
    context_dir: Path
    build_args: dict
    command: tuple[str, ...]
    sandbox: dict  # the keyword arguments of modal.Sandbox.create, but for the image and app


def gpu_request(variant: Variant, gpu_type: str) -> str | None:
    wanted = variant.settings.gpus
    if wanted == "none":
        return None
    return gpu_type if wanted == "all" else f"{gpu_type}:{wanted}"


def plan(variant: Variant, gpu_type: str, base_image: str | None, timeout: int, run_id: str,
         runtime: str = "default") -> Plan:
    settings = variant.settings
    sandbox = {"gpu": gpu_request(variant, gpu_type), "timeout": timeout, "env": settings.env,
               "tags": {"rendergate.run": run_id, "rendergate.variant": variant.name, "rendergate.gpu": gpu_type}}
    if settings.cpus:
        sandbox["cpu"] = settings.cpus
    if runtime != "default":  # gVisor is Modal's pick today; "vm" is the control for a platform failure
        sandbox["runtime"] = runtime
    return Plan(dockerfile=variant.dockerfile, context_dir=variant.folder,
                build_args={"BASE_IMAGE": base_image} if base_image else {}, command=settings.command,
                sandbox=sandbox)


def build_digest(variant: Variant) -> str:
    """What a Modal cell's image is built from, as a digest: the variant's folder (its Dockerfile
    and every file of its build context). Modal builds each cell's image on its side, so this is
    what binds a cell's verdict to an image: the matrix gate refuses a cell whose verdict was
    built from other files than the variant has now (a --base-image build argument is named in
    the verdict's image reference)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in variant.folder.rglob("*") if p.is_file() and not p.is_symlink()):
        name = path.relative_to(variant.folder).as_posix().encode()
        digest.update(len(name).to_bytes(4, "big") + name + hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()


def image(p: Plan):
    """The modal.Image the plan builds: the variant's own Dockerfile, on Modal's builders."""
    import modal

    return modal.Image.from_dockerfile(p.dockerfile, context_dir=p.context_dir, build_args=p.build_args)


@dataclass(frozen=True)
class _Output:
    rc: int
    stdout: str
    stderr: str


class _SandboxHost:
    """The one thing a Target needs from its machine: run(command) -> rc, stdout, stderr."""

    def __init__(self, sandbox):
        self.sandbox = sandbox

    def run(self, command: str, stdin: bytes | None = None) -> _Output:
        process = self.sandbox.exec("/bin/sh", "-c", command, text=stdin is None)
        if stdin is not None:
            process.stdin.write(stdin)
            process.stdin.write_eof()
            process.stdin.drain()
        stdout, stderr = process.stdout.read(), process.stderr.read()
        rc = process.wait()
        decode = (lambda b: b.decode(errors="replace")) if isinstance(stdout, bytes) else str
        return _Output(rc, decode(stdout), decode(stderr))


class ModalTarget(Target):
    """A Modal Sandbox of the variant's image on one GPU type, shared by the run's workers;
    terminated by the run's owner (release()), and by Modal after its timeout whatever happens."""

    def __init__(self, variant: Variant, gpu_type: str, sandbox, default_timeout: float, slot=None,
                 built: dict | None = None):
        self.sandbox = sandbox
        self.gpu_type = gpu_type
        self.built = built  # the image as the verdict names it: Modal's image id, and build_digest()
        self.slot = slot  # the run's GPU slot this process holds while the sandbox runs (the starter's only)
        super().__init__(variant, _SandboxHost(sandbox), worker_folder(worker_slot()),
                         variant.settings.python, default_timeout)

    @property
    def name(self) -> str:
        return f"the Modal sandbox of {self.variant.name} on {self.gpu_type}"

    @classmethod
    def start(cls, variant: Variant, gpu_type: str, p: Plan, default_timeout: float, slot) -> "ModalTarget":
        import modal

        app = modal.App.lookup(APP_NAME, create_if_missing=True)
        built = image(p)
        sandbox = modal.Sandbox.create(*p.command, app=app, image=built, **p.sandbox)
        return cls(variant, gpu_type, sandbox, default_timeout, slot, {
            "ref": f"modal image {getattr(built, 'object_id', None) or 'unnamed'} of {variant.dockerfile}"
                   + (f" FROM {p.build_args['BASE_IMAGE']}" if p.build_args.get("BASE_IMAGE") else ""),
            "digest": build_digest(variant)})

    def image_info(self) -> dict | None:
        return self.built

    @classmethod
    def attach(cls, variant: Variant, gpu_type: str, handle: dict, default_timeout: float) -> "ModalTarget":
        """The sandbox another worker started for this (variant, GPU type) cell."""
        import modal

        target = cls(variant, gpu_type, modal.Sandbox.from_id(handle["sandbox"]), default_timeout)
        target._adopt(handle)
        return target

    def started(self) -> dict:
        return {"sandbox": {"gpu_type": self.gpu_type, "at": time.time()}}

    def close(self) -> None:
        if self.slot:
            self.slot.close()
            self.slot = None

    @staticmethod
    def release(handle: dict) -> None:
        import modal

        try:
            modal.Sandbox.from_id(handle["sandbox"]).terminate()
        except Exception:  # already gone (its timeout, or Modal stopped it): nothing left to release
            pass

    def handle(self) -> dict:
        return {**super().handle(), "sandbox": self.sandbox.object_id}

    def put(self, local_dir: Path, remote_dir: str) -> None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(local_dir, arcname=".")
        out = self._host.run(f"mkdir -p {shlex.quote(remote_dir)} && tar -x -C {shlex.quote(remote_dir)}", stdin=buf.getvalue())
        if out.rc != 0:
            raise OSError(f"copying {local_dir} into the sandbox failed: {out.stderr.strip()}")

    def fetch(self, remote_path: str) -> bytes:
        out = self._host.run(f"base64 -w0 {shlex.quote(remote_path)}")
        if out.rc != 0:
            raise OSError(f"{remote_path}: {out.stderr.strip()}")
        return base64.b64decode(out.stdout)


# A Modal GPU of the matrix: TYPE or TYPE:COUNT.
GPU_SPEC = re.compile(r"(?P<type>[A-Za-z0-9-]+)(?::(?P<count>[1-9]))?")


class ModalKind:
    """A Modal Sandbox per (variant, GPU type) of the --gpu matrix, built from the variant's
    Dockerfile on Modal; at most --max-gpus at once across the run's workers."""
    name = "modal"
    runtimes = {"default": "Modal default (gVisor today)", "gvisor": "gVisor (Modal)", "vm": "VM (Modal)"}
    shared = True
    runs_images = True
    options = (
        Option("--gpu", "a GPU matrix on Modal", "the GPU matrix, comma-separated Modal GPU types, e.g. T4,L4,A10G,H100",
               default="", metavar="TYPES"),
        Option("--max-gpus", "a limit of Modal sandboxes", "at most N sandboxes (GPUs) at once across all workers "
               "(default 4)", default=4, type=positive(int), metavar="N"),
        Option("--sandbox-timeout", "a limit of Modal sandboxes", "Modal ends a sandbox after this long whatever "
               "happens (default 3600)", default=3600, type=positive(int), metavar="SECONDS"),
    )

    def cells(self, variants: list[Variant], options: Mapping[str, object], image: str | None) -> list[Cell]:
        gpu = str(options["gpu"])
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

    def describe(self, cell: Cell, host: dict, launch: Launch) -> dict:
        return {**host, "host": "Modal", "gpu_type": cell.gpu_type, "gpus": f"Modal {cell.gpu_type}",
                "driver": "Modal's", "cuda": "Modal's", "container_toolkit": "Modal's", "docker_engine": "none",
                "sandbox_runtime": self.runtimes[launch.runtime]}

    def gpus(self, cell: Cell, launch: Launch) -> list[GpuInfo]:
        return [nominal(cell.gpu_type)]

    def host_load(self, cell: Cell, launch: Launch, target: Target) -> HostLoad | None:
        """The sandbox is not on this host: nothing here says what else ran beside it."""
        return None

    def start(self, cell: Cell, launch: Launch) -> Target:
        """A sandbox on the cell's GPU type, once one of the run's --max-gpus slots is free (the
        slot is held until the target closes)."""
        slot = _gpu_slot(launch)
        p = plan(cell.variant, cell.gpu_type, launch.base_image, launch.options["sandbox_timeout"], launch.run_id, launch.runtime)
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

    def sweep(self, cells: list[Cell], run_id: str) -> None:
        """Every sandbox started is recorded (and ends with its timeout whatever happens)."""


def _gpu_slot(launch: Launch):
    """One of --max-gpus lock files of the run, held while a sandbox runs: all workers together
    never hold more GPUs than that."""
    while True:
        for i in range(launch.options["max_gpus"]):
            slot = open(RunState(launch.run_id).lock_file(f"gpu-{i}.lock"), "a")
            try:
                fcntl.flock(slot, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return slot
            except BlockingIOError:
                slot.close()
        time.sleep(1)
