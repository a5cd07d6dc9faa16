"""The kinds of defect a mutant plants (Kind), the fault each stands for (Fault), the files the checks
used (UsedFile) and a mutant of one of them (Mutant): what it changes, how its image is built,
and the names a line may call it by."""
from __future__ import annotations

import io
import re
import shlex
import tarfile
from dataclasses import dataclass, field
from enum import Enum
from pathlib import PurePosixPath

from rendergate.core.known_causes import CONFIG_FILE

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


class Fault(str, Enum):
    """What kind of wrong a line says a thing is (the fault kind of its cause)."""
    MISSING = "missing"
    DAMAGED = "damaged"
    WRONG_VERSION = "wrong version"
    NOT_COMPILED = "not compiled in"
    MISCONFIGURED = "misconfigured"


# The fault kind each cause names (rendergate.core.diagnosis.Cause, by value); a cause not listed names
# none of them (a GPU, a driver, a host, a timing): a line with it never root-causes a planted defect.
FAULT_OF_CAUSE = {
    "tool-missing": Fault.MISSING, "system-library-missing": Fault.MISSING, "data-files-missing": Fault.MISSING,
    "python-module-missing": Fault.MISSING, "latex-package-missing": Fault.MISSING, "x-extension-missing": Fault.MISSING,
    "file-damaged": Fault.DAMAGED, "library-wrong-version": Fault.WRONG_VERSION,
    "feature-not-compiled": Fault.NOT_COMPILED, "config-invalid": Fault.MISCONFIGURED,
}


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


# Folders too shared to delete as one defect (deleting /usr/lib would say only that nothing runs).
SHARED_FOLDERS = re.compile(r"(s?bin|lib(32|64|exec)?|share|include|etc|usr|local|opt|var|x86_64-linux-gnu|aarch64-linux-gnu|"
                            r"site-packages|dist-packages|python3(\.\d+)?|X11|doc|man\d?|modules|drivers|extensions)")

# Names too common to count as naming a file ("__init__.py" names nothing in particular).
VAGUE_NAMES = {"__init__", "main", "index", "config", "default", "common", "base", "utils", "core", "data"}
MIN_NAME = 2
MIN_OWNER = 4  # a package name stripped of "lib" shorter than this is too common a word (x11, ssl, gl)


def telling(name: str) -> bool:
    """A name that names something in particular ("__init__.py" names no module in particular)."""
    lowered = name.lower()
    return len(lowered) >= MIN_NAME and lowered not in VAGUE_NAMES and (lowered.split(".")[0] not in VAGUE_NAMES or "/" in lowered)


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
        if not telling(path.name) and len(path.parts) > 1:  # av/__init__.py: its folder tells which
            found.add(f"{path.parent.name}/{path.name}")
        return {n.lower() for n in found if telling(n)} | self.owner_names()

    def owner_names(self) -> set[str]:
        """Its package or component, with and without version and prefix ("libx11-6", "libx11";
        never a bare "x11", which names a folder too)."""
        bare = re.sub(r"[-_.]\d[\d.]*(-\d+)?$", "", self.component)
        stripped = re.sub(r"^(lib|python3-)", "", bare)
        return {n.lower() for n in (self.component, bare, stripped if len(stripped) > MIN_OWNER or stripped == bare else "")
                if telling(n)}

    def named_in(self, line: str) -> bool:
        """Whether the line names it: one of its names, as a word of its own ("libpango" in
        "libpango-1.0.so.0", not "pango" in "ManimPango"), outside the line's [cause] tag; an
        owner's name not as a folder of a path ("x11" is not in /usr/share/X11/xkb)."""
        said = re.sub(r"\s*\[[a-z-]+\]$", "", line).lower()
        owners = self.owner_names()
        return any(re.search(rf"(?<![a-z0-9_{'/' if n in owners else ''}]){re.escape(n)}(?![a-z0-9_{'/' if n in owners else ''}])", said)
                   for n in self.names())
