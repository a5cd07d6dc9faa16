"""Why a check failed, in one line a person can act on.

The causes form a closed set defined here once; every failure the suites report carries one of
them. `classify` turns the output of a failed command into a Diagnosis, using what is known
about the target (are NVIDIA devices visible, which GPU model) to tell an image fault from a
missing driver capability or a GPU that lacks the engine.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import PurePosixPath
from signal import SIGBUS

from .driver_capabilities import DRIVER_FILES
from .gpuinfo import lookup, no_nvenc_engine
from .platforms import Platform


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
    (rendergate.advice): no line may say "install P" of a P the image has."""
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


# What to do when gVisor is the cause: Modal's other runtime, or a gVisor that allows more.
GVISOR_WAY_OUT = ("run it with --runtime vm (Modal: Sandbox runtime='vm'), or on a gVisor whose nvproxy allows "
                  "it (runsc --nvproxy-allowed-driver-capabilities)")


def driver_file_missing(name: str, facts: Facts) -> Diagnosis:
    if not facts.nvidia_devices_visible:
        return Diagnosis(Cause.NO_GPU_DEVICE,
                         f"{name} missing and no /dev/nvidia* visible: "
                         "start the container with a GPU (--gpus all / the NVIDIA runtime)")
    capability = DRIVER_FILES[name]
    if facts.container and capability in facts.capabilities:
        return asked_files_missing([name], capability, facts)
    if facts.container:
        return Diagnosis(Cause.DRIVER_CAPABILITY_MISSING,
                         f"{name} missing: the container lacks NVIDIA_DRIVER_CAPABILITIES={capability}")
    return Diagnosis(Cause.DRIVER_CAPABILITY_MISSING,
                     f"{name} missing: the NVIDIA driver's {capability} libraries are not installed on this host")


def asked_files_missing(names: list[str], asked: str, facts: Facts) -> Diagnosis:
    """Driver files a container asked for (NVIDIA_DRIVER_CAPABILITIES=`asked`) but did not get."""
    files = ", ".join(names)
    if facts.platform == Platform.GVISOR:
        # gVisor's nvproxy injects only the capabilities its runtime allows: compute,utility unless
        # configured otherwise (gVisor issue 10856, PR 14450).
        return Diagnosis(Cause.PLATFORM, f"{files} missing although the container asks for NVIDIA_DRIVER_CAPABILITIES="
                                         f"{asked}: the gVisor sandbox withholds them, not the image: {GVISOR_WAY_OUT}")
    return Diagnosis(Cause.HOST_MISCONFIGURED,
                     f"{files} missing although the container asks for NVIDIA_DRIVER_CAPABILITIES={asked}: the host's "
                     "NVIDIA container toolkit did not inject them (toolkit too old or not configured for this engine, "
                     "or the driver's libraries not installed on the host)")


def driver_versions(baked: list[tuple[str, str, str]]) -> list[str]:
    """The driver versions baked files name (libnvidia-ml.so.535.261.03: 535.261.03)."""
    return sorted({m.group(1) for _, real, _ in baked if (m := re.search(r"\.so\.(\d+\.\d+(?:\.\d+)?)$", real))})


def bundled_driver_wrong(declared: str, baked: list[tuple[str, str, str]], host_driver: str | None) -> Diagnosis | None:
    """An image that must carry its own driver (Xorg's NVIDIA driver installed in it, the
    Xorg-in-Docker recipe's way) and says which (run.bundled_driver): its files must be that
    version, and a host's kernel module too; None when they are."""
    other = [v for v in driver_versions(baked) if v != declared]
    files = ", ".join(real for _, real, _ in baked)
    if other:
        return Diagnosis(Cause.DRIVER_VERSION_MISMATCH,
                         f"the image declares run.bundled_driver = \"{declared}\" but carries NVIDIA driver files of "
                         f"{', '.join(other)} ({files}): rebuild it with driver {declared}, or declare what it carries")
    if host_driver and host_driver != declared:
        return Diagnosis(Cause.DRIVER_VERSION_MISMATCH,
                         f"this host's NVIDIA kernel module is {host_driver}, but the image carries driver {declared} "
                         "(run.bundled_driver): the two must be the same version (NVRM: \"API mismatch\"): run it on "
                         f"hosts with driver {declared}, or rebuild the image with driver {host_driver}")
    return None


def driver_baked_in(baked: list[tuple[str, str, str]], host_driver: str | None) -> Diagnosis:
    """NVIDIA driver files the image carries itself, (name, the file, its package) each: they
    work only on hosts whose kernel module is their very version."""
    versions = driver_versions(baked)
    packages = sorted({package for _, _, package in baked if package})
    files = ", ".join(f"{name} ({real})" for name, real, _ in baked)
    version = f" of driver {', '.join(versions)}" if versions else ""
    host = (f"; this host's kernel module is {host_driver}" if host_driver else "")
    remedy = (f"remove the package{'s' * (len(packages) > 1)} {', '.join(packages)}" if packages
              else "remove those files")
    return Diagnosis(Cause.DRIVER_BAKED_IN,
                     f"NVIDIA driver files baked into the image{version}: {files}{host}: they break on every host "
                     f"whose driver is another version (NVML: \"Driver/library version mismatch\"); {remedy} and "
                     "let the NVIDIA container toolkit inject the host's")


