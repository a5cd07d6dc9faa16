"""Image mutation testing: how much of what can break in a real image the suites catch, and
whether their one line names it.

From a good image, rendergate derives single-defect mutants from what its checks actually use,
not from a hand-picked list. The suites are run once on the good image while the kernel records
every file opened or executed in the image's layers (inotify on the layers' folders: overlayfs
reports a file opened through a container's root on the layer that holds it, so shared
libraries ldd would list, modules dlopen'ed by Xorg, Mesa or ffmpeg, TeX's inputs, Python's
modules and data files are all seen). Each mutant is one of those files (or its folder) deleted,
truncated, replaced by a program that exits 1, or made non-executable: a real image, one layer
FROM the good one, validated by the whole variant suite, which is not told what was changed.

A mutant is *detected* when a check that did not fail on the good image fails on it, and
*root-caused* when a line of those failures names the mutated file, its package or its component
and none names another cause. Mutants nobody detects are listed for triage (an optional file, or
a gap). Producing the results is this module; the page is rendergate/pages.py's.
"""
from __future__ import annotations

import io
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from pathlib import Path, PurePosixPath

import docker
from inotify_simple import INotify, flags

from rendergate.core import verdict as verdicts
from rendergate.core.assets import SUITES
from rendergate.core.diagnosis import CONFIG_FILE
from rendergate.engines.docker_engine import Engine
from rendergate.core.manifest import Variant

# What the run does not mutate, and why: a file the image regenerates when it is missing or bad
# is no defect, and a file every program needs only says that nothing runs.
NOT_MUTATED = (
    (re.compile(r"(^|/)__pycache__/|\.pyc$"), "a cache Python regenerates"),
    (re.compile(r"^etc/ld\.so\.cache$"), "a cache the dynamic loader does without"),
    (re.compile(r"^var/cache/"), "a cache"),
    (re.compile(r"\.fmt$"), "a TeX format, regenerated on demand"),
    (re.compile(r"(^|/)(ld-linux[^/]*\.so[^/]*|ld-[\d.]+\.so|libc(-[\d.]+)?\.so(\.6)?)$"), "the C library: every program needs it"),
)
# Folders too shared to delete as one defect (deleting /usr/lib would say only that nothing runs).
SHARED_FOLDERS = re.compile(r"(s?bin|lib(32|64|exec)?|share|include|etc|usr|local|opt|var|x86_64-linux-gnu|aarch64-linux-gnu|"
                            r"site-packages|dist-packages|python3(\.\d+)?|X11|doc|man\d?|modules|drivers|extensions)")
# Names too common to count as naming a file ("__init__.py" names nothing in particular).
VAGUE_NAMES = {"__init__", "main", "index", "config", "default", "common", "base", "utils", "core", "data"}
MIN_NAME = 2
MIN_OWNER = 4  # a package name stripped of "lib" shorter than this is too common a word (x11, ssl, gl)
RUN_TIMEOUT = 1800  # one variant suite on one mutant, at most (seconds)
READS_EVERY_FILE = "reads_every_file"  # the mark of checks that read every file of the image (files_intact)


class Fault(str, Enum):
    """What kind of wrong a line says a thing is (the fault kind of its cause)."""
    MISSING = "missing"
    DAMAGED = "damaged"
    WRONG_VERSION = "wrong version"
    NOT_COMPILED = "not compiled in"
    MISCONFIGURED = "misconfigured"


# The fault kind each cause names (rendergate.diagnosis.Cause, by value); a cause not listed names
# none of them (a GPU, a driver, a host, a timing): a line with it never root-causes a planted defect.
FAULT_OF_CAUSE = {
    "tool-missing": Fault.MISSING, "system-library-missing": Fault.MISSING, "data-files-missing": Fault.MISSING,
    "python-module-missing": Fault.MISSING, "latex-package-missing": Fault.MISSING, "x-extension-missing": Fault.MISSING,
    "file-damaged": Fault.DAMAGED, "library-wrong-version": Fault.WRONG_VERSION,
    "feature-not-compiled": Fault.NOT_COMPILED, "config-invalid": Fault.MISCONFIGURED,
}
# A value of a configuration that names a file or a folder: an absolute path, or a file name of the
# kinds configurations name (a library, a JSON manifest, a font, a TeX file).
NAMED_VALUE = re.compile(r"(?<![\w./$-])(/(?:[\w.+-]+/)*[\w.+-]+|[\w+-]+(?:\.[\w+-]+)*\.(?:so(?:\.\d+)*|json|conf|ttf|otf|ttc|pfb|sty|cls))"
                         r"(?![\w/])")
