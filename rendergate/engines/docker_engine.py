"""The Docker engine: build variant images, start labelled containers, sweep stale ones.

Every container carries labels naming the run, the variant and the owning process, so that a
run killed before it could clean up is swept at the next start, and nothing is left behind.

Images are made several at once (`in_parallel`: RENDERGATE_BUILD_JOBS of them, default 3), each
thread with an Engine of its own (its own client and connections). The docker SDK (with requests
and urllib3, about 70 ms) is imported only when an Engine is made: the pytest plugin imports this
module in every process for its names (EngineError, owner_label), and a run that never touches
Docker does not pay for it.
"""
from __future__ import annotations

import io
import json
import os
import queue
import re
import socket
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from rendergate.core.diagnosis import Cause, last_line
from rendergate.core.manifest import Variant
from rendergate.core.redact import redact
from rendergate.engines.endpoint import Endpoint, EndpointError, resolve
from rendergate.engines.progress import EngineProgress

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")

LABEL_RUN = "rendergate.run"
LABEL_VARIANT = "rendergate.variant"
LABEL_OWNER = "rendergate.owner"  # host:boot:pid of the pytest process that owns the run (xdist's controller)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_BUILDER_CHATTER = re.compile(r"^(Removing intermediate container|---> |Running in )")
_STEP = re.compile(r"Step (\d+)/(\d+) : (.*)", re.S)  # the classic builder's "Step 3/9 : RUN ..."

BUILD_JOBS_SETTING = "RENDERGATE_BUILD_JOBS"  # how many images are built (or pulled) at once
BUILD_JOBS = 3  # its default: builds are mostly downloads (apt, pip) and a few compiles; 3 keep 2 cores busy


def docker_sdk():
    """The docker SDK (its errors and types too), imported where an engine is used, not when
    this module is."""
    import docker
    import docker.errors
    import docker.types
    return docker


class EngineError(Exception):
    """The engine cannot do what was asked; the message is one actionable line. `image`: the image
    it was asked to run, as verdicts name it, where it is known (an image that cannot start is
    still the image the verdict is about); `cause`: what the line blames, where it knows."""

    def __init__(self, message: str, image: dict | None = None, cause: Cause = Cause.TARGET_UNAVAILABLE):
        super().__init__(message)
        self.image = image
        self.cause = cause


def owner_label(pid: int | None = None) -> str:
    """The owner of a run's containers: this machine (its name and its kernel's boot, as two CI runners
    of one name that share an engine are not one machine) and the process."""
    return f"{_machine()}:{pid or os.getpid()}"


