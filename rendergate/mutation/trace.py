"""The files the checks use: recorded while the suites run on the good image (inotify on the
image's layer folders), each with its package or wheel, and what is never mutated and why."""
from __future__ import annotations

import os
import re
import threading
from pathlib import Path, PurePosixPath

import docker
from inotify_simple import INotify, flags

from rendergate.core.known_causes import CONFIG_FILE
from rendergate.engines.docker_engine import Engine
from rendergate.mutation.operators import UsedFile

# What the run does not mutate, and why: a file the image regenerates when it is missing or bad
# is no defect, and a file every program needs only says that nothing runs.
NOT_MUTATED = (
    (re.compile(r"(^|/)__pycache__/|\.pyc$"), "a cache Python regenerates"),
    (re.compile(r"^etc/ld\.so\.cache$"), "a cache the dynamic loader does without"),
    (re.compile(r"^var/cache/"), "a cache"),
    (re.compile(r"\.fmt$"), "a TeX format, regenerated on demand"),
    (re.compile(r"(^|/)(ld-linux[^/]*\.so[^/]*|ld-[\d.]+\.so|libc(-[\d.]+)?\.so(\.6)?)$"), "the C library: every program needs it"),
)


class MutationError(Exception):
    """Mutation testing cannot be done here; the line says why and what to do."""


def image_attrs(engine: Engine, ref: str) -> dict:
    try:
        return engine.client.images.get(ref).attrs
    except docker.errors.ImageNotFound:
        raise MutationError(f"image {ref} not found in the local engine: build or pull it first") from None


def image_layers(attrs: dict) -> list[Path]:
    """The image's layer folders in the engine's overlay2 store, topmost first."""
    graph = attrs.get("GraphDriver") or {}
    if graph.get("Name") != "overlay2":
        raise MutationError(f"mutation testing reads the engine's image layers, which needs its overlay2 storage driver "
                            f"(this engine stores images with {graph.get('Name') or 'an image store it does not show'})")
    data = graph["Data"]
    layers = [Path(data["UpperDir"])] + [Path(p) for p in (data.get("LowerDir") or "").split(":") if p]
    if not all(os.access(layer, os.R_OK | os.X_OK) for layer in layers):
        raise MutationError(f"cannot read the engine's image layers ({layers[0].parent.parent}): run it as root, "
                            "on the machine the Docker engine runs on")
    return layers