COMMENT = re.compile(r"^\s*(#|;|%|//|<!--)")
# Tools that refuse an option they do not know, in their own words (tests/data/captures/cpu-host/
# *-unknown-option.txt) and with their own exit status: the words of a tool built without a
# feature, or of another version. {option} is the option as given, {bare} without its first dash.
REFUSALS = {
    "ffmpeg": ("Unrecognized option '{bare}'.\nError splitting the argument list: Option not found", 1),
    "dvisvgm": ("ERROR: unknown option {option}", 252),
    "Xorg": ("Unrecognized option: {option}\nuse: X [:<display>] [option]\n(EE) \nFatal server error:\n"
             "(EE) Unrecognized option: {option}\n(EE) ", 1),
    "glxinfo": ("Unknown option `{option}'\nUsage: glxinfo [-v] [-t] [-h] [-b] [-l] [-s] [-i] [-display <dname>]", 0),
    "xdpyinfo": ("xdpyinfo: unrecognized argument '{option}'\nusage:  xdpyinfo [options]", 1),
}
PLANTED = "/rendergate-mutant-file"  # where a mutant's new file is copied into the build, then moved over the target
REAL = ".rendergate-real"  # tool-refuses: the real program, beside its wrapper


class Kind(str, Enum):
    """One defect planted in a copy of the image."""
    DELETE = "delete"
    TRUNCATE = "truncate"
    EXIT_NONZERO = "exit-nonzero"
    NOT_EXECUTABLE = "not-executable"
    DELETE_FOLDER = "delete-folder"
    REPLACE_LIBRARY = "replace-library"  # by another shared library of the image, of the same architecture
    CONFIG_CUT_SHORT = "config-cut-short"  # a text configuration cut in the middle of a line
    CONFIG_NAMES_NOTHING = "config-names-nothing"  # one of its values changed to a path that names nothing
    TOOL_REFUSES = "tool-refuses"  # a wrapper: the tool refuses the first option it is given, in its own words

    def applies_to(self, used: "UsedFile") -> bool:
        program = used.executable and ".so" not in used.name
        return {Kind.DELETE: True, Kind.TRUNCATE: used.size > 0, Kind.EXIT_NONZERO: program,
                Kind.NOT_EXECUTABLE: program, Kind.DELETE_FOLDER: used.folder is not None,
                Kind.REPLACE_LIBRARY: used.library is not None,
                Kind.CONFIG_CUT_SHORT: used.config is not None and "\n" in used.config.strip(),
                Kind.CONFIG_NAMES_NOTHING: used.config is not None and _named_values(used.config) != [],
                Kind.TOOL_REFUSES: program and used.name in REFUSALS}[self]

    def faults(self, path: str) -> set[Fault]:
        """The fault kinds a line may say of this defect and be right."""
        if self is Kind.TRUNCATE:  # an empty configuration is one that does not parse
            return {Fault.DAMAGED, Fault.MISCONFIGURED} if CONFIG_FILE.search(path) else {Fault.DAMAGED}
        return {Kind.DELETE: {Fault.MISSING}, Kind.DELETE_FOLDER: {Fault.MISSING},
                Kind.EXIT_NONZERO: {Fault.DAMAGED}, Kind.NOT_EXECUTABLE: {Fault.DAMAGED},
                # a library that is not the package's own: of another version, or damaged, says the same fix
                Kind.REPLACE_LIBRARY: {Fault.WRONG_VERSION, Fault.DAMAGED},
                Kind.CONFIG_CUT_SHORT: {Fault.MISCONFIGURED, Fault.DAMAGED},
                Kind.CONFIG_NAMES_NOTHING: {Fault.MISCONFIGURED},
                Kind.TOOL_REFUSES: {Fault.NOT_COMPILED}}[self]


def _named_values(text: str) -> list[re.Match]:
    """The values of a configuration that name a file or folder, outside its comments."""
    found, offset = [], 0
    for line in text.splitlines(keepends=True):
        if not COMMENT.match(line):
            found += [m for m in NAMED_VALUE.finditer(text, offset, offset + len(line))]
        offset += len(line)
    return found