def _machine() -> str:
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = "noboot"
    return f"{socket.gethostname()}:{boot}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Engine:
    """A Docker engine (`endpoint`; None: the one the environment names: DOCKER_HOST, the docker
    context, the local socket), through one client of the SDK. `cancel`, when it is set, stops a
    build under way at its next line of output (EngineError): a build thread's way to end when the
    run is interrupted or has failed already."""

    def __init__(self, cancel: threading.Event | None = None, endpoint: Endpoint | None = None,
                 timeout: float | None = 120):
        self.cancel = cancel
        try:
            self.endpoint = endpoint or resolve()
            self.client = self.endpoint.client(timeout)
        except EndpointError as e:
            raise EngineError(str(e)) from None

    def identity(self) -> tuple[str, str]:
        """The engine's id and its host's name, as a verdict records them (what the gate binds to):
        EngineError when the engine gives no id it keeps (Podman's Docker API makes one at each call)."""
        first, second = self.client.info(), self.client.info()
        if not first.get("ID") or first.get("ID") != second.get("ID"):
            raise EngineError(f"the engine at {self.endpoint} gives no lasting id ({first.get('ID') or 'none'}, then "
                              f"{second.get('ID') or 'none'}; Podman's Docker API makes one at each call): a verdict "
                              "cannot be bound to it")
        return first["ID"], first.get("Name") or ""

    def has_runtime(self, name: str) -> bool:
        """Whether the engine can start containers with this OCI runtime (runsc, say)."""
        return name in (self.client.info().get("Runtimes") or {})

    def image_exists(self, ref: str) -> bool:
        docker = docker_sdk()
        try:
            self.client.images.get(ref)
            return True
        except docker.errors.ImageNotFound:
            return False

    def pull(self, ref: str, progress: EngineProgress | None = None) -> None:
        """Pull `ref` with the engine's stored registry credentials (`docker login`, credential
        helpers): the SDK reads them from the Docker config as the CLI does. `progress` hears of
        its layers as they come (None: nothing is shown)."""
        progress = progress or EngineProgress()
        progress.pull_started(ref)
        try:
            size = self._pulled(ref, progress)
        except BaseException:
            progress.pull_failed(ref)
            raise
        progress.pull_finished(ref, size)

    def _pulled(self, ref: str, progress: EngineProgress) -> int:
        """Pull as the SDK's images.pull does (its tag defaults, its final lookup), with the stream
        read here so that progress sees it; returns the image's size."""
        docker = docker_sdk()
        from docker.utils import parse_repository_tag
        repository, tag = parse_repository_tag(ref)
        tag = tag or "latest"
        try:
            for event in self.client.api.pull(repository, tag=tag, stream=True, decode=True):
                if self.cancel is not None and self.cancel.is_set():
                    raise EngineError(f"pulling {ref} stopped: the run was interrupted or ended")
                progress.pull_event(ref, event)
            return self.client.images.get(f"{repository}{'@' if tag.startswith('sha256:') else ':'}{tag}").attrs["Size"]
        except docker.errors.ImageNotFound:
            raise EngineError(f"cannot pull {ref}: no such image in its registry (or no access to it: `docker login` "
                              "the registry with an account that can read it)") from None
        except docker.errors.APIError as e:
            why = redact(str(e.explanation or e))
            hint = ""
            if re.search(r"unauthorized|authentication required|no basic auth credentials|denied", why, re.I):
                hint = f": log in first (`docker login {ref.split('/')[0]}`), or use an account that can read it"
            raise EngineError(f"cannot pull {ref}: {why}{hint}") from None
        except docker.errors.DockerException as e:  # a bad reference, an unreachable registry
            raise EngineError(f"cannot pull {ref}: {redact(str(e))}") from None

    def image_digest(self, ref: str) -> str:
        """The image's id (the digest of its config): what a verdict is about."""
        docker = docker_sdk()
        try:
            return self.client.images.get(ref).id
        except docker.errors.ImageNotFound:
            raise EngineError(f"image {ref} not found in the engine at {self.endpoint}: build or pull it there first "
                              "(make gate does)") from None

    def build(self, variant: Variant, log_dir: Path, base_image: str | None = None,
              extra_ca: Path | None = None, progress: EngineProgress | None = None) -> str:
        """Build the variant's image from its folder; the full log is kept in log_dir. `progress`
        hears of each step as it starts (None: nothing is shown until the build ends)."""
        progress = progress or EngineProgress()
        tag = variant.build_tag
        progress.build_started(variant.name, tag)
        try:
            self._built(variant, tag, log_dir, base_image, extra_ca, progress)
        except BaseException:
            progress.build_failed(variant.name)
            raise
        progress.build_finished(variant.name, tag, self.client.images.get(tag).attrs["Size"])
        return tag

    def _base_labels(self, base_image: str) -> dict[str, str]:
        """OCI's labels naming the base an image is built FROM (what its SBOM and the promotion
        review say of it): the reference, and its image id when the engine holds it (the same
        whether it was built here or pulled)."""
        try:
            image = self.client.images.get(base_image)
        except docker_sdk().errors.DockerException:  # pulled by the build itself: its digest is not known here
            return {"org.opencontainers.image.base.name": base_image}
        return {"org.opencontainers.image.base.name": base_image, "org.opencontainers.image.base.digest": image.id}

    def _built(self, variant: Variant, tag: str, log_dir: Path, base_image: str | None, extra_ca: Path | None,
               progress: EngineProgress) -> None:
        """The build itself: its stream logged and its steps reported; a failure raised as one line
        naming the failing step."""
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as tar:
            tar.add(variant.folder, arcname=".")
            if extra_ca:
                tar.add(extra_ca, arcname="extra-ca.crt")
        buildargs = {"BASE_IMAGE": base_image} if base_image else {}
        labels = self._base_labels(base_image) if base_image else {}
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{variant.name}-build.log"
        # Renamed when complete: builds of other processes and threads never interleave in it.
        partial = log_dir / f".{variant.name}-build.log.{os.getpid()}-{threading.get_ident()}"
        step, step_output, error = "the start", "", None
        with partial.open("w") as log:
            stream = self.client.api.build(fileobj=io.BytesIO(context.getvalue()), custom_context=True,
                                           tag=tag, buildargs=buildargs, labels=labels, rm=True, forcerm=True,
                                           decode=True)
            for chunk in stream:
                if self.cancel is not None and self.cancel.is_set():  # the engine stops the build when we hang up
                    raise EngineError(f"building {tag} stopped at {step}: the run was interrupted or ended")
                text = redact(chunk.get("stream", ""))
                log.write(text)
                if text.startswith("Step "):
                    step, step_output = text.split(":", 1)[0].lower(), ""
                    if started := _STEP.match(text):
                        progress.build_step(variant.name, int(started[1]), int(started[2]), started[3])
                elif not _BUILDER_CHATTER.match(text.strip()):
                    step_output += _ANSI.sub("", text)
                if "error" in chunk:
                    error = redact(chunk["error"].strip())
                    log.write(f"ERROR: {error}\n")
        os.replace(partial, log_path)
        if error:
            hint = ""
            if "CERTIFICATE_VERIFY_FAILED" in step_output:
                hint = "; the build does not trust this network's TLS proxy: pass --extra-ca=PEM (or RENDERGATE_EXTRA_CA)"
            raise EngineError(f"building {tag} failed at {step}: {last_line(step_output) if step_output.strip() else error}{hint} "
                              f"(full log: {log_path})")

    def start(self, variant: Variant, image: str, run_id: str, owner: str, gpus: bool, log_dir: Path,
              runtime: str | None = None):
        """Start one long-lived container for the variant, shared by every worker of the run; its
        log is kept if it does not come up. The image's entrypoint is replaced by the keep-alive
        command (an entrypoint such as `manim` or `blender` would take it as its arguments and
        exit); the image's own user is kept."""
        docker = docker_sdk()
        settings = variant.settings
        requests = []
        if gpus and settings.wants_gpus:
            count = -1 if settings.gpus == "all" else settings.gpus
            requests.append(docker.types.DeviceRequest(count=count, capabilities=[["gpu"]]))
        labels = {LABEL_RUN: run_id, LABEL_VARIANT: variant.name, LABEL_OWNER: owner}
        command = list(settings.command)
        try:
            container = self.client.containers.run(
                image, command[1:], entrypoint=command[:1], detach=True, labels=labels, environment=settings.env,
                init=True, device_requests=requests, shm_size=settings.shm_size, runtime=runtime,
                nano_cpus=int(settings.cpus * 1e9) if settings.cpus else None,
                name=f"rendergate-{variant.name}-{run_id[:12]}")  # VARIANT_NAME is a valid container name
        except docker.errors.APIError as e:
            why = str(e.explanation or e)
            hint = ""
            if "could not select device driver" in why:
                hint = ": the engine has no NVIDIA container toolkit (install nvidia-container-toolkit, " \
                       "then `nvidia-ctk runtime configure --runtime=docker` and restart the engine)"
            elif re.search(r"executable file not found|no such file or directory", why):
                raise EngineError(f"{image} cannot run the keep-alive command {json.dumps(command)}: {command[0]} is "
                                  f"not in the image; set run.command in {variant.manifest} to a command of the "
                                  "image that keeps running") from None
            raise EngineError(f"could not start {image}: {why}{hint}") from None
        deadline = time.monotonic() + 15
        while True:  # `run` answers "created"; a keep-alive command that exits does so within moments
            time.sleep(0.05)
            container.reload()
            if container.status in ("running", "exited", "dead") or time.monotonic() > deadline:
                break
        if container.status != "running":
            log_dir.mkdir(parents=True, exist_ok=True)
            log_path = log_dir / f"{container.name}.log"
            log_path.write_text(redact(container.logs().decode(errors="replace")))
            state = container.attrs.get("State", {})
            container.remove(force=True)
            raise EngineError(f"container of {image} did not stay up (status {container.status}, "
                              f"exit {state.get('ExitCode')}): command {json.dumps(command)}; "
                              f"log kept at {log_path}")
        return container

    def containers(self, run_id: str | None = None) -> list[dict]:
        """rendergate's containers (of one run, or all): id, name and labels of each. Listed
        without inspecting each one, so containers removed meanwhile by other runs do no harm."""
        label = f"{LABEL_RUN}={run_id}" if run_id else LABEL_RUN
        listed = self.client.api.containers(all=True, filters={"label": label})
        return [{"id": c["Id"], "name": c["Names"][0].lstrip("/"), "labels": c.get("Labels") or {}} for c in listed]

    def remove(self, container_id: str) -> None:
        docker = docker_sdk()
        try:
            self.client.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:  # already gone
            pass
        except docker.errors.APIError as e:
            if e.status_code != 409:  # 409: another process is removing it already (a sweep, a run's owner)
                raise

    def sweep_stale(self) -> list[str]:
        """Remove containers left by runs of this machine (its name and boot) whose owning process is gone."""
        removed = []
        machine = _machine()
        for container in self.containers():
            owner, _, pid = container["labels"].get(LABEL_OWNER, "").rpartition(":")
            if owner == machine and pid.isdigit() and not _pid_alive(int(pid)):
                self.remove(container["id"])
                removed.append(container["name"])
        return removed