def _nvenc_refused(match: re.Match, facts: Facts) -> Diagnosis:
    lacking = [why for name in facts.gpu_names if (why := no_nvenc_engine(lookup(name), name))]
    if lacking:
        return Diagnosis(Cause.GPU_LACKS_ENGINE, f"{lacking[0]}: run this check on a GPU with NVENC (T4, L4, A10, L40S)")
    return Diagnosis(Cause.COMMAND_FAILED, f"NVENC refused the GPU: {match.group(0).strip()}")


def _os_call_refused(match: re.Match, facts: Facts) -> Diagnosis:
    if facts.platform == Platform.GVISOR:
        return Diagnosis(Cause.PLATFORM, f"the gVisor sandbox refused a GPU driver call ({match.group(0).strip()}), "
                                         f"not the image: {GVISOR_WAY_OUT}")
    return Diagnosis(Cause.COMMAND_FAILED, f"the CUDA driver refused an OS call: {match.group(0).strip()}")


def _no_graphics_driver(api: str, nvidia_file: str, mesa_package: str):
    """An API (EGL, Vulkan) that found no driver at all: NVIDIA's, where a GPU is visible, or Mesa's."""
    def build(match: re.Match, facts: Facts) -> Diagnosis:
        if facts.nvidia_devices_visible:
            return driver_file_missing(nvidia_file, facts)
        return blaming(Cause.SYSTEM_LIBRARY_MISSING, "package", mesa_package.split()[0],
                       f"{api} found no driver ({match.group(0).strip()})",
                       f"install {mesa_package} for a software device; NVIDIA's comes with "
                       "NVIDIA_DRIVER_CAPABILITIES=graphics on a GPU host")
    return build


# How the dynamic loader (and a shell exec'ing a program) says a file is there but unusable.
DAMAGED = (r"file too short|invalid ELF header|ELF load command [\w/ -]+|cannot read file data[^\n]*|"
           r"Exec format error|not a dynamic executable")


def is_nvidia_file(name: str) -> bool:
    """A file of NVIDIA's driver (the host's, injected by the toolkit), never a package of the image's."""
    return name in DRIVER_FILES or re.match(r"lib(?:nvidia-|cuda\.|nvcuvid|nvoptix|GLX_nvidia|EGL_nvidia|glxserver_nvidia)", name) is not None


def nvidia_file_missing(name: str, facts: Facts) -> Diagnosis:
    if name in DRIVER_FILES:
        return driver_file_missing(name, facts)
    if not facts.nvidia_devices_visible:
        return Diagnosis(Cause.NO_GPU_DEVICE, f"{name} (NVIDIA's driver) missing and no /dev/nvidia* visible: start the "
                                              "container with a GPU (--gpus all / the NVIDIA runtime)")
    return Diagnosis(Cause.DRIVER_CAPABILITY_MISSING,
                     f"{name} (NVIDIA's driver) missing: the NVIDIA container toolkit injects it with "
                     "NVIDIA_DRIVER_CAPABILITIES=graphics,display, unless the image carries its own driver (run.bundled_driver)")


def _cannot_load(driver: str, library: str, why: str, package: str, facts: Facts) -> Diagnosis:
    """A driver a loader could not open, with the loader's reason: its own file (`library`), or a
    library it needs."""
    culprit = re.match(r"(?P<file>[^:\s]+): (?P<reason>.+)", why.strip())
    needed = PurePosixPath(culprit.group("file")).name if culprit else library
    reason = culprit.group("reason") if culprit else why.strip()
    if needed != library:
        what, fix = f"{driver} cannot load: {needed}", "the package that ships it"
    else:
        what, fix = driver, package
    if "cannot open shared object file" in reason and is_nvidia_file(needed):
        return nvidia_file_missing(needed, facts)
    if "cannot open shared object file" in reason:
        return blaming(Cause.SYSTEM_LIBRARY_MISSING, "library", needed, f"{what} missing in the image", f"install {fix}")
    if reason.startswith("undefined symbol") and culprit:  # it loads, and lacks what another of its libraries should give
        return blaming(Cause.LIBRARY_WRONG_VERSION, "needs", culprit.group("file"),
                       f"{what}: {needed} needs a symbol none of the libraries it loads provides ({reason})",
                       "one of them was replaced or is of another version: reinstall the package that ships it")
    return blaming(Cause.FILE_DAMAGED, "library", needed, f"{what} is damaged in the image ({reason})", f"reinstall {fix}")


def _mesa_driver_failed(match: re.Match, facts: Facts) -> Diagnosis:
    """Mesa's loader (EGL_LOG_LEVEL=debug, LIBGL_DEBUG=verbose) naming the DRI driver it could not open."""
    library = PurePosixPath(match.group("driver")).name
    return _cannot_load(f"Mesa's driver {library}", library, match.group("why"), "libgl1-mesa-dri", facts)