def refusing_wrapper(tool: str, real: str) -> str:
    """A shell script in place of `tool` that refuses the first option it is given as `tool` does
    (REFUSALS), and otherwise runs the real program, moved to `real`."""
    words, status = REFUSALS[tool]
    said = "".join(f"printf '%s\\n' \"{_shell_text(line)}\" >&2\n" for line in words.split("\n"))
    return ("#!/bin/sh\n"
            f"# rendergate mutant: {tool} refusing the first option it is given, in its own words\n"
            "for option in \"$@\"; do\n"
            "  case \"$option\" in -[!0-9]*)\n"
            "    bare=${option#-}\n"
            f"{said}"
            f"    exit {status};;\n"
            "  esac\n"
            "done\n"
            f"exec {shlex.quote(real)} \"$@\"\n")


def _shell_text(line: str) -> str:
    """A line for a double-quoted shell string, {option} and {bare} its variables."""
    escaped = re.sub(r'([\\"$`])', r"\\\1", line)
    return escaped.replace("{option}", "$option").replace("{bare}", "$bare")


@dataclass(frozen=True)
class UsedFile:
    """A file of the image that the checks opened or executed on the good image."""
    path: str  # inside the image, without the leading /
    size: int
    executable: bool
    owner: str | None  # the Debian package or Python distribution it belongs to
    library: str | None = None  # a shared library's ELF class and machine ("64/62"), else None
    config: str | None = field(default=None, repr=False)  # a text configuration's text, else None

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name

    @property
    def folder(self) -> str | None:
        """Its folder, where deleting that folder is one defect of one component."""
        parent = PurePosixPath(self.path).parent
        if len(parent.parts) < 2 or SHARED_FOLDERS.fullmatch(parent.name):
            return None
        return str(parent)

    @property
    def component(self) -> str:
        """What a reviewer would call its owner: the package, or the top folders it lives in."""
        if self.owner:
            return self.owner
        parts = PurePosixPath(self.path).parts
        for index, part in enumerate(parts[:-1]):  # a Python module without a RECORD: the module it is
            if part in ("site-packages", "dist-packages"):
                return PurePosixPath(parts[index + 1]).stem.lower()
        kept = [p for p in parts[:-1] if not SHARED_FOLDERS.fullmatch(p)]
        return kept[0] if kept else self.name


