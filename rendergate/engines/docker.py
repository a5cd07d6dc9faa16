"""The docker kind of target: a container of the variant's image in a Docker engine (the
environment's, or each one --engine names: a matrix of engines), shared by the run's workers (one
starts it, the others attach), released when the run ends.

The docker SDK is imported where a container is used, not with this module: the plugin imports
it (through kinds) in every process, most of which never touch Docker."""
from __future__ import annotations

import io
import shlex
import sys
import tarfile
import time
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path

from rendergate.core.advice import checked
from rendergate.core.diagnosis import Cause, CheckFailed, Facts, last_line
from rendergate.core.gpuinfo import GpuInfo, gpus_from_probe
from rendergate.core.grammars import diagnose
from rendergate.core.manifest import Variant
from rendergate.engines.docker_engine import Engine, EngineError, docker_sdk, in_parallel, obtain
from rendergate.engines.docker_shell import RootShell, shell_fault
from rendergate.engines.endpoint import Endpoint, EndpointError, resolve
from rendergate.engines.engine_host import EngineHost, learn
from rendergate.engines.hostload import HostLoad, TargetLoad, containers_seconds
from rendergate.engines.kind import Cell, Launch, Option, SetupError
from rendergate.engines.progress import BuildProgress
from rendergate.core.contents import image_config
from rendergate.engines.targets import Result, Target, worker_count, worker_folder, worker_slot


def _image_info(ref: str, image) -> dict:
    """An image of the engine as verdicts name it."""
    return {"ref": ref, "digest": image.id, "repo_digests": image.attrs.get("RepoDigests", [])}


def _engine_silent(error) -> str:
    return f"the Docker engine stopped answering while the checks ran ({type(error).__name__}): is dockerd still running?"


class _ContainerShell:
    """The one thing a Target needs from its machine, run(command) -> rc, stdout, stderr: an exec
    through the engine's API. Not testinfra's docker backend, which spawns a shell and the docker
    CLI on this host for each command (about 20 ms more CPU an exec; checks make dozens). Its own
    client, with no read timeout: a check's command may be silent for longer than the engine
    client's 120 s, and Target.run bounds it inside the container."""

    # What a command gets when its container stops under it: killed (137), or the engine's own words
    # on stdout for an exec it could no longer start (126: "task ... not found", "in a deleted state").
    _STOPPED_CODES = (126, 137, None)

    def __init__(self, container_id: str, endpoint: Endpoint):
        self.container_id = container_id
        try:
            self.api = endpoint.client(timeout=None).api
        except EndpointError as e:
            raise EngineError(str(e)) from None

    def run(self, command: str) -> Result:
        import requests  # the SDK's own transport

        try:
            exec_id = self.api.exec_create(self.container_id, ["/bin/sh", "-c", command])["Id"]
            stdout, stderr = [], []
            # Streamed and joined once: the SDK's non-streamed read appends frame by frame, quadratic in the output.
            for out, err in self.api.exec_start(exec_id, stream=True, demux=True):
                stdout.append(out or b"")
                stderr.append(err or b"")
            rc = self.api.exec_inspect(exec_id)["ExitCode"]
            if rc in self._STOPPED_CODES and self._stopped(settle=0.5 if rc == 137 else 0):
                raise CheckFailed(Cause.TARGET_UNAVAILABLE, self._why_not(None))
        except docker_sdk().errors.APIError as e:
            raise CheckFailed(Cause.TARGET_UNAVAILABLE, self._why_not(e)) from None
        except requests.exceptions.ConnectionError as e:
            raise CheckFailed(Cause.TARGET_UNAVAILABLE, _engine_silent(e)) from None
        return Result(command, rc, b"".join(stdout).decode(errors="replace"), b"".join(stderr).decode(errors="replace"))

    def _stopped(self, settle: float) -> bool:
        """Whether the container is no longer running, waiting up to `settle` seconds for the engine
        to say so (`docker kill` kills the command before the container's state turns)."""
        deadline = time.monotonic() + settle
        while True:
            try:
                if not self.api.inspect_container(self.container_id)["State"].get("Running"):
                    return True
            except docker_sdk().errors.NotFound:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _why_not(self, error) -> str:
        """Why the engine would not run (or finish) a command in the container, as its state tells."""
        import requests

        short = self.container_id[:12]
        try:
            state = self.api.inspect_container(self.container_id)["State"]
        except docker_sdk().errors.NotFound:
            return f"the container {short} is gone: removed while the checks ran (by `docker rm`, a cleanup job?)"
        except requests.exceptions.ConnectionError as e:
            return _engine_silent(e)
        if state.get("OOMKilled"):
            return f"the container {short} was killed for want of memory while the checks ran: give it more, or run fewer workers"
        if not state.get("Running"):
            return (f"the container {short} stopped while the checks ran (its main process exited "
                    f"{state.get('ExitCode')}): nothing more can run in it")
        return f"the Docker engine would not run a command in the container {short}: {error.explanation or error}"