def _vulkan_driver_failed(match: re.Match, facts: Facts) -> Diagnosis:
    """The Vulkan loader (VK_LOADER_DEBUG=error,warn,driver) naming the library of an ICD JSON it
    could not load, and the JSON it read it from: a library that is not there is the JSON's
    word, deleted from its package or named wrong (rendergate.advice asks the image which)."""
    path, manifest = match.group("lib"), match.group("json")
    library = PurePosixPath(path).name
    if library in DRIVER_FILES:
        return driver_file_missing(library, facts)
    if manifest and not is_nvidia_file(library) and re.match(rf"{re.escape(path)}: cannot open shared object file",
                                                             match.group("why").strip()):
        return blaming(Cause.SYSTEM_LIBRARY_MISSING, "library", library,
                       f"the ICD JSON {manifest} names the Vulkan driver {path}, which is not there",
                       "restore it from its package, or correct the JSON's library_path", named_by=manifest)
    return _cannot_load(f"the Vulkan driver {library}", library, match.group("why"), "mesa-vulkan-drivers", facts)


def _damaged(match: re.Match, facts: Facts) -> Diagnosis:
    name = PurePosixPath(match.group("file")).name
    return blaming(Cause.FILE_DAMAGED, "library", name,
                   f"{name} is damaged in the image ({match.group('why')}: {match.group('file')})",
                   "reinstall the package that ships it")


def crashed_on_a_mapped_file(what: str = "a program") -> Diagnosis:
    return Diagnosis(Cause.FILE_DAMAGED, f"{what} crashed with SIGBUS (Bus error): a file it maps (a library, a cache) was "
                                         "cut short or rewritten in place while it ran: reinstall the package whose file "
                                         "changed (dpkg --verify names it), and never copy over a file in use")


# How ffmpeg is configured for an encoder, where its name does not say (--enable-lib<name> does).
ENCODER_CONFIGURE = {"nvenc": "--enable-nvenc", "libx264": "--enable-libx264 --enable-gpl", "libx265": "--enable-libx265 --enable-gpl"}


# A text configuration: what a tool reads to find its parts (by name, or anywhere under /etc).
CONFIG_FILE = re.compile(r"\.(conf|cfg|cnf|ini|json|xml|toml|ya?ml)$|^/?etc/")


def not_their_own(faults: list[dict], count: int) -> Diagnosis:
    """Files of installed packages that are missing or not what their package's checksum says
    (rendergate/probes/files_intact.py): the first, and how many more; reinstall its owner."""
    first = faults[0]
    path, owner = first["path"], first["owner"]
    name = PurePosixPath(path).name
    if first["state"] == "missing":
        cause = (Cause.SYSTEM_LIBRARY_MISSING if ".so" in name else Cause.TOOL_MISSING if "/bin/" in path
                 else Cause.PYTHON_MODULE_MISSING if name.endswith(".py") else Cause.DATA_FILES_MISSING)
        what = "is missing"
    else:
        cause = Cause.CONFIG_INVALID if CONFIG_FILE.search(path) else Cause.FILE_DAMAGED
        what = "is not the package's own (it differs from its checksum: damaged, replaced or changed)"
    others = [f["path"] for f in faults[1:3] if f["owner"] == owner]
    more = f" (and {count - 1} more{': ' + ', '.join(others) if others else ''}{', ...' if count - 1 > len(others) else ''})" \
        if count > 1 else ""
    # dpkg leaves a deleted conffile deleted (the admin's choice) unless told to restore it
    fix = {"wheel": f"pip install --force-reinstall {owner}",
           "conffile": f"apt-get install --reinstall -o Dpkg::Options::=--force-confmiss {owner}"}.get(
        first["by"], f"apt-get install --reinstall {owner}")
    kind = "the wheel" if first["by"] == "wheel" else "the package"
    return Diagnosis(cause, f"{path} of {kind} {owner} {what}{more}: reinstall {owner} ({fix})")


def encoder_not_compiled(encoder: str) -> Diagnosis:
    family = "nvenc" if "nvenc" in encoder else encoder
    configure = ENCODER_CONFIGURE.get(family, f"--enable-{family}" if family.startswith("lib") else "")
    return Diagnosis(Cause.FEATURE_NOT_COMPILED,
                     f"ffmpeg was built without the {encoder} encoder: install an ffmpeg configured with it"
                     + (f" ({configure})" if configure else ""))


def tool_missing(tool: str, facts: Facts) -> Diagnosis:
    if tool in DRIVER_FILES:  # nvidia-smi comes from the driver, not from the image
        return driver_file_missing(tool, facts)
    return blaming(Cause.TOOL_MISSING, "tool", tool, f"{tool} not found in the target", "install it")


def tool_refuses_option(tool: str, option: str) -> Diagnosis:
    return Diagnosis(Cause.FEATURE_NOT_COMPILED, f"{tool} does not know the option {option} (another version, or built "
                                                 f"without what it belongs to): install a build of {tool} that has it")


def config_invalid(file: str, why: str, reader: str) -> Diagnosis:
    """A config or manifest file its reader cannot use: restored from its package where one ships
    it (rendergate.advice finds which, and whether it changed), else corrected."""
    return blaming(Cause.CONFIG_INVALID, "file", file, f"{file} does not parse ({reader}: {why})",
                   "correct it, or restore it from the package that ships it")