@dataclass(frozen=True)
class Mutant:
    id: str
    kind: Kind
    path: str  # the file, or the folder for delete-folder
    component: str
    aliases: tuple[str, ...] = ()  # the names of links to it (sh for dash, libfoo.so.1 for libfoo.so.1.2.3)
    detail: str = ""  # what exactly was done, where the kind does not say it all
    donor: str = ""  # replace-library: the library put in its place
    content: str = field(default="", repr=False)  # the file planted in its place (a configuration, a wrapper)

    def dockerfile(self, image_id: str, user: str) -> str:
        restore = f"USER {user}\n" if user else ""
        planted = f"COPY planted {PLANTED}\n" if self.content else ""
        return f"FROM {image_id}\nUSER root\n{planted}RUN {self.command()}\n{restore}"

    def command(self) -> str:
        """The RUN line that plants it (a new file moved over a program: one in use, chmod itself,
        is no obstacle; a file's contents replaced in place keep its mode and owner)."""
        path = "/" + self.path
        quoted, new = shlex.quote(path), shlex.quote(path + ".rendergate-mutant")
        return {Kind.DELETE: f"rm -f {quoted}",
                Kind.TRUNCATE: f": > {quoted}",
                Kind.EXIT_NONZERO: f"printf '#!/bin/sh\\nexit 1\\n' > {new} && chmod 0755 {new} && mv -f {new} {quoted}",
                Kind.NOT_EXECUTABLE: f"chmod a-x {quoted}",
                Kind.DELETE_FOLDER: f"rm -rf {quoted}",
                Kind.REPLACE_LIBRARY: f"cat {shlex.quote('/' + self.donor)} > {quoted}",
                Kind.CONFIG_CUT_SHORT: f"cat {PLANTED} > {quoted} && rm -f {PLANTED}",
                Kind.CONFIG_NAMES_NOTHING: f"cat {PLANTED} > {quoted} && rm -f {PLANTED}",
                Kind.TOOL_REFUSES: f"mv -f {quoted} {shlex.quote(path + REAL)} && cat {PLANTED} > {quoted} && "
                                   f"chmod 0755 {quoted} && rm -f {PLANTED}"}[self.kind]

    def context(self, image_id: str, user: str) -> bytes:
        """The build context: its Dockerfile, and the file it plants."""
        files = {"Dockerfile": self.dockerfile(image_id, user).encode()}
        if self.content:
            files["planted"] = self.content.encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, data in files.items():
                entry = tarfile.TarInfo(name)
                entry.size = len(data)
                tar.addfile(entry, io.BytesIO(data))
        return buffer.getvalue()

    def names(self) -> set[str]:
        """Words that name what was mutated: its file name (and a library's soname stem), its
        folder for a deleted folder, and its owner's names (owner_names)."""
        path = PurePosixPath(self.path)
        found = {path.name, *self.aliases}
        if ".so" in path.name:
            found.add(path.name.split(".so")[0] + ".so")
        elif "." in path.name:
            found.add(path.name.rsplit(".", 1)[0])
        if not _telling(path.name) and len(path.parts) > 1:  # av/__init__.py: its folder tells which
            found.add(f"{path.parent.name}/{path.name}")
        return {n.lower() for n in found if _telling(n)} | self.owner_names()

    def owner_names(self) -> set[str]:
        """Its package or component, with and without version and prefix ("libx11-6", "libx11";
        never a bare "x11", which names a folder too)."""
        bare = re.sub(r"[-_.]\d[\d.]*(-\d+)?$", "", self.component)
        stripped = re.sub(r"^(lib|python3-)", "", bare)
        return {n.lower() for n in (self.component, bare, stripped if len(stripped) > MIN_OWNER or stripped == bare else "")
                if _telling(n)}

    def named_in(self, line: str) -> bool:
        """Whether the line names it: one of its names, as a word of its own ("libpango" in
        "libpango-1.0.so.0", not "pango" in "ManimPango"), outside the line's [cause] tag; an
        owner's name not as a folder of a path ("x11" is not in /usr/share/X11/xkb)."""
        said = re.sub(r"\s*\[[a-z-]+\]$", "", line).lower()
        owners = self.owner_names()
        return any(re.search(rf"(?<![a-z0-9_{'/' if n in owners else ''}]){re.escape(n)}(?![a-z0-9_{'/' if n in owners else ''}])", said)
                   for n in self.names())


class Finding(str, Enum):
    """What the suites said of one mutant, strictly: a line must name it, say the right kind of
    fault, and advise nothing the image contradicts."""
    ROOT_CAUSED = "root-caused"  # a line names the mutated file (a link to it, its package or wheel) and its kind of fault
    WRONG_KIND = "wrong kind"  # a line names it, but as another kind of fault (missing where it is damaged)
    UNKNOWN_CAUSE = "unknown cause"  # detected; the lines quote an error, claim no kind of fault of it
    OTHER_CAUSE = "another cause"  # detected; a line names a cause that is not it
    WRONG_ADVICE = "wrong advice"  # a line advises to install what the image has: the worst answer
    UNDETECTED = "undetected"  # every check came out as on the good image: triage it
    NOT_BUILT = "not built"  # the defect could not be planted (the RUN itself failed)
    NOT_JUDGED = "not judged"  # the suite run gave no verdict (crashed, timed out)


@dataclass
class Failure:
    check: str
    cause: str | None
    line: str
    names_it: bool = False  # the line names the mutated thing
    fault: str | None = None  # the kind of fault its cause claims (Fault), if any
    contradicted: list[str] = field(default_factory=list)  # what it advises to install that the image has


@dataclass
class MutantResult:
    mutant: Mutant
    finding: Finding
    failures: list[Failure] = field(default_factory=list)  # checks that did not fail on the good image and do here
    note: str = ""  # why it was not built or judged
    seconds: float = 0.0


class MutationError(Exception):
    """Mutation testing cannot be done here; the line says why and what to do."""


# -- What the checks use ---------------------------------------------------------------------

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


def _telling(name: str) -> bool:
    """A name that names something in particular ("__init__.py" names no module in particular)."""
    lowered = name.lower()
    return len(lowered) >= MIN_NAME and lowered not in VAGUE_NAMES and (lowered.split(".")[0] not in VAGUE_NAMES or "/" in lowered)


def not_mutated_because(used: UsedFile) -> str | None:
    return next((why for pattern, why in NOT_MUTATED if pattern.search(used.path)), None)