def build_jobs(count: int) -> int:
    """How many of `count` images are made at once: RENDERGATE_BUILD_JOBS (default 3), at most
    `count`, at least 1 (1: one after another, as before)."""
    said = os.environ.get(BUILD_JOBS_SETTING, "").strip()
    if not said:
        return max(1, min(BUILD_JOBS, count))
    if not said.isdigit() or int(said) < 1:
        raise EngineError(f"{BUILD_JOBS_SETTING}={said!r}: the number of images built at once, 1 or more (default "
                          f"{BUILD_JOBS})")
    return max(1, min(int(said), count))


def in_parallel(items: Iterable[Item], work: Callable[[Engine, Item], Outcome], jobs: int | None = None,
                endpoint: Callable[[Item], Endpoint | None] = lambda item: None) -> Iterator[tuple[Item, Outcome | Exception]]:
    """`work(engine, item)` for every item, `jobs` at a time (default build_jobs), each thread with
    an Engine of its own; yields each item with its outcome, or the exception it raised (one
    failure never stops the others), as they end. Read it inside `contextlib.closing`: the threads
    are daemons, and when the caller stops early (Ctrl-C, SIGTERM, an exception), nothing more
    starts, a build under way stops at its next line of output, and one that says nothing ends
    with the process, which hangs up on the engine: the classic builder then stops it and removes
    its container (forcerm)."""
    items = list(items)
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for item in items:
        todo.put(item)
    ended: queue.Queue = queue.Queue()
    cancel = threading.Event()

    def worker() -> None:
        engines: dict[Endpoint | None, Engine] = {}
        while not cancel.is_set():
            try:
                item = todo.get_nowait()
            except queue.Empty:
                break
            try:
                where = endpoint(item)
                if where not in engines:
                    engines[where] = Engine(cancel, where)
                outcome = work(engines[where], item)
            except BaseException as e:  # handed to the caller (a thread that died would never answer)
                if isinstance(e, EngineError):
                    e.__traceback__ = None  # its frames held the build's stream, and its connection, open
                outcome = e
            ended.put((item, outcome))
        for engine in engines.values():
            engine.client.close()

    for number in range(jobs or build_jobs(len(items))):
        threading.Thread(target=worker, name=f"rendergate-build-{number}", daemon=True).start()
    try:
        for _ in items:
            yield ended.get()
    finally:
        cancel.set()


def obtain(engine: Engine, variant: Variant, ref: str, build, progress: EngineProgress | None = None) -> str:
    """Make `ref` present locally: as it is, built (the variant's own tag) or pulled. Returns how."""
    if variant.built_here(ref):
        build(variant)
        return "built"
    if engine.image_exists(ref):
        return "found locally"
    engine.pull(ref, progress=progress)
    return "pulled"