def tex_file_cut_short(file: str, why: str) -> Diagnosis:
    """A TeX file that ends before its conditionals or definitions do (rendergate.advice finds
    its package, or the file TeX reads in its place)."""
    return blaming(Cause.FILE_DAMAGED, "file", file, f"the TeX file {file} ends too early ({why}: cut short)",
                   "reinstall the TeX Live package that ships it")


def tex_format(file: str, why: str, damaged: bool) -> Diagnosis:
    """A TeX format (.fmt) is no package's file: fmtutil builds it where TeX Live is installed."""
    name = PurePosixPath(file).stem
    return Diagnosis(Cause.FILE_DAMAGED if damaged else Cause.LIBRARY_WRONG_VERSION,
                     f"the TeX format {file} {why}: rebuild it (fmtutil-sys --byfmt {name})")


# Ordered: the first pattern that matches the output wins.
# How a driver refuses an NVENC session over the cap: error 21 on recent drivers, 10 on older
# ones (tests/data/captures/public/, sources in its README).
SESSION_REFUSED = re.compile(r"OpenEncodeSessionEx failed: (?:incompatible client key \(21\)|out of memory \(10\))")
_PATTERNS: list[tuple[re.Pattern, callable]] = [
    # gVisor's nvproxy refusing a driver call it does not proxy: cuInit fails with this, where the
    # same image under runc works (gVisor issue 9452, tests/data/captures/public/).
    (re.compile(r"(?:cu\w+\(\S*\) failed -> )?CUDA_ERROR_OPERATING_SYSTEM[^\n]*"), _os_call_refused),
    (re.compile(r"(?:Cannot load|Could not load) (?P<lib>lib(?:nvidia-encode|nvcuvid|cuda|nvidia-ml)\.so\.\d)"),
     lambda m, f: driver_file_missing(m.group("lib"), f)),
    (re.compile(r"(?P<lib>lib(?:nvidia-encode|nvcuvid|cuda|nvidia-ml|GLX_nvidia|EGL_nvidia|nvoptix)\.so\.\d): cannot open shared object file"),
     lambda m, f: driver_file_missing(m.group("lib"), f)),
    # The NVIDIA libraries a container loads and the host's kernel module disagree: nvidia-smi's
    # words (tests/data/captures/public/), pynvml's error of the same NVML return code.
    (re.compile(r"Failed to initialize NVML: Driver/library version mismatch(?:\s*NVML library version: (?P<lib>[\d.]+))?"
                r"|NVMLError_LibRmVersionMismatch|RM has detected an NVML/RM version mismatch"),
     lambda m, f: Diagnosis(Cause.DRIVER_VERSION_MISMATCH,
                            "the NVIDIA libraries the container loads"
                            f"{' (NVML ' + m.group('lib') + ')' if m.group('lib') else ''} are not the version of the host's "
                            "kernel module: the image carries driver files of its own (they must come from the host: "
                            "test_no_driver_files_baked_into_the_image names them), or the host's driver was upgraded "
                            "and its kernel module not reloaded (reboot the host)")),
    # The kernel module's own words (its log; NVIDIA's X driver fails with it), in both of its layouts
    # (tests/data/captures/public/nvrm-api-mismatch*.txt).
    (re.compile(r"API mismatch: the client(?: '[^'\n]*' \(pid \d+\))?\s+(?:NVRM:\s+)?has the version (?P<client>\d+(?:\.\d+)+), but\s+"
                r"(?:NVRM:\s+)?this kernel module has\s+(?:NVRM:\s+)?the version (?P<kernel>\d+(?:\.\d+)+)"),
     lambda m, f: Diagnosis(Cause.DRIVER_VERSION_MISMATCH,
                            f"the NVIDIA driver files the container uses are {m.group('client')} but the host's kernel "
                            f"module is {m.group('kernel')} (NVRM: API mismatch): an image that carries its own driver "
                            f"must carry the host's very version (declare it: run.bundled_driver), or leave the driver "
                            "files to the NVIDIA container toolkit")),
    (re.compile(r"NVML Shared Library Not Found|NVMLError_LibraryNotFound"),
     lambda m, f: driver_file_missing("libnvidia-ml.so.1", f)),
    (re.compile(r"Driver does not support the required nvenc API version\. Required: (?P<need>[\d.]+) Found: (?P<have>[\d.]+)"
                r"(?:.*\n.*minimum required Nvidia driver for nvenc is (?P<driver>[\d.]+))?"),
     lambda m, f: Diagnosis(Cause.DRIVER_TOO_OLD,
                            f"the NVIDIA driver's NVENC API is {m.group('have')} but this ffmpeg needs {m.group('need')}: "
                            f"upgrade the host driver{' to ' + m.group('driver') + '+' if m.group('driver') else ''} "
                            "or build ffmpeg against older nv-codec-headers")),
    (re.compile(r"OpenEncodeSessionEx failed: unsupported device.*|No (?:NVENC )?capable devices found.*"),
     _nvenc_refused),
    (SESSION_REFUSED,
     lambda m, f: Diagnosis(Cause.SESSION_LIMIT, f"the driver refused another NVENC session ({m.group(0).strip()}): "
                                                 "the concurrent-session cap is reached (GeForce: 8 per system)")),
    (re.compile(r"Unknown encoder '(?P<enc>[^']+)'|Encoder '?(?P<enc2>\w+)'? not found"),
     lambda m, f: encoder_not_compiled(m.group("enc") or m.group("enc2"))),
    # ffmpeg without one of its own decoders, input formats or filters, or not knowing an option
    # (tests/data/captures/cpu-host/debian-ffmpeg5.1-not-compiled-in.txt).
    (re.compile(r"Unknown (?P<kind>decoder|input format):? '(?P<name>[^']+)'|No such filter: '(?P<filter>[^']+)'"),
     lambda m, f: Diagnosis(Cause.FEATURE_NOT_COMPILED,
                            f"ffmpeg was built without the {m.group('kind') or 'filter'} {m.group('name') or m.group('filter')}: "
                            "install an ffmpeg configured with it")),
    (re.compile(r"Unrecognized option '(?P<option>[^']+)'"), lambda m, f: tool_refuses_option("ffmpeg", f"-{m.group('option')}")),
    # Other tools the suites drive, refusing an option in their own words
    # (tests/data/captures/cpu-host/*-unknown-option.txt, xorg1.21-unrecognized-option.txt): getopt's
    # (latex), Python's and glxinfo's (the usage line names the tool), Xorg's, dvisvgm's.
    (re.compile(r"(?:^|\n)(?P<tool>[\w.+-]+): unrecognized option '(?P<option>[^']+)'"),
     lambda m, f: tool_refuses_option(m.group("tool"), m.group("option"))),
    (re.compile(r"(?:^|\n)[Uu]nknown option:? [`']?(?P<option>-[^\s'`]+)'?\n[Uu]sage: (?P<tool>[\w.+-]+)"),
     lambda m, f: tool_refuses_option(m.group("tool"), m.group("option"))),
    (re.compile(r"(?:^|\n)Unrecognized option: (?P<option>\S+)\nuse: X "), lambda m, f: tool_refuses_option("Xorg", m.group("option"))),
    (re.compile(r"(?:^|\n)ERROR: unknown option (?P<option>-\S+)"), lambda m, f: tool_refuses_option("dvisvgm", m.group("option"))),
    # TeX's format: written by another engine, cut short, or unloadable for either reason
    # (tests/data/captures/cpu-host/pdftex1.40.24-mathtex-latex-fmt-*.txt).
    (re.compile(r"---! (?P<file>\S+\.fmt) was written by (?P<engine>\S+)"),
     lambda m, f: tex_format(m.group("file"), f"was written by {m.group('engine')}, another engine than the one that loads it",
                             damaged=False)),
    (re.compile(r"\w+: fatal: Could not undump \d+ [\w-]+ item\(s\) from (?P<file>\S+\.fmt)"),
     lambda m, f: tex_format(m.group("file"), "is cut short (TeX could not undump it)", damaged=True)),
    (re.compile(r"preloaded format=(?P<name>[\w-]+)[^\n]*\n(?:[^\n]*\n)*?\(Fatal format file error; I'm stymied\)"),
     lambda m, f: tex_format(f"{m.group('name')}.fmt", "does not load (Fatal format file error: damaged, or written by "
                             "another engine)", damaged=True)),
    # A TeX file that ends before its conditionals or arguments do: cut short. TeX's line does not
    # name it; rendergate/probes/mathtex.py adds the file TeX had just read to its end
    # (tests/data/captures/cpu-host/pdftex1.40.24-mathtex-standalone-cls-truncated.txt).
    (re.compile(r"! (?P<why>Incomplete \\if\w*; all text was ignored after line \d+|File ended while scanning (?:use|definition) of "
                r"[^\n]*?)\.?\n\(after (?P<file>/\S+)\)"),
     lambda m, f: tex_file_cut_short(m.group("file"), m.group("why"))),
    # The same in Manim's log, which keeps TeX's line but not what it read: the file its macro names
    # (\KV@standalone.cls@math), found by the search path TeX uses (rendergate.advice asks kpsewhich).
    (re.compile(r"File ended while scanning (?:use|definition) of \\[^\n]*?(?P<file>[\w-]+\.(?:cls|sty))"),
     lambda m, f: tex_file_cut_short(m.group("file"), "File ended while scanning its definitions")),
    (re.compile(r"You do not have package (?P<pkg>\S+?) installed|File [`'](?P<pkg2>[^'`]+\.(?:cls|sty))' not found"),
     lambda m, f: blaming(Cause.LATEX_PACKAGE_MISSING, "file", m.group("pkg2") or f"{m.group('pkg')}.sty",
                          f"LaTeX package {m.group('pkg') or m.group('pkg2')} missing",
                          # which package ships it the image knows only when it is installed (rendergate.advice)
                          f"install the TeX Live package that ships it (apt-file search {m.group('pkg2') or m.group('pkg') + '.sty'} "
                          "names it)")),
    (re.compile(r"No such file or directory: '(?P<tool>latex|dvisvgm|ffmpeg|ffprobe|xelatex)'"),
     lambda m, f: tool_missing(m.group("tool"), f)),
    # Xorg's module loader: the module it could not open and the loader's reason (its own file, or
    # a library it needs), before the module's name alone ("Failed to load module "glx"") is read.
    (re.compile(r"\(EE\) Failed to load (?P<module>/\S+\.so): (?P<why>[^\n]+)"),
     lambda m, f: _cannot_load(f"Xorg's module {PurePosixPath(m.group('module')).name}", PurePosixPath(m.group("module")).name,
                               m.group("why"), "the Xorg package that ships it", f)),
    # GLX: a client that finds no GLX visual says so whatever is missing; the server's log tells
    # which (the checks add its (EE) lines): the extension itself, or the renderer it loads.
    (re.compile(r"extension \"GLX\" missing|Failed to load module \"glx\""),
     lambda m, f: Diagnosis(Cause.X_EXTENSION_MISSING,
                            f"the X server has no GLX extension ({m.group(0)}): Xorg's libglx.so (xserver-xorg-core) "
                            "or the NVIDIA libglxserver_nvidia.so is missing")),
    # The server's own DRI loading, with the loader's reason: the driver missing, or one it needs.
    (re.compile(r"AIGLX error: dlopen of (?P<path>\S+/(?P<driver>\w+_dri\.so)) failed \((?P<why>[^\n]*)\)"),
     lambda m, f: _cannot_load(f"Mesa's DRI driver {m.group('driver')}", m.group("driver"), m.group("why"),
                               "libgl1-mesa-dri (GLX is loaded but has no renderer to load)", f)),
    # Mesa's loader, asked to say why (the checks set EGL_LOG_LEVEL=debug, LIBGL_DEBUG=verbose): its
    # first failure names the driver and the loader's reason ($ORIGIN lines are its search path).
    # NVIDIA's DRM names are not Mesa's to ship: a GPU host's own trouble, said by the rules below.
    (re.compile(r"MESA-LOADER: failed to open (?P<driver>/[^:\s]*/(?!nvidia)[^/:\s]+_dri\.so): (?P<why>[^\n]+)"),
     _mesa_driver_failed),
    # The Vulkan loader's failure, after the ICD JSON it read where its "driver" messages are asked
    # for (tests/data/captures/cpu-host/vulkan-loader1.3.239-icd-json-names-missing-library.txt).
    (re.compile(r"(?:Found ICD manifest file (?P<json>\S+?), version[^\n]*\n(?:[^\n]*Searching for ICD drivers[^\n]*\n)?)?"
                r"ERROR[^\n]*?:\s+(?:\[Loader Message\] Code \d+ :\s+)?(?P<why>[^\n]+)\nERROR[^\n]*?:\s+"
                r"(?:\[Loader Message\] Code \d+ :\s+)?loader_icd_scan: Failed loading library associated "
                r"with ICD JSON (?P<lib>\S+?)\. Ignoring"), _vulkan_driver_failed),
    # The dynamic loader finding a library without the version node its user was linked against
    # (replaced by another library, or an older one), or of the other architecture; it names the
    # library (tests/data/captures/cpu-host/glibc2.36-*.txt).
    (re.compile(r"(?P<file>/[^\s:]+): version `(?P<version>[^']+)' not found \(required by (?P<by>[^)\s]+)\)"),
     lambda m, f: blaming(Cause.LIBRARY_WRONG_VERSION, "library", PurePosixPath(m.group("file")).name,
                          f"{m.group('file')} lacks the version {m.group('version')} that {PurePosixPath(m.group('by')).name} "
                          "needs (replaced by another library, or an older one)", "reinstall the package that ships it")),
    (re.compile(r"(?P<file>[\w./+-]+): wrong ELF class: (?P<class>ELFCLASS\d+)"),
     lambda m, f: blaming(Cause.LIBRARY_WRONG_VERSION, "library", PurePosixPath(m.group("file")).name,
                          f"{m.group('file')} is a library of another architecture ({m.group('class')}: "
                          f"{'32' if m.group('class') == 'ELFCLASS64' else '64'}-bit programs load it)",
                          "reinstall the package of this architecture that ships it")),
    # The dynamic loader finding a library that lacks a symbol its user needs (replaced by another
    # library, or of another version): it names the user, never the library at fault
    # (tests/data/captures/cpu-host/ldso-undefined-symbol-*.txt); rendergate.advice finds that one.
    (re.compile(r"(?:^|\s)(?P<file>[^\s:]+): undefined symbol: (?P<symbol>[\w@.]+)"),
     lambda m, f: blaming(Cause.LIBRARY_WRONG_VERSION, "needs", m.group("file"),
                          f"{PurePosixPath(m.group('file')).name} needs the symbol {m.group('symbol')}, which none of the "
                          "libraries it loads provides", "one of them was replaced or is of another version: reinstall "
                          "the package that ships it")),
    # What the dynamic loader says of a library (the graphics checks ask it about the vendor
    # libraries glvnd loads in silence): damaged, or needing one that is missing.
    (re.compile(rf"(?P<file>[\w./+-]+): (?P<why>{DAMAGED})"), _damaged),
    (re.compile(r"(?P<by>[^\s:]+):\s+(?:error while loading shared libraries: (?P<lib>[^\s:]+): cannot open shared object file"
                r"|(?P<listed>[\w.+-]+\.so[\w.]*) => not found)"),
     lambda m, f: nvidia_file_missing(m.group("lib") or m.group("listed"), f) if is_nvidia_file(m.group("lib") or m.group("listed"))
     else blaming(Cause.SYSTEM_LIBRARY_MISSING, "library", m.group("lib") or m.group("listed"),
                  f"system library {m.group('lib') or m.group('listed')} missing in the image (needed by "
                  f"{PurePosixPath(m.group('by')).name})", "install the package that ships it", needed_by=m.group("by"))),
    (re.compile(r"vkCreateInstance: Found no drivers!|vkCreateInstance failed with ERROR_INCOMPATIBLE_DRIVER"),
     _no_graphics_driver("Vulkan", "nvidia_icd.json", "mesa-vulkan-drivers")),
    (re.compile(r"eglinfo: eglInitialize failed"), _no_graphics_driver("EGL", "libEGL_nvidia.so.0", "libegl-mesa0 of Mesa 22 or later")),
    (re.compile(r"Failed to load module \"nvidia\""),
     lambda m, f: driver_file_missing("nvidia_drv.so", f)),
    (re.compile(r"Failed to load module \"(?P<mod>\w+)\""),
     lambda m, f: blaming(Cause.SYSTEM_LIBRARY_MISSING, "library", f"{m.group('mod')}_drv.so",
                          f"Xorg module {m.group('mod')} missing in the image",
                          f"install its package (driver {m.group('mod')}: xserver-xorg-video-{m.group('mod')})")),
    # Xorg without the keyboard descriptions it compiles its keymap from (xkb-data).
    (re.compile(r"XKB: Couldn't open rules file (?P<file>\S+)"),
     lambda m, f: blaming(Cause.DATA_FILES_MISSING, "file", m.group("file"),
                          f"Xorg's keyboard data missing in the image ({m.group('file')}: no XKB rules)",
                          "install xkb-data (xkeyboard-config)")),
    # bpy without its Cycles add-on (rendergate/probes/cycles_devices.py says which folder).
    (re.compile(r"the Cycles add-on is not loaded in bpy: (?P<folder>\S+) (?P<state>is missing|is there but did not load)"),
     lambda m, f: Diagnosis(Cause.PYTHON_MODULE_MISSING,
                            f"bpy's Cycles add-on {'missing in the image' if m.group('state') == 'is missing' else 'did not load'} "
                            f"({m.group('folder')}): reinstall bpy (its wheel ships the add-on)")),
    # A Python module cut short (tests/data/captures/cpu-host/python3.11-manim-module-truncated.txt),
    # or one that lacks a name its users import from it: emptied, or of another version than they
    # (python3.11-manim-module-emptied.txt); rendergate.advice holds the file to its wheel's RECORD.
    (re.compile(r'File "(?P<file>/[^"]+\.py)", line \d+\n(?:[^\n]*\n){0,3}?SyntaxError: (?P<why>[^\n]+)'),
     lambda m, f: blaming(Cause.FILE_DAMAGED, "file", m.group("file"),
                          f"the Python module {m.group('file')} does not compile ({m.group('why')}: cut short or damaged)",
                          "reinstall the distribution that ships it")),
    (re.compile(r"ImportError: cannot import name '(?P<name>\w+)' from '(?P<module>[\w.]+)' \((?P<file>/[^)]+)\)"),
     lambda m, f: blaming(Cause.LIBRARY_WRONG_VERSION, "file", m.group("file"),
                          f"the Python module {m.group('module')} ({m.group('file')}) lacks {m.group('name')}, which its "
                          "users import (damaged, or of another version than they)",
                          "reinstall the distributions of both at versions that match")),
    # Config files that do not parse, in their readers' words (tests/data/captures/cpu-host/:
    # fontconfig2.14.1-fonts-conf-truncated.txt, xorg1.21-conf-d-unknown-keyword.txt,
    # vulkan-loader1.3.239-icd-json-truncated.txt, manim0.22-default-cfg-truncated.txt).
    (re.compile(r'Fontconfig error: "(?P<file>[^"]+)", (?P<why>line \d+: [^\n]+)'),
     lambda m, f: config_invalid(m.group("file"), m.group("why"), "fontconfig")),
    # bpy without its colour management (tests/data/captures/cpu-host/bpy5.0.1-ocio-config-truncated.txt):
    # the render goes on in a fallback mode, and its picture is not the one asked for.
    (re.compile(r"OpenColorIO Error: (?:Error: )?Loading the OCIO profile '(?P<file>[^']+)' failed\. (?P<why>[^\n]+)"),
     lambda m, f: config_invalid(m.group("file"), m.group("why"), "OpenColorIO")),
    (re.compile(r"Parse error on line (?P<line>\d+) of section (?P<section>\w+) in file (?P<file>\S+)\n\s*(?P<why>[^\n]+)"),
     lambda m, f: config_invalid(m.group("file"), f"line {m.group('line')} of section {m.group('section')}: {m.group('why')}", "Xorg")),
    (re.compile(r"loader_get_json: Failed to parse JSON file (?P<file>\S+?),"),
     lambda m, f: config_invalid(m.group("file"), "not JSON", "the Vulkan loader")),
    (re.compile(r"configparser\.\w*Error: (?P<why>[^\n']*?):? '(?P<file>/[^']+)'(?:\n\s*\[line\s+(?P<line>\d+)\])?"),
     lambda m, f: config_invalid(m.group("file"), m.group("why") + (f", line {m.group('line')}" if m.group("line") else ""),
                                 "Python's configparser")),
    # A file the check's user may not read (a mode or owner left by the image's build).
    (re.compile(r"PermissionError: \[Errno 13\] Permission denied: '(?P<file>/[^']+)'"),
     lambda m, f: blaming(Cause.FILE_DAMAGED, "file", m.group("file"),
                          f"{m.group('file')} is not readable by the image's user (Permission denied)",
                          "make it readable (chmod a+r), or run as its owner")),
    # A module that lacks what its users take from it: shadowed by another of its name (a path
    # entry put first), or of another version (rendergate.advice asks where it is imported from
    # and what pip check says).
    (re.compile(r"AttributeError: (?:module '(?P<mod>[\w.]+)'|'(?P<cls>[\w]+)\.[\w.]+' object) has no attribute '(?P<attr>\w+)'"),
     lambda m, f: blaming(Cause.LIBRARY_WRONG_VERSION, "imported", (m.group("mod") or m.group("cls")).split(".")[0],
                          f"the Python module {(m.group('mod') or m.group('cls')).split('.')[0]} lacks {m.group('attr')}, "
                          "which its users take from it", "install versions that match (pip check names them)")),
    (re.compile(r"ModuleNotFoundError: No module named '(?P<mod>[\w.]+)'"),
     lambda m, f: blaming(Cause.PYTHON_MODULE_MISSING, "module", m.group("mod"),
                          f"Python module {m.group('mod')} missing in the image", "pip install it")),
    # A wrapper script whose program is gone (Debian's /usr/bin/Xorg runs /usr/lib/xorg/Xorg).
    (re.compile(r"(?P<script>/\S+): \d+: exec: (?P<tool>/\S+): not found"),
     lambda m, f: blaming(Cause.TOOL_MISSING, "file", m.group("tool"),
                          f"{m.group('tool')} not found in the target (the {m.group('script')} wrapper runs it)",
                          "reinstall the package that ships it")),
    # A program killed by SIGBUS, in a shell's words: a file it maps (a library, a cache) cut short
    # or rewritten in place while it ran (tests/data/captures/cpu-host/dash0.5.12-ffmpeg5.1-sigbus-libx264-truncated.txt).
    (re.compile(r"(?:^|\n)Bus error(?: \(core dumped\))?[ \t]*(?:\n|$)"), lambda m, f: crashed_on_a_mapped_file()),
    # A program that lost its execute bit, in a shell's words.
    # (Two jobs of one shell may write one line between them: the prefix then comes twice.)
    (re.compile(r"(?:^|\n)(?:(?:/bin/)?sh: \d+: )+(?P<file>[^:\s]+): (?P<why>Permission denied)"),
     lambda m, f: blaming(Cause.FILE_DAMAGED, "mode", m.group("file"),
                          f"{m.group('file')} is not executable in the image (Permission denied)",
                          "restore its mode (chmod +x) or reinstall the package that ships it")),
    (re.compile(r"(?P<lib>[\w.+-]+\.so[\w.]*): cannot open shared object file"),
     lambda m, f: blaming(Cause.SYSTEM_LIBRARY_MISSING, "library", m.group("lib"),
                          f"system library {m.group('lib')} missing in the image", "install the package that ships it")),
    (re.compile(r"(?:^|\n)(?:(?:(?:/bin/)?sh: \d+: )+|timeout: failed to run command ')(?P<tool>[^:' ]+)'?: (?:not found|No such file or directory)"),
     lambda m, f: tool_missing(m.group("tool"), f)),
]