def plan(used: list[UsedFile], count: int, seed: int) -> list[Mutant]:
    """`count` mutants: first one of each kind of defect that applies to some file (so that every
    operator is drawn on every image that has what it needs: a library with a stand-in, a
    configuration, a tool whose words are known; the rarest drawn first), then spread over the components the checks use
    (one file of each in turn, so a component of many files does not crowd out the others) and
    over the kinds (each file gets the kind used least so far that applies to it), in an order
    fixed by `seed`."""
    rng = random.Random(seed)
    by_component: dict[str, list[UsedFile]] = {}
    for f in used:
        by_component.setdefault(f.component, []).append(f)
    components = sorted(by_component)
    rng.shuffle(components)
    for files in by_component.values():
        rng.shuffle(files)
    used_kinds = dict.fromkeys(Kind, 0)
    mutants: list[Mutant] = []

    def take(kind: Kind, f: UsedFile) -> None:
        by_component[f.component].remove(f)
        used_kinds[kind] += 1
        mutants.append(_mutant(f"m{len(mutants) + 1:02d}", kind, f, used, rng))

    fitting = {kind: [f for component in components for f in by_component[component] if _fits(kind, f, used)] for kind in Kind}
    for kind in sorted(Kind, key=lambda k: len(fitting[k])):  # the rarest first: the files they need are few
        free = [f for f in fitting[kind] if f in by_component[f.component]]
        if free and len(mutants) < count:
            take(kind, rng.choice(free))
    while len(mutants) < count and any(by_component.values()):
        for component in components:
            if len(mutants) >= count or not by_component[component]:
                continue
            f = by_component[component][-1]
            kinds = [k for k in Kind if _fits(k, f, used) and (k, _target(k, f)) not in {(m.kind, m.path) for m in mutants}]
            if kinds:
                take(min(kinds, key=used_kinds.get), f)
            else:
                by_component[component].pop()
    return mutants


def _fits(kind: Kind, f: UsedFile, used: list[UsedFile]) -> bool:
    return kind.applies_to(f) and (kind is not Kind.REPLACE_LIBRARY or bool(_donors(f, used)))


def _donors(library: UsedFile, used: list[UsedFile]) -> list[UsedFile]:
    """The libraries of other components, of its class and machine, that could stand in its place."""
    return [f for f in used if f.library == library.library and f.component != library.component]