class FileTrace:
    """The files opened or executed in the image's layers while it is entered: inotify on every
    folder of every layer, read by a thread so that the kernel's queue never overflows. Any
    container of an image sharing those layers counts, so nothing else should run meanwhile."""

    def __init__(self, layers: list[Path]):
        self.layers = layers
        self.opened: dict[str, int] = {}  # path in the image -> index of the layer holding it
        self.lost_events = False
        self.failed: BaseException | None = None  # what stopped the reader, raised when the trace ends
        self._inotify = INotify()
        self._folders: dict[int, tuple[int, str]] = {}
        self._links: dict[str, str] = {}  # link in the image -> what it points at, found by the same walk
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> "FileTrace":
        for index, layer in enumerate(self.layers):
            for folder, dirs, files in os.walk(layer):
                self._note_links(layer, folder, dirs + files)
                try:
                    watch = self._inotify.add_watch(folder, flags.OPEN)
                except OSError as e:
                    self._inotify.close()
                    raise MutationError(f"cannot watch {folder}: {e.strerror}: raise fs.inotify.max_user_watches "
                                        "(sysctl) above the number of folders in the image") from None
                self._folders[watch] = (index, os.path.relpath(folder, layer))
        self._thread.start()
        return self

    def _note_links(self, layer: Path, folder: str, names: list[str]) -> None:
        for name in names:
            full = os.path.join(folder, name)
            if os.path.islink(full):
                inside, target = os.path.relpath(full, layer), os.readlink(full)
                self._links.setdefault(inside, os.path.normpath(  # topmost layer first: the upper one wins
                    target.lstrip("/") if target.startswith("/") else os.path.join(os.path.dirname(inside), target)))

    def link_names(self) -> dict[str, set[str]]:
        """For each file of the image, the names of the links that resolve to it (a few hops)."""
        names: dict[str, set[str]] = {}
        for link, target in self._links.items():
            for _ in range(8):
                if target not in self._links:
                    break
                target = self._links[target]
            names.setdefault(target, set()).add(PurePosixPath(link).name)
        return names

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._inotify.close()
        if self.failed is not None and exc[0] is None:
            raise MutationError(f"the file trace stopped: {type(self.failed).__name__}: {self.failed}")

    def _read(self) -> None:
        try:
            self._read_events()
        except BaseException as e:  # noqa: BLE001 - kept, and raised in the main thread
            self.failed = e

    def _read_events(self) -> None:
        while True:
            stopping = self._stop.is_set()
            for event in self._inotify.read(timeout=200):
                if event.mask & flags.Q_OVERFLOW:
                    self.lost_events = True
                elif event.name and not event.mask & flags.ISDIR and event.wd in self._folders:
                    index, folder = self._folders[event.wd]
                    self.opened.setdefault(os.path.normpath(os.path.join(folder, event.name)), index)
            if stopping:
                return

    def used_files(self) -> list[UsedFile]:
        owners = owners_of(self.layers)
        used = []
        for path, index in sorted(self.opened.items()):
            if not path.isprintable():  # a newline, a control or undecodable character: no RUN line can name it
                continue
            try:
                st = os.lstat(self.layers[index] / path)
            except OSError:
                continue
            if not (st.st_mode & 0o170000 == 0o100000):  # regular files only: whiteouts and devices are no target
                continue
            found = self.layers[index] / path
            used.append(UsedFile(path, st.st_size, bool(st.st_mode & 0o111), owners.get(path), _library(found), _config(path, found)))
        return used


def _library(found: Path) -> str | None:
    """A shared library's ELF class and machine (what another library must share to replace it)."""
    if ".so" not in found.name:
        return None
    with found.open("rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    return f"{head[4]}/{int.from_bytes(head[18:20], 'little' if head[5] == 1 else 'big')}"


def _config(path: str, found: Path) -> str | None:
    """A text configuration's text (UTF-8, no NUL), else None."""
    if not CONFIG_FILE.search(path):
        return None
    data = found.read_bytes()
    try:
        return None if b"\0" in data else data.decode()
    except UnicodeDecodeError:
        return None


def owners_of(layers: list[Path]) -> dict[str, str]:
    """Which Debian package (dpkg's file lists) or Python distribution (its RECORD) each file
    belongs to, read from the layers themselves (topmost first: the list an upper layer rewrote wins)."""
    owners: dict[str, str] = {}
    seen_lists: set[str] = set()
    for layer in layers:
        for listing in sorted((layer / "var/lib/dpkg/info").glob("*.list")):
            if listing.name in seen_lists:
                continue
            seen_lists.add(listing.name)
            package = listing.stem.split(":")[0]
            for line in listing.read_text(errors="replace").splitlines():
                path = line.strip().lstrip("/")
                owners.setdefault(path, package)
                if path.split("/", 1)[0] in ("bin", "sbin", "lib", "lib64"):  # merged /usr: /lib is /usr/lib
                    owners.setdefault("usr/" + path, package)
        for record in layer.glob("**/*.dist-info/RECORD"):
            distribution = record.parent.name.split("-")[0].lower()
            base = record.parent.parent.relative_to(layer)
            for line in record.read_text(errors="replace").splitlines():
                if line:
                    owners.setdefault(os.path.normpath(base / line.rsplit(",", 2)[0]), distribution)
    return owners


def not_mutated_because(used: UsedFile) -> str | None:
    return next((why for pattern, why in NOT_MUTATED if pattern.search(used.path)), None)