def explained(diagnosis: Diagnosis, outcome: str) -> Diagnosis:
    """A wrong outcome (a picture unlike its reference) and the cause the producing tool gave."""
    missing = diagnosis.missing
    return replace(diagnosis, message=f"{outcome}: {diagnosis.message}",
                   missing=replace(missing, said=f"{outcome}: {missing.said}") if missing else None)


def classify(output: str, facts: Facts) -> Diagnosis | None:
    """The diagnosis for a failed command's output, or None when no known cause matches."""
    for pattern, build in _PATTERNS:
        match = pattern.search(output)
        if match:
            return build(match, facts)
    return None


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


def diagnose(output: str, rc: int, what: str, facts: Facts) -> Diagnosis:
    """classify(); a cause it does not know is said to be unknown, with the first error line
    quoted, so that nothing ends as a traceback and nothing is blamed without evidence."""
    found = classify(output, facts)
    if found:
        return found
    if rc in (128 + SIGBUS, -SIGBUS):  # killed by SIGBUS where no shell said so
        return crashed_on_a_mapped_file(what)
    # rendergate.advice holds the program (the first word of `what`) and what it loads to their
    # packages: a file that is not its package's own (a stand-in, a replaced library) says why.
    program = re.match(r"[\w./+-]+", what)
    return Diagnosis(Cause.COMMAND_FAILED, f"{what} failed (exit {rc}), unknown cause: {first_error(output)}",
                     Missing("program", program.group(0), f"{what} failed (exit {rc}: {first_error(output)})") if program else None)