def _mutant(id: str, kind: Kind, f: UsedFile, used: list[UsedFile], rng: random.Random) -> Mutant:
    """The mutant of `kind` of `f`, with what it plants drawn by `rng`."""
    mutant = Mutant(id, kind, _target(kind, f), f.component)
    if kind is Kind.REPLACE_LIBRARY:
        donor = rng.choice(_donors(f, used)).path
        return replace(mutant, donor=donor, detail=f"replaced by /{donor}")
    if kind is Kind.CONFIG_CUT_SHORT:
        half = len(f.config.rstrip("\n")) // 2  # the line the middle falls in, cut in its own middle
        start = f.config.rfind("\n", 0, half) + 1
        end = f.config.find("\n", half)
        cut = start + max(1, ((end if end >= 0 else len(f.config)) - start) // 2)
        return replace(mutant, content=f.config[:cut], detail=f"cut short: {cut} of {len(f.config)} characters kept")
    if kind is Kind.CONFIG_NAMES_NOTHING:
        value = rng.choice(_named_values(f.config))
        named = PurePosixPath(value.group(1))
        nothing = str(named.with_name("rendergate-none-" + named.name)) if named.name else "/rendergate-none"
        return replace(mutant, content=f.config[:value.start(1)] + nothing + f.config[value.end(1):],
                       detail=f"{value.group(1)} changed to {nothing}")
    if kind is Kind.TOOL_REFUSES:
        return replace(mutant, content=refusing_wrapper(f.name, "/" + f.path + REAL),
                       detail=f"a wrapper that refuses the first option it is given, in {f.name}'s words")
    return mutant


def _target(kind: Kind, used: UsedFile) -> str:
    return used.folder if kind is Kind.DELETE_FOLDER else used.path


# -- Judging a mutant -----------------------------------------------------------------------

def failed_checks(verdict: dict) -> list[dict]:
    return [c for c in verdict["checks"] if c["outcome"] in verdicts.FAULTS]


def _key(check: dict) -> tuple[str, str | None]:
    """A check the same on every image (its test id names the image)."""
    return check["check"], check.get("item")


def newly_wrong(baseline: dict, verdict: dict) -> list[dict]:
    """The checks that did not fail on the good image and do here: failed, or no longer passing
    (skipped, not validated) where they passed."""
    before = {_key(c): c["outcome"] for c in baseline["checks"]}
    return [c for c in verdict["checks"] if before.get(_key(c), verdicts.Outcome.FAILED) not in verdicts.FAULTS
            and (c["outcome"] in verdicts.FAULTS or (before[_key(c)] == verdicts.Outcome.PASSED and c["outcome"] not in STILL_FINE))]


# Causes that claim nothing about what is at fault: an unknown cause (its first error quoted), a
# command that did not finish, a workload slower than its threshold or than the promoted image.
CLAIMS_NOTHING = (None, "command-failed", "timeout", "below-threshold", "regressed")
# What a check that passed on the good image may come out as on a mutant without anything being
# wrong: a pass, or a timing too noisy to decide (the host's doing, not the image's).
STILL_FINE = (verdicts.Outcome.PASSED, verdicts.Outcome.UNSUPPORTED, verdicts.Outcome.UNDECIDED, verdicts.Outcome.HOST_BUSY)


# "install P", "pip install P", "apt-get install P", and a package named in parentheses after the
# words ("install its package (driver dummy: xserver-xorg-video-dummy)"); never "reinstall P" nor
# "pip install --force-reinstall P".
ADVISED = re.compile(r"(?<![-\w])install (?!-)(?P<what>[A-Za-z0-9][\w.+-]*)(?:[^:;()]*\((?:[^():]*:\s*)?(?P<named>[a-z0-9][\w.+-]*)\))?")
NOT_A_NAME = {"it", "its", "the", "an", "a", "one", "another", "them"}


def advised_installs(line: str) -> list[str]:
    """The packages or distributions a line advises to install (not in a tool's words it quotes
    after "unknown cause:")."""
    found = []
    for advice in ADVISED.finditer(line.split("unknown cause:", 1)[0]):
        found += [w.rstrip(".,") for w in (advice["what"], advice["named"]) if w and w.rstrip(".,").lower() not in NOT_A_NAME]
    return found


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_of(layers: list[Path]) -> set[str]:
    """The Debian packages (dpkg's status, "install ok installed") and Python distributions (their
    dist-info folders) an image has, read from its layers (normalised names)."""
    names: set[str] = set()
    status = next((layer / "var/lib/dpkg/status" for layer in layers if (layer / "var/lib/dpkg/status").is_file()), None)
    if status is not None:
        for stanza in status.read_text(errors="replace").split("\n\n"):
            package = re.search(r"^Package: (\S+)", stanza, re.M)
            if package and re.search(r"^Status: install ok installed$", stanza, re.M):
                names.add(_normal(package.group(1)))
    for layer in layers:
        names |= {_normal(d.name.split("-")[0]) for d in layer.glob("**/*.dist-info") if d.is_dir()}
    return names


def judge_mutant(mutant: Mutant, baseline: dict, verdict: dict, installed: set[str]) -> tuple[Finding, list[Failure]]:
    """Detected when a check that did not fail on the good image fails here. Then, strictly: a line
    that advises installing what the image has is wrong advice; a line that names another cause
    misleads (another cause); a line that names the mutant and the right kind of fault root-causes
    it; one that names it as another kind of fault is the wrong kind; else the cause is unknown."""
    failures = []
    for c in newly_wrong(baseline, verdict):
        line = c.get("message") or f"({c['outcome']})"
        fault = FAULT_OF_CAUSE.get(c.get("cause"))
        failures.append(Failure(c["check"] + (f"[{c['item']}]" if c.get("item") else ""), c.get("cause"), line,
                                mutant.named_in(line), fault.value if fault else None,
                                [w for w in advised_installs(line) if _normal(w) in installed]))
    if not failures:
        return Finding.UNDETECTED, failures
    if any(f.contradicted for f in failures):
        return Finding.WRONG_ADVICE, failures
    if any(not f.names_it and f.cause not in CLAIMS_NOTHING for f in failures):
        return Finding.OTHER_CAUSE, failures
    right = {fault.value for fault in mutant.kind.faults(mutant.path)}
    if any(f.names_it and f.fault in right for f in failures):
        return Finding.ROOT_CAUSED, failures
    if any(f.names_it and f.fault for f in failures):
        return Finding.WRONG_KIND, failures
    return Finding.UNKNOWN_CAUSE, failures


# -- The run ---------------------------------------------------------------------------------

@dataclass
class Suite:
    """How the variant's suites are run on an image: as `make validate` runs them, on one variant."""
    images_dir: Path
    variant: Variant
    allow_no_gpu: bool
    base_image: str | None

    def run(self, image: str, image_id: str, reports_dir: Path, *options: str) -> dict | None:
        """The verdict of one full run of the variant's suites on `image` (None: no complete
        verdict about that very image came); `options`: more of pytest's."""
        shutil.rmtree(reports_dir, ignore_errors=True)  # never an earlier run's verdict
        reports_dir.mkdir(parents=True)
        command = [sys.executable, "-m", "pytest", str(SUITES), f"--images-dir={self.images_dir}",
                   f"--variant={self.variant.name}", f"--image={image}", f"--reports-dir={reports_dir}",
                   "-n", "auto", "-p", "no:cacheprovider", "-q"]
        command += ["--allow-no-gpu"] if self.allow_no_gpu else []
        command += [f"--base-image={self.base_image}"] if self.base_image else []
        command += list(options)
        with (reports_dir / "pytest.log").open("w") as log:
            # Its own session: a Ctrl-C reaches this process only, which then ends the run once.
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                process.wait(timeout=RUN_TIMEOUT)
            except BaseException as e:  # timed out, or interrupted: the run ends as a run does, removing its container
                _end(process)
                if not isinstance(e, subprocess.TimeoutExpired):
                    raise
                return None
        try:
            verdict = verdicts.load(reports_dir / "verdicts" / f"{self.variant.name}.json")
        except verdicts.VerdictError:
            return None
        return verdict if verdict["complete"] and (verdict.get("image") or {}).get("digest") == image_id else None


def _end(process: subprocess.Popen) -> None:
    """SIGTERM, which the run takes as an interrupt (it removes its container), then, a minute
    later or on another interrupt, SIGKILL."""
    process.terminate()
    try:
        process.wait(timeout=60)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        process.kill()
        process.wait()


@dataclass
class Mutation:
    """One mutation run of a variant: what was used, the baseline, the mutants, the scores."""
    variant: str
    image: str
    image_id: str
    seed: int
    asked: int
    used_files: int = 0
    mutable_files: int = 0
    components: int = 0  # of the mutable files
    not_mutated: dict[str, int] = field(default_factory=dict)  # reason -> files
    baseline_state: str = ""
    baseline_failures: list[str] = field(default_factory=list)
    results: list[MutantResult] = field(default_factory=list)
    complete: bool = False
    started: str = field(default_factory=verdicts.now_iso)
    finished: str | None = None

    def scores(self) -> dict:
        judged = [r for r in self.results if r.finding not in (Finding.NOT_BUILT, Finding.NOT_JUDGED)]
        detected = [r for r in judged if r.finding is not Finding.UNDETECTED]
        root_caused = [r for r in detected if r.finding is Finding.ROOT_CAUSED]
        return {"mutants": len(self.results), "judged": len(judged), "detected": len(detected),
                "root_caused": len(root_caused),
                "wrong_kind": sum(r.finding is Finding.WRONG_KIND for r in detected),
                "another_cause": sum(r.finding is Finding.OTHER_CAUSE for r in detected),
                "wrong_advice": sum(r.finding is Finding.WRONG_ADVICE for r in detected),
                "detected_share": round(len(detected) / len(judged), 3) if judged else None,
                "root_caused_share": round(len(root_caused) / len(detected), 3) if detected else None}

    def to_json(self) -> dict:
        data = asdict(self)
        for result in data["results"]:
            del result["mutant"]["content"]  # the planted file: its detail says what it is
        data["scores"] = self.scores()
        return data


def mutate(engine: Engine, suite: Suite, image: str, count: int, seed: int, work: Path, save, say=print) -> Mutation:
    """Record what the suites use on `image`, plant `count` single-defect mutants in copies of it,
    run the suites on each (their reports under `work`), and hand the results to `save` at the
    start, after each mutant and at the end (an interrupted run leaves them, not complete). The
    good image is run under a tag of its own (it cannot move while traced); the mutant images are
    removed once judged."""
    info = image_attrs(engine, image)
    layers = image_layers(info)
    mutation = Mutation(suite.variant.name, image, info["Id"], seed, count)
    repository = f"rendergate-mutant/{suite.variant.build_tag.split('/', 1)[1].split(':')[0]}"
    save(mutation)
    try:
        say(f"recording what the checks use: the {mutation.variant} suites on {image} ({len(layers)} layers watched)")
        started = time.monotonic()
        engine.client.images.get(info["Id"]).tag(repository, "good")
        # Recorded without the checks that read every file (they would make every file "used"); the
        # baseline is then a run of them all, untraced.
        with FileTrace(layers) as trace:
            traced = suite.run(f"{repository}:good", info["Id"], work / "traced", "-m", f"not {READS_EVERY_FILE}")
        baseline = suite.run(f"{repository}:good", info["Id"], work / "good") if traced else None
        if baseline is None:
            raise MutationError(f"the suites gave no complete verdict on the good image {image}: see "
                                f"{work / ('good' if traced else 'traced') / 'pytest.log'}")
        if trace.lost_events:
            raise MutationError("the kernel dropped file events while recording: raise fs.inotify.max_queued_events and rerun")
        used = trace.used_files()
        candidates = []
        for f in used:
            why = not_mutated_because(f)
            if why:
                mutation.not_mutated[why] = mutation.not_mutated.get(why, 0) + 1
            else:
                candidates.append(f)
        mutation.used_files, mutation.mutable_files = len(used), len(candidates)
        mutation.components = len({f.component for f in candidates})
        mutation.baseline_state = baseline["state"]
        mutation.baseline_failures = sorted(c["check"] for c in failed_checks(baseline))
        say(f"the good image: {verdicts.State(baseline['state']).label} in {time.monotonic() - started:.0f} s; the checks "
            f"used {len(used)} of its files, {len(candidates)} of them (in {mutation.components} components) mutable"
            + "".join(f"; {n} not mutated: {why}" for why, n in mutation.not_mutated.items()))
        if mutation.baseline_failures:
            say(f"the good image already fails {', '.join(mutation.baseline_failures)}: mutants are judged by the other checks")
        aliases = trace.link_names()
        installed = installed_of(layers)
        mutants = [replace(m, aliases=tuple(sorted(aliases.get(m.path, ())))) for m in plan(candidates, count, seed)]
        save(mutation)
        for number, mutant in enumerate(mutants, 1):
            result = _try(engine, suite, mutant, info, f"{repository}:{mutant.id}", work, baseline, installed)
            mutation.results.append(result)
            save(mutation)
            said = f"; {result.failures[0].line}" if result.failures else (f": {result.note}" if result.note else "")
            say(f"[{number}/{len(mutants)}] {mutant.kind.value} /{mutant.path} ({mutant.component}): "
                f"{result.finding.value} in {result.seconds:.0f} s{said}")
        mutation.complete = True
    finally:
        _remove(engine, f"{repository}:good")
        mutation.finished = verdicts.now_iso()
        save(mutation)
    return mutation


def _try(engine: Engine, suite: Suite, mutant: Mutant, info: dict, tag: str, work: Path, baseline: dict,
         installed: set[str]) -> MutantResult:
    started = time.monotonic()

    def result(finding: Finding, failures: list[Failure] | None = None, note: str = "") -> MutantResult:
        return MutantResult(mutant, finding, failures or [], note, time.monotonic() - started)

    try:
        try:
            built, _ = engine.client.images.build(
                fileobj=io.BytesIO(mutant.context(info["Id"], info["Config"].get("User") or "")), custom_context=True,
                tag=tag, rm=True, forcerm=True)
        except docker.errors.BuildError as e:
            return result(Finding.NOT_BUILT, note=str(e).splitlines()[0][:200])
        except docker.errors.DockerException as e:  # the engine refused it: this mutant, not the run
            return result(Finding.NOT_BUILT, note=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
        verdict = suite.run(tag, built.id, work / mutant.id)
        if verdict is None:
            return result(Finding.NOT_JUDGED, note=f"the suites gave no complete verdict: see {work / mutant.id / 'pytest.log'}")
        return result(*judge_mutant(mutant, baseline, verdict, installed))
    finally:
        _remove(engine, tag)


def _remove(engine: Engine, tag: str) -> None:
    """The tag, and any container left of it (a suite run killed before it removed its own)."""
    try:
        for container in engine.client.containers.list(all=True, filters={"ancestor": tag}):
            container.remove(force=True)
        engine.client.images.remove(tag, force=True)
    except docker.errors.DockerException:
        pass
