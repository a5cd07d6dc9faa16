"""The diagnosis of each cause the suites know, built from what was seen: which NVIDIA driver
file is missing and why (no device, a capability not asked for, gVisor), a file damaged, a
tool that lacks what it is asked for, a configuration that does not parse. Each is one line
that says what to do; advice is held to the image later (rendergate.core.advice)."""
from __future__ import annotations

import re
from pathlib import PurePosixPath

from rendergate.core.diagnosis import Cause, Diagnosis, Facts, blaming
from rendergate.core.driver_capabilities import DRIVER_FILES, is_driver_file
from rendergate.core.gpuinfo import lookup, no_nvenc_engine
from rendergate.core.platforms import Platform

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


def nvenc_refused(match: re.Match, facts: Facts) -> Diagnosis:
    lacking = [why for name in facts.gpu_names if (why := no_nvenc_engine(lookup(name), name))]
    if lacking:
        return Diagnosis(Cause.GPU_LACKS_ENGINE, f"{lacking[0]}: run this check on a GPU with NVENC (T4, L4, A10, L40S)")
    return Diagnosis(Cause.COMMAND_FAILED, f"NVENC refused the GPU: {match.group(0).strip()}")


def os_call_refused(match: re.Match, facts: Facts) -> Diagnosis:
    if facts.platform == Platform.GVISOR:
        return Diagnosis(Cause.PLATFORM, f"the gVisor sandbox refused a GPU driver call ({match.group(0).strip()}), "
                                         f"not the image: {GVISOR_WAY_OUT}")
    return Diagnosis(Cause.COMMAND_FAILED, f"the CUDA driver refused an OS call: {match.group(0).strip()}")


def no_graphics_driver(api: str, nvidia_file: str, mesa_package: str):
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


def nvidia_file_missing(name: str, facts: Facts) -> Diagnosis:
    if name in DRIVER_FILES:
        return driver_file_missing(name, facts)
    if not facts.nvidia_devices_visible:
        return Diagnosis(Cause.NO_GPU_DEVICE, f"{name} (NVIDIA's driver) missing and no /dev/nvidia* visible: start the "
                                              "container with a GPU (--gpus all / the NVIDIA runtime)")
    return Diagnosis(Cause.DRIVER_CAPABILITY_MISSING,
                     f"{name} (NVIDIA's driver) missing: the NVIDIA container toolkit injects it with "
                     "NVIDIA_DRIVER_CAPABILITIES=graphics,display, unless the image carries its own driver (run.bundled_driver)")


def cannot_load(driver: str, library: str, why: str, package: str, facts: Facts) -> Diagnosis:
    """A driver a loader could not open, with the loader's reason: its own file (`library`), or a
    library it needs."""
    culprit = re.match(r"(?P<file>[^:\s]+): (?P<reason>.+)", why.strip())
    needed = PurePosixPath(culprit.group("file")).name if culprit else library
    reason = culprit.group("reason") if culprit else why.strip()
    if needed != library:
        what, fix = f"{driver} cannot load: {needed}", "the package that ships it"
    else:
        what, fix = driver, package
    if "cannot open shared object file" in reason and is_driver_file(needed):
        return nvidia_file_missing(needed, facts)
    if "cannot open shared object file" in reason:
        return blaming(Cause.SYSTEM_LIBRARY_MISSING, "library", needed, f"{what} missing in the image", f"install {fix}")
    if reason.startswith("undefined symbol") and culprit:  # it loads, and lacks what another of its libraries should give
        return blaming(Cause.LIBRARY_WRONG_VERSION, "needs", culprit.group("file"),
                       f"{what}: {needed} needs a symbol none of the libraries it loads provides ({reason})",
                       "one of them was replaced or is of another version: reinstall the package that ships it")
    return blaming(Cause.FILE_DAMAGED, "library", needed, f"{what} is damaged in the image ({reason})", f"reinstall {fix}")


def mesa_driver_failed(match: re.Match, facts: Facts) -> Diagnosis:
    """Mesa's loader (EGL_LOG_LEVEL=debug, LIBGL_DEBUG=verbose) naming the DRI driver it could not open."""
    library = PurePosixPath(match.group("driver")).name
    return cannot_load(f"Mesa's driver {library}", library, match.group("why"), "libgl1-mesa-dri", facts)


def vulkan_driver_failed(match: re.Match, facts: Facts) -> Diagnosis:
    """The Vulkan loader (VK_LOADER_DEBUG=error,warn,driver) naming the library of an ICD JSON it
    could not load, and the JSON it read it from: a library that is not there is the JSON's
    word, deleted from its package or named wrong (rendergate.core.advice asks the image which)."""
    path, manifest = match.group("lib"), match.group("json")
    library = PurePosixPath(path).name
    if library in DRIVER_FILES:
        return driver_file_missing(library, facts)
    if manifest and not is_driver_file(library) and re.match(rf"{re.escape(path)}: cannot open shared object file",
                                                             match.group("why").strip()):
        return blaming(Cause.SYSTEM_LIBRARY_MISSING, "library", library,
                       f"the ICD JSON {manifest} names the Vulkan driver {path}, which is not there",
                       "restore it from its package, or correct the JSON's library_path", named_by=manifest)
    return cannot_load(f"the Vulkan driver {library}", library, match.group("why"), "mesa-vulkan-drivers", facts)


def damaged_file(match: re.Match, facts: Facts) -> Diagnosis:
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
    if first["state"] == "not executable":
        cause, what = Cause.FILE_DAMAGED, "is not executable (no x bit: chmod 0755 it)"
    elif first["state"] == "not a file":
        cause, what = Cause.FILE_DAMAGED, "is not a file (a folder, a socket, a FIFO or a device is in its place)"
    elif first["state"] == "missing":
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
    it (rendergate.core.advice finds which, and whether it changed), else corrected."""
    return blaming(Cause.CONFIG_INVALID, "file", file, f"{file} does not parse ({reader}: {why})",
                   "correct it, or restore it from the package that ships it")


def tex_file_cut_short(file: str, why: str) -> Diagnosis:
    """A TeX file that ends before its conditionals or definitions do (rendergate.core.advice finds
    its package, or the file TeX reads in its place)."""
    return blaming(Cause.FILE_DAMAGED, "file", file, f"the TeX file {file} ends too early ({why}: cut short)",
                   "reinstall the TeX Live package that ships it")


def tex_format(file: str, why: str, damaged: bool) -> Diagnosis:
    """A TeX format (.fmt) is no package's file: fmtutil builds it where TeX Live is installed."""
    name = PurePosixPath(file).stem
    return Diagnosis(Cause.FILE_DAMAGED if damaged else Cause.LIBRARY_WRONG_VERSION,
                     f"the TeX format {file} {why}: rebuild it (fmtutil-sys --byfmt {name})")