class DockerTarget(Target):
    """A running container of the variant's image, as the image's own user. Started by the engine
    (entrypoint replaced by the keep-alive command), shared by the run's workers."""

    def __init__(self, variant: Variant, container, default_timeout: float, endpoint: Endpoint,
                 user: tuple[int, int] | None = None):
        self.container, self.endpoint = container, endpoint
        super().__init__(variant, _ContainerShell(container.id, endpoint),
                         worker_folder(worker_slot()), variant.settings.python, default_timeout)
        self.uid, self.gid = user or self._prepare()

    @property
    def name(self) -> str:
        return self.image_ref

    @property
    def image_ref(self) -> str:
        tags = self.container.image.tags
        return self.container.attrs.get("Config", {}).get("Image") or (tags[0] if tags else self.container.image.id)

    def started(self) -> dict:
        return {"container": self.container.name}

    def image_info(self) -> dict:
        return _image_info(self.image_ref, self.container.image)

    def image_config(self):
        try:
            image = self.container.image
            return image_config(image.attrs, image.history())
        except (docker_sdk().errors.DockerException, OSError) as e:  # requests' errors are OSErrors
            raise CheckFailed(Cause.TARGET_UNAVAILABLE, f"the engine would not show {self.image_ref}'s config: "
                                                        f"{type(e).__name__}") from None

    @classmethod
    def start(cls, engine: Engine, variant: Variant, image: str, run_id: str, owner: str, log_dir: Path,
              default_timeout: float, gpus: bool = False, runtime: str | None = None) -> "DockerTarget":
        """A new container of `image`, labelled as the run's (owner: the run's controlling process)."""
        try:
            container = engine.start(variant, image, run_id, owner, gpus=gpus, log_dir=log_dir, runtime=runtime)
        except EngineError as e:
            try:
                known = _image_info(image, engine.client.images.get(image))
            except docker_sdk().errors.DockerException:  # not in the engine: no image to name
                known = None
            raise EngineError(str(e), known, e.cause) from None
        try:
            return cls(variant, container, default_timeout, engine.endpoint)
        except EngineError as e:
            engine.remove(container.id)
            raise EngineError(str(e), _image_info(image, container.image), e.cause) from None

    @classmethod
    def attach(cls, variant: Variant, handle: dict, default_timeout: float, endpoint: Endpoint) -> "DockerTarget":
        """The container another worker started (and prepared) for the variant."""
        engine = Engine(endpoint=endpoint)
        try:
            container = engine.client.containers.get(handle["container"])
        except docker_sdk().errors.NotFound:
            raise EngineError(f"the container of {variant.name} ({handle['container'][:12]}) is gone: removed "
                              "while the run was using it") from None
        target = cls(variant, container, default_timeout, endpoint, user=(handle["uid"], handle["gid"]))
        target._adopt(handle)
        return target

    def handle(self) -> dict:
        return {**super().handle(), "container": self.container.id, "uid": self.uid, "gid": self.gid,
                "engine": self.endpoint.named}

    def _prepare(self) -> tuple[int, int]:
        """The image's user, and every worker's folder, made by root and owned by that user (a
        non-root image's user may not create them): everything a check writes goes there."""
        for _ in range(3):  # a container just started has answered an exec with nothing at all (a busy host)
            code, out = self.container.exec_run(["/bin/sh", "-c", "id -u && id -g"])
            if code != 0 or out.strip():
                break
            time.sleep(0.5)
        ids = out.decode(errors="replace").split()
        if code != 0 or len(ids) != 2 or not all(i.isdigit() for i in ids):
            text = out.decode(errors="replace")
            if self.container.exec_run(["/bin/sh", "-c", "exit 0"], user="0")[0] == 0:  # the shell runs: `id` does not
                found = checked(diagnose(text, code, "id -u (the target's first command)", Facts()), RootShell(self.container))
                raise EngineError(f"{self.image_ref} cannot run `id` in its shell: {found.message}", cause=found.cause)
            said = f"{self.image_ref} has no usable /bin/sh ({last_line(text)})"
            broken = shell_fault(self.container, text)
            if broken:
                raise EngineError(f"{said}: {broken.message}", cause=broken.cause)
            raise EngineError(f"{said}: rendergate runs every check through /bin/sh and coreutils inside the image; "
                              "add a shell (e.g. busybox) to the image to validate it")
        uid, gid = int(ids[0]), int(ids[1])
        folders = " ".join(worker_folder(n) for n in range(max(worker_count(), self.slot + 1)))
        # As uid 0, not "root": an image without /etc/passwd (FROM scratch) has no user of that name.
        code, out = self.container.exec_run(["/bin/sh", "-c", f"mkdir -p {folders} && chown {uid}:{gid} {folders}"],
                                            user="0")
        if code != 0:
            raise EngineError(f"cannot make {self.workdir} in {self.image_ref}: {last_line(out.decode(errors='replace'))}")
        return uid, gid

    def put(self, local_dir: Path, remote_dir: str) -> None:
        """Copy a folder in, owned by the image's user (so that checks may write beside it)."""
        if remote_dir != self.workdir:  # the worker's folder is there since the container started (_prepare)
            self.run(f"mkdir -p {shlex.quote(remote_dir)}")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for path in sorted(local_dir.rglob("*")):
                info = tar.gettarinfo(path, arcname=str(path.relative_to(local_dir)))
                info.uid, info.gid, info.uname, info.gname = self.uid, self.gid, "", ""
                if info.isreg():
                    with path.open("rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
        self.container.put_archive(remote_dir, buf.getvalue())

    def close(self) -> None:
        self._host.api.close()

    def fetch(self, remote_path: str) -> bytes:
        try:
            stream, _ = self.container.get_archive(remote_path)
        except docker_sdk().errors.NotFound:
            raise CheckFailed(Cause.OUTPUT_INVALID, f"{remote_path}: no such file in {self.name} (the command that "
                                                    "should have written it did not)") from None
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            return tar.extractfile(member).read()


class DockerKind:
    """A container of the variant's image in a Docker engine, shared by the run's workers: the
    environment's engine, or each engine --engine names (several: each variant on each, a cell
    per engine)."""
    name = "docker"
    runtimes = {"default": "engine default (runc)", "gvisor": "gVisor (runsc)"}
    engine_runtimes = {"default": None, "gvisor": "runsc"}  # --runtime -> the engine's OCI runtime
    shared = True
    runs_images = True

    options = (
        Option("--engine", "a Docker engine", "the Docker engine to run the images on: a URL (ssh://USER@HOST, "
               "tcp://HOST:2376 with DOCKER_TLS_VERIFY/DOCKER_CERT_PATH, unix:///PATH) or a docker context's name; "
               "repeatable: each variant on each engine, a cell per engine; default: DOCKER_HOST, else the current "
               "docker context, else the local socket", metavar="URL|CONTEXT", action="append"),
    )

    def cells(self, variants: list[Variant], options: Mapping[str, object], image: str | None) -> list[Cell]:
        for variant in variants:
            if not variant.image_ref:
                raise SetupError(f"{variant.manifest}: no image to check: no Dockerfile beside it, no "
                                 "`image = \"REF\"` in it and no --image; a manifest of the machine running the "
                                 "suite itself says `host = true`")
        named = list(options.get("engine") or [None])
        try:
            labels = [resolve(name).label for name in named]
        except EndpointError as e:
            raise SetupError(str(e)) from None
        if len(set(labels)) < len(labels):
            raise SetupError(f"--engine: {', '.join(str(n) for n in named)} name one engine twice (by its label: "
                             f"{', '.join(labels)}): name each engine once")
        several = len(named) > 1
        return [Cell(v, self.name, engine=name, place=label if several else None)
                for v in variants for name, label in zip(named, labels)]

    @staticmethod
    def endpoint(cell: Cell) -> Endpoint:
        return resolve(cell.engine)

    def _host(self, cell: Cell, launch: Launch) -> EngineHost:
        return EngineHost.from_json(launch.engine_hosts[self.endpoint(cell).label])

    def prepare(self, cells: list[Cell], launch: Launch) -> None:
        """Before anything runs, on each engine: it answers, stale containers are gone, the runtime
        asked for is there, and what its host is (engine_host.learn) is known."""
        for endpoint in dict.fromkeys(self.endpoint(c) for c in cells):
            try:
                engine = Engine(endpoint=endpoint)
            except EngineError as e:
                raise SetupError(str(e)) from None
            engine.sweep_stale()
            wanted = self.engine_runtimes[launch.runtime]
            if wanted and not engine.has_runtime(wanted):
                raise SetupError(f"--runtime {launch.runtime}: the Docker engine at {endpoint} has no {wanted} runtime: "
                                 "install gVisor there and register it (scripts/ensure-gvisor does, on Debian)")
            launch.engine_hosts[endpoint.label] = learn(engine, launch.run_id, launch.owner).as_json()
            engine.client.close()

    def obtain(self, cells: list[Cell], launch: Launch, failed) -> None:
        """Each cell's image on its engine before any worker starts (docker_engine.obtain: built
        from its Dockerfile, or pulled with the engine's stored credentials), several at once
        (docker_engine.in_parallel), the progress shown as it goes. A build that fails is handed to
        `failed(cell, line)`: each of its checks then fails with that line, and the other builds go
        on; an image that cannot be pulled leaves nothing to validate (SetupError, at once)."""
        by_ref: dict[tuple[Endpoint, str], list[Cell]] = {}  # cells of one image (two manifests naming it) make it once
        for cell in cells:
            by_ref.setdefault((self.endpoint(cell), cell.variant.image_ref), []).append(cell)

        def maker(where: tuple[Endpoint, str]) -> Variant:  # the variant that builds it, if one does
            return next((c.variant for c in by_ref[where] if c.variant.built_here(where[1])), by_ref[where][0].variant)

        def made(engine: Engine, where: tuple[Endpoint, str]) -> str:
            def build(variant: Variant) -> str:
                return engine.build(variant, launch.reports_dir / "logs", launch.base_image, launch.extra_ca,
                                    progress=progress)
            return obtain(engine, maker(where), where[1], build, progress)

        with BuildProgress(stream=sys.stdout) as progress, \
                closing(in_parallel(by_ref, made, endpoint=lambda where: where[0])) as outcomes:
            for where, outcome in outcomes:
                if not isinstance(outcome, BaseException):
                    continue
                if not isinstance(outcome, EngineError):
                    raise outcome
                on = f" (on {where[0]})" if where[0] != resolve() else ""
                if not maker(where).built_here(where[1]):
                    raise SetupError(f"{by_ref[where][0].variant.name}{on}: {outcome}") from None
                for cell in by_ref[where]:
                    failed(cell, f"{outcome}{on}")

    def checked_in(self, cell: Cell) -> str:
        return f"{cell.place}/{cell.variant.image_ref}" if cell.place else cell.variant.image_ref

    def describe(self, cell: Cell, host: dict, launch: Launch) -> dict:
        return self._host(cell, launch).describe(host)

    def gpus(self, cell: Cell, launch: Launch) -> list[GpuInfo]:
        nvml = self._host(cell, launch).nvml
        return gpus_from_probe(nvml) if nvml else []

    def host_load(self, cell: Cell, launch: Launch, target: Target) -> HostLoad | None:
        """Other processes' use of the engine's host: this one's, the run's own containers not
        counted as others; another one's, read in the target's container (none under gVisor,
        whose /proc is the sandbox's own)."""
        host = self._host(cell, launch)
        if host.here:
            return HostLoad(launch.owner_pid, containers_seconds(Engine(endpoint=self.endpoint(cell)), launch.run_id))
        return TargetLoad(target, host.cpus) if launch.runtime == "default" else None

    def start(self, cell: Cell, launch: Launch) -> Target:
        return DockerTarget.start(Engine(endpoint=self.endpoint(cell)), cell.variant, cell.variant.image_ref,
                                  launch.run_id, launch.owner, launch.reports_dir / "logs", launch.check_timeout,
                                  gpus=bool(self.gpus(cell, launch)), runtime=self.engine_runtimes[launch.runtime])

    def attach(self, cell: Cell, handle: dict, timeout: float) -> Target:
        return DockerTarget.attach(cell.variant, handle, timeout, self.endpoint(cell))

    def release(self, handle: dict) -> None:
        Engine(endpoint=resolve(handle.get("engine"))).remove(handle["container"])

    def sweep(self, cells: list[Cell], run_id: str) -> None:
        """Containers of the run started but never recorded (a worker killed while starting one),
        on every engine of its cells."""
        for endpoint in dict.fromkeys(self.endpoint(c) for c in cells):
            try:
                engine = Engine(endpoint=endpoint)
            except EngineError:
                continue
            for container in engine.containers(run_id):
                engine.remove(container["id"])
