"""Why a check failed, in one line a person can act on.

The causes form a closed set defined here once; every failure the suites report carries one of
them, with what it blames (Missing), for the advice to be held to the image. Reading a failed
command's output into a Diagnosis is rendergate.core.grammars' (classify, diagnose); the
diagnosis of each known cause is built in rendergate.core.known_causes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from enum import Enum

from rendergate.core.platforms import Platform


class Cause(Enum):
    TOOL_MISSING = "tool-missing"
    FEATURE_NOT_COMPILED = "feature-not-compiled"
    NO_GPU_DEVICE = "no-gpu-device"
    DRIVER_CAPABILITY_MISSING = "driver-capability-missing"
    GPU_LACKS_ENGINE = "gpu-lacks-engine"
    DRIVER_TOO_OLD = "driver-too-old"
    LATEX_PACKAGE_MISSING = "latex-package-missing"
    PYTHON_MODULE_MISSING = "python-module-missing"
    SYSTEM_LIBRARY_MISSING = "system-library-missing"
    DATA_FILES_MISSING = "data-files-missing"
    FILE_DAMAGED = "file-damaged"  # present, but truncated, corrupt or not executable
    # Present, but of another version, engine or architecture than its users need (a library, a
    # TeX format, a Python module): the value keeps its first name.
    LIBRARY_WRONG_VERSION = "library-wrong-version"
    CONFIG_INVALID = "config-invalid"  # a config or manifest file that does not parse, or names what is not there
    SOFTWARE_RENDERER = "software-renderer"
    X_EXTENSION_MISSING = "x-extension-missing"
    GPU_NOT_USED = "gpu-not-used"
    GPU_INFO_MISMATCH = "gpu-info-mismatch"
    OUTPUT_INVALID = "output-invalid"
    BELOW_THRESHOLD = "below-threshold"
    REGRESSED = "regressed"
    SESSION_LIMIT = "session-limit"
    NO_GPU_ON_HOST = "no-gpu-on-host"
    NO_DRIVER = "no-driver"
    HOST_MISCONFIGURED = "host-misconfigured"
    DRIVER_BAKED_IN = "driver-baked-in"
    DRIVER_VERSION_MISMATCH = "driver-version-mismatch"
    GPU_FAULT = "gpu-fault"
    PLATFORM = "platform"
    TARGET_UNAVAILABLE = "target-unavailable"
    TIMEOUT = "timeout"
    COMMAND_FAILED = "command-failed"


@dataclass(frozen=True)
class Missing:
    """What a diagnosis blames, for its advice to be held to the image before it is shown
    (rendergate.core.advice): no line may say "install P" of a P the image has."""
    kind: str  # "library", "tool", "file" (a name, or an absolute path), "module" (a Python import name),
    # "needs" (a file that lacks a symbol: what it loads is suspect), "program" (one that failed, no reason
    # given), "mode" (a program that is not executable), "imported" (a Python module that lacks what is
    # taken from it)
    name: str  # libcairo.so.2, dvisvgm, standalone.cls, /usr/share/X11/xkb/rules/evdev, cairo
    said: str  # the diagnosis without its advice: "system library libcairo.so.2 missing in the image"
    # The manifest that names a library that is not there (an ICD JSON): its package's own file, or
    # a file changed to name what no package ships.
    named_by: str | None = None
    needed_by: str | None = None  # the program or library the loader says needs it


@dataclass(frozen=True)
class Diagnosis:
    cause: Cause
    message: str
    missing: Missing | None = None

    def line(self) -> str:
        return f"{self.message} [{self.cause.value}]"


class CheckFailed(Exception):
    """Raised by checks; the suites' plugin reports it as its one-line diagnosis."""

    def __init__(self, cause: Cause, message: str, missing: Missing | None = None):
        self.diagnosis = Diagnosis(cause, message, missing)
        super().__init__(self.diagnosis.line())

    @classmethod
    def of(cls, diagnosis: Diagnosis) -> "CheckFailed":
        return cls(diagnosis.cause, diagnosis.message, diagnosis.missing)


def blaming(cause: Cause, kind: str, name: str, said: str, advice: str, named_by: str | None = None,
            needed_by: str | None = None) -> Diagnosis:
    """A diagnosis of something missing or damaged, with the advice the image is then asked about."""
    return Diagnosis(cause, f"{said}: {advice}", Missing(kind, name, said, named_by, needed_by))


@dataclass(frozen=True)
class Facts:
    """What is known about the target when its output is classified."""
    nvidia_devices_visible: bool = False
    gpu_names: tuple[str, ...] = field(default_factory=tuple)
    container: bool = True
    platform: Platform = Platform.NATIVE  # the kernel the target's processes talk to
    # The capabilities the target's NVIDIA_DRIVER_CAPABILITIES asks for ("all" expanded).
    capabilities: tuple[str, ...] = field(default_factory=tuple)


def explained(diagnosis: Diagnosis, outcome: str) -> Diagnosis:
    """A wrong outcome (a picture unlike its reference) and the cause the producing tool gave."""
    missing = diagnosis.missing
    return replace(diagnosis, message=f"{outcome}: {diagnosis.message}",
                   missing=replace(missing, said=f"{outcome}: {missing.said}") if missing else None)


def last_line(output: str) -> str:
    """The last non-empty line of output: what a build step or a shell said last."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


# A line that reports an error, in the grammars of the tools checked: Xorg's (EE) lines, TeX's
# "! ..." lines, a Python exception, and the words tools use.
_ERROR_LINE = re.compile(r"\(EE\)|^! |^\w+(?:Error|Exception)\b|\b(?:[Ee]rror|ERROR|[Ff]atal|[Ff]ailed|[Cc]annot|[Cc]ouldn't|"
                         r"[Nn]o such file|[Nn]ot found|[Pp]ermission denied|[Rr]efused)\b")
# Error lines that are never the cause: Xorg's legend of its markers and its closing boilerplate,
# the system bus Xorg looks for in every container (it runs without one), a traceback's header.
_NOT_A_CAUSE = re.compile(r"\(WW\) warning, \(EE\) error|Fatal server error:|Please (?:also )?(?:consult|check)|"
                          r"Server terminated with error|dbus-core: error connecting to system bus|"
                          r"^Traceback \(most recent call last\)|\(EE\)\s*$|"
                          # a rich traceback's frame: its source lines, not what went wrong
                          r"^[\u2502\u256d\u2570]|"
                          # what EGL's debug log says of each platform it merely tries
                          r"EGL user error 0x\w+ \(EGL_\w+\) in eglInitialize|XDG_RUNTIME_DIR is invalid")


def first_error(output: str) -> str:
    """The first line of output that reports an error and is not boilerplate: where the cause is
    (the last line is usually the tool giving up: "Server terminated with error (1)"). In a
    Python traceback, the exception it ends with. When none reads as an error, the last line that
    is not boilerplate."""
    lines = [re.sub(r"^\[\s*[\d.]+\]\s*", "", line).strip() for line in output.splitlines()]  # Xorg's timestamps
    lines = [line for line in lines if line]
    for index, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            raised = next((later for later in lines[index + 1:] if re.match(r"^[\w.]+(?:Error|Exception|Exit)\b", later)), None)
            if raised:
                return raised[:300]
        if _ERROR_LINE.search(line) and not _NOT_A_CAUSE.search(line):
            return line[:300]
    said = [line for line in lines if not _NOT_A_CAUSE.search(line)]
    return (said or lines or ["(no output)"])[-1][:300]


