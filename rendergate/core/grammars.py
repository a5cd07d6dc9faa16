"""The grammars of the tools' outputs: each pattern a tool prints when it fails for a known
cause (tests/data/captures hold the real outputs), the first that matches naming the cause.
`classify` reads an output with them; `diagnose` says "unknown cause" where none applies,
quoting the tool."""
from __future__ import annotations

import re
from pathlib import PurePosixPath
from signal import SIGBUS

from rendergate.core.diagnosis import Cause, Diagnosis, Facts, Missing, blaming, first_error
from rendergate.core.driver_capabilities import driver_library, file_serving, is_driver_file
from rendergate.core.known_causes import (
    DAMAGED,
    cannot_load,
    config_invalid,
    crashed_on_a_mapped_file,
    damaged_file,
    driver_file_missing,
    encoder_not_compiled,
    mesa_driver_failed,
    no_graphics_driver,
    nvenc_refused,
    nvidia_file_missing,
    os_call_refused,
    tex_file_cut_short,
    tex_format,
    tool_missing,
    tool_refuses_option,
    vulkan_driver_failed,
)


def blame(pattern: str, cause: Cause, kind: str, name: str, said: str, advice: str):
    """A grammar that blames one thing: the pattern, and the diagnosis its match makes; `name`,
    `said` and `advice` are templates of the match's named groups ("{file} missing")."""
    def build(match: re.Match, facts: Facts) -> Diagnosis:
        groups = {key: value or "" for key, value in match.groupdict().items()}
        return blaming(cause, kind, name.format(**groups), said.format(**groups), advice.format(**groups))
    return re.compile(pattern), build


# Ordered: the first pattern that matches the output wins.
# How a driver refuses an NVENC session over the cap: error 21 on recent drivers, 10 on older
# ones (tests/data/captures/public/, sources in its README).
SESSION_REFUSED = re.compile(r"OpenEncodeSessionEx failed: (?:incompatible client key \(21\)|out of memory \(10\))")

_PATTERNS: list[tuple[re.Pattern, callable]] = [
    # gVisor's nvproxy refusing a driver call it does not proxy: cuInit fails with this, where the
    # same image under runc works (gVisor issue 9452, tests/data/captures/public/).
    (re.compile(r"(?:cu\w+\(\S*\) failed -> )?CUDA_ERROR_OPERATING_SYSTEM[^\n]*"), os_call_refused),
    # ffmpeg's words for a library of the driver it loads itself (NVENC's, NVDEC's, CUDA's, NVML's).
    (re.compile(rf"(?:Cannot load|Could not load) (?P<lib>{driver_library('utility', 'compute', 'video')})"),
     lambda m, f: driver_file_missing(m.group("lib"), f)),
    (re.compile(rf"(?P<lib>{driver_library()}): cannot open shared object file"),
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
     lambda m, f: driver_file_missing(file_serving("NVML"), f)),
    (re.compile(r"Driver does not support the required nvenc API version\. Required: (?P<need>[\d.]+) Found: (?P<have>[\d.]+)"
                r"(?:.*\n.*minimum required Nvidia driver for nvenc is (?P<driver>[\d.]+))?"),
     lambda m, f: Diagnosis(Cause.DRIVER_TOO_OLD,
                            f"the NVIDIA driver's NVENC API is {m.group('have')} but this ffmpeg needs {m.group('need')}: "
                            f"upgrade the host driver{' to ' + m.group('driver') + '+' if m.group('driver') else ''} "
                            "or build ffmpeg against older nv-codec-headers")),
    (re.compile(r"OpenEncodeSessionEx failed: unsupported device.*|No (?:NVENC )?capable devices found.*"),
     nvenc_refused),
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
    # (\KV@standalone.cls@math), found by the search path TeX uses (rendergate.core.advice asks kpsewhich).
    (re.compile(r"File ended while scanning (?:use|definition) of \\[^\n]*?(?P<file>[\w-]+\.(?:cls|sty))"),
     lambda m, f: tex_file_cut_short(m.group("file"), "File ended while scanning its definitions")),
    (re.compile(r"You do not have package (?P<pkg>\S+?) installed|File [`'](?P<pkg2>[^'`]+\.(?:cls|sty))' not found"),
     lambda m, f: blaming(Cause.LATEX_PACKAGE_MISSING, "file", m.group("pkg2") or f"{m.group('pkg')}.sty",
                          f"LaTeX package {m.group('pkg') or m.group('pkg2')} missing",
                          # which package ships it the image knows only when it is installed (rendergate.core.advice)
                          f"install the TeX Live package that ships it (apt-file search {m.group('pkg2') or m.group('pkg') + '.sty'} "
                          "names it)")),
    (re.compile(r"No such file or directory: '(?P<tool>latex|dvisvgm|ffmpeg|ffprobe|xelatex)'"),
     lambda m, f: tool_missing(m.group("tool"), f)),
    # Xorg's module loader: the module it could not open and the loader's reason (its own file, or
    # a library it needs), before the module's name alone ("Failed to load module "glx"") is read.
    (re.compile(r"\(EE\) Failed to load (?P<module>/\S+\.so): (?P<why>[^\n]+)"),
     lambda m, f: cannot_load(f"Xorg's module {PurePosixPath(m.group('module')).name}", PurePosixPath(m.group("module")).name,
                               m.group("why"), "the Xorg package that ships it", f)),
    # GLX: a client that finds no GLX visual says so whatever is missing; the server's log tells
    # which (the checks add its (EE) lines): the extension itself, or the renderer it loads.
    # A module file that is not that module (replaced by another library): Xorg finds no <name>ModuleData
    # in it (tests/data/captures/cpu-host/xorg1.21-glx-module-replaced.txt).
    blame(r"LoadModule: Module (?P<mod>\w+) does not have a (?P=mod)ModuleData data object", Cause.FILE_DAMAGED, "file",
          "lib{mod}.so", "Xorg's module {mod} (lib{mod}.so) is not that module: it has no {mod}ModuleData (replaced or damaged)",
          "reinstall the package that ships it"),
    (re.compile(r"extension \"GLX\" missing|Failed to load module \"glx\""),
     lambda m, f: Diagnosis(Cause.X_EXTENSION_MISSING,
                            f"the X server has no GLX extension ({m.group(0)}): Xorg's libglx.so (xserver-xorg-core) "
                            f"or the NVIDIA {file_serving('AIGLX')} is missing")),
    # The server's own DRI loading, with the loader's reason: the driver missing, or one it needs.
    (re.compile(r"AIGLX error: dlopen of (?P<path>\S+/(?P<driver>\w+_dri\.so)) failed \((?P<why>[^\n]*)\)"),
     lambda m, f: cannot_load(f"Mesa's DRI driver {m.group('driver')}", m.group("driver"), m.group("why"),
                               "libgl1-mesa-dri (GLX is loaded but has no renderer to load)", f)),
    # Mesa's loader, asked to say why (the checks set EGL_LOG_LEVEL=debug, LIBGL_DEBUG=verbose): its
    # first failure names the driver and the loader's reason ($ORIGIN lines are its search path).
    # NVIDIA's DRM names are not Mesa's to ship: a GPU host's own trouble, said by the rules below.
    # A DRI driver file that is not Mesa's driver (replaced by another library): it exports none of its
    # own entry points (mesa22-eglinfo-debug-swrast-driver-replaced.txt), whatever it loads.
    blame(r"MESA-LOADER: driver (?:does not expose \w+\(\): |exports no extensions \()(?P<file>/[^:\s]+_dri\.so)",
          Cause.FILE_DAMAGED, "file", "{file}",
          "Mesa's driver {file} exports none of its own entry points: it is not that driver (replaced or damaged)",
          "reinstall the package that ships it"),
    (re.compile(r"MESA-LOADER: failed to open (?P<driver>/[^:\s]*/(?!nvidia)[^/:\s]+_dri\.so): (?P<why>[^\n]+)"),
     mesa_driver_failed),
    # The Vulkan loader's failure, after the ICD JSON it read where its "driver" messages are asked
    # for (tests/data/captures/cpu-host/vulkan-loader1.3.239-icd-json-names-missing-library.txt).
    # An ICD library that is not a Vulkan driver (replaced by another library): the loader finds no
    # vk_icdGetInstanceProcAddr in it (vulkan-loader1.3.239-icd-library-replaced.txt).
    blame(r"Attempt to retrieve either 'vkGetInstanceProcAddr' or 'vk_icdGetInstanceProcAddr' from ICD (?P<file>/\S+) failed",
          Cause.FILE_DAMAGED, "file", "{file}",
          "the Vulkan driver {file} exports no Vulkan entry point (vk_icdGetInstanceProcAddr): it is not that driver (replaced or damaged)",
          "reinstall the package that ships it"),
    (re.compile(r"(?:Found ICD manifest file (?P<json>\S+?), version[^\n]*\n(?:[^\n]*Searching for ICD drivers[^\n]*\n)?)?"
                r"ERROR[^\n]*?:\s+(?:\[Loader Message\] Code \d+ :\s+)?(?P<why>[^\n]+)\nERROR[^\n]*?:\s+"
                r"(?:\[Loader Message\] Code \d+ :\s+)?loader_icd_scan: Failed loading library associated "
                r"with ICD JSON (?P<lib>\S+?)\. Ignoring"), vulkan_driver_failed),
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
    # (tests/data/captures/cpu-host/ldso-undefined-symbol-*.txt); rendergate.core.advice finds that one.
    (re.compile(r"(?:^|\s)(?P<file>[^\s:]+): undefined symbol: (?P<symbol>[\w@.]+)"),
     lambda m, f: blaming(Cause.LIBRARY_WRONG_VERSION, "needs", m.group("file"),
                          f"{PurePosixPath(m.group('file')).name} needs the symbol {m.group('symbol')}, which none of the "
                          "libraries it loads provides", "one of them was replaced or is of another version: reinstall "
                          "the package that ships it")),
    # What the dynamic loader says of a library (the graphics checks ask it about the vendor
    # libraries glvnd loads in silence): damaged, or needing one that is missing.
    (re.compile(rf"(?P<file>[\w./+-]+): (?P<why>{DAMAGED})"), damaged_file),
    (re.compile(r"(?P<by>[^\s:]+):\s+(?:error while loading shared libraries: (?P<lib>[^\s:]+): cannot open shared object file"
                r"|(?P<listed>[\w.+-]+\.so[\w.]*) => not found)"),
     lambda m, f: nvidia_file_missing(m.group("lib") or m.group("listed"), f) if is_driver_file(m.group("lib") or m.group("listed"))
     else blaming(Cause.SYSTEM_LIBRARY_MISSING, "library", m.group("lib") or m.group("listed"),
                  f"system library {m.group('lib') or m.group('listed')} missing in the image (needed by "
                  f"{PurePosixPath(m.group('by')).name})", "install the package that ships it", needed_by=m.group("by"))),
    (re.compile(r"vkCreateInstance: Found no drivers!|vkCreateInstance failed with ERROR_INCOMPATIBLE_DRIVER"),
     no_graphics_driver("Vulkan", file_serving("Vulkan"), "mesa-vulkan-drivers")),
    (re.compile(r"eglinfo: eglInitialize failed"), no_graphics_driver("EGL", file_serving("EGL"), "libegl-mesa0 of Mesa 22 or later")),
    (re.compile(r"Failed to load module \"nvidia\""),
     lambda m, f: driver_file_missing(file_serving("Xorg"), f)),
    blame(r"Failed to load module \"(?P<mod>\w+)\"", Cause.SYSTEM_LIBRARY_MISSING, "library", "{mod}_drv.so",
          "Xorg module {mod} missing in the image", "install its package (driver {mod}: xserver-xorg-video-{mod})"),
    # Xorg without the keyboard descriptions it compiles its keymap from (xkb-data).
    blame(r"XKB: Couldn't open rules file (?P<file>\S+)", Cause.DATA_FILES_MISSING, "file", "{file}",
          "Xorg's keyboard data missing in the image ({file}: no XKB rules)", "install xkb-data (xkeyboard-config)"),
    # bpy without its Cycles add-on (rendergate/probes/cycles_devices.py says which folder).
    # (The folder is held to bpy's RECORD: which of its files is missing or not the wheel's own.)
    (re.compile(r"the Cycles add-on is not loaded in bpy: (?P<folder>\S+) (?P<state>is missing|is there but did not load)"),
     lambda m, f: blaming(Cause.PYTHON_MODULE_MISSING, "file", m.group("folder"),
                          f"bpy's Cycles add-on {'missing in the image' if m.group('state') == 'is missing' else 'did not load'} "
                          f"({m.group('folder')})", "reinstall bpy (its wheel ships the add-on)")),
    # A Python module cut short (tests/data/captures/cpu-host/python3.11-manim-module-truncated.txt),
    # or one that lacks a name its users import from it: emptied, or of another version than they
    # (python3.11-manim-module-emptied.txt); rendergate.core.advice holds the file to its wheel's RECORD.
    blame(r'File "(?P<file>/[^"]+\.py)", line \d+\n(?:[^\n]*\n){0,3}?SyntaxError: (?P<why>[^\n]+)', Cause.FILE_DAMAGED, "file", "{file}",
          "the Python module {file} does not compile ({why}: cut short or damaged)", "reinstall the distribution that ships it"),
    # An extension module file that is not that module (replaced by another one of its wheel):
    # python3.11-extension-module-replaced.txt.
    blame(r"ImportError: dynamic module does not define module export function \(PyInit_(?P<mod>\w+)\)", Cause.FILE_DAMAGED,
          "library", "{mod}", "the Python extension module {mod} is not that module: it defines no PyInit_{mod} (replaced or damaged)",
          "reinstall the distribution that ships it"),
    blame(r"ImportError: cannot import name '(?P<name>\w+)' from '(?P<module>[\w.]+)' \((?P<file>/[^)]+)\)",
          Cause.LIBRARY_WRONG_VERSION, "file", "{file}",
          "the Python module {module} ({file}) lacks {name}, which its users import (damaged, or of another version than they)",
          "reinstall the distributions of both at versions that match"),
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
    blame(r"PermissionError: \[Errno 13\] Permission denied: '(?P<file>/[^']+)'", Cause.FILE_DAMAGED, "file", "{file}",
          "{file} is not readable by the image's user (Permission denied)", "make it readable (chmod a+r), or run as its owner"),
    # A module that lacks what its users take from it: shadowed by another of its name (a path
    # entry put first), or of another version (rendergate.core.advice asks where it is imported from
    # and what pip check says).
    # Manim's words when the dvisvgm it runs converts no DVI to SVG (a stand-in, an old one): the program
    # is held to its package (python3.11-manim-dvisvgm-converts-nothing.txt).
    (re.compile(r"Your installation does not support converting \.dvi files to SVG"),
     lambda m, f: Diagnosis(Cause.FEATURE_NOT_COMPILED, "dvisvgm converts no DVI file to SVG (Manim: \"Your installation does "
                            "not support converting .dvi files to SVG\"): a dvisvgm of 2.4 or later, with its DVI support",
                            Missing("program", "dvisvgm", "dvisvgm converts no DVI file to SVG"))),
    # A program a Python process runs by its name, not executable (python3.11-subprocess-program-not-executable.txt).
    blame(r"PermissionError: \[Errno 13\] Permission denied: '(?P<file>[^'/]+)'", Cause.FILE_DAMAGED, "mode", "{file}",
          "{file} is not executable in the image (Permission denied when run)", "restore its mode (chmod +x) or reinstall the package that ships it"),
    (re.compile(r"AttributeError: (?:module '(?P<mod>[\w.]+)'|'(?P<cls>[\w]+)\.[\w.]+' object) has no attribute '(?P<attr>\w+)'"),
     lambda m, f: blaming(Cause.LIBRARY_WRONG_VERSION, "imported", (m.group("mod") or m.group("cls")).split(".")[0],
                          f"the Python module {(m.group('mod') or m.group('cls')).split('.')[0]} lacks {m.group('attr')}, "
                          "which its users take from it", "install versions that match (pip check names them)")),
    blame(r"ModuleNotFoundError: No module named '(?P<mod>[\w.]+)'", Cause.PYTHON_MODULE_MISSING, "module", "{mod}",
          "Python module {mod} missing in the image", "pip install it"),
    # A wrapper script whose program is gone (Debian's /usr/bin/Xorg runs /usr/lib/xorg/Xorg).
    blame(r"(?P<script>/\S+): \d+: exec: (?P<file>/\S+): Permission denied", Cause.FILE_DAMAGED, "mode", "{file}",
          "{file} is not executable in the image (the {script} wrapper runs it)",
          "restore its mode (chmod +x) or reinstall the package that ships it"),
    blame(r"(?P<script>/\S+): \d+: exec: (?P<tool>/\S+): not found", Cause.TOOL_MISSING, "file", "{tool}",
          "{tool} not found in the target (the {script} wrapper runs it)", "reinstall the package that ships it"),
    # A program killed by SIGBUS, in a shell's words: a file it maps (a library, a cache) cut short
    # or rewritten in place while it ran (tests/data/captures/cpu-host/dash0.5.12-ffmpeg5.1-sigbus-libx264-truncated.txt).
    (re.compile(r"(?:^|\n)Bus error(?: \(core dumped\))?[ \t]*(?:\n|$)"), lambda m, f: crashed_on_a_mapped_file()),
    # A program that lost its execute bit, in a shell's words.
    # (Two jobs of one shell may write one line between them: the prefix then comes twice.)
    blame(r"(?:^|\n)(?:(?:/bin/)?sh: \d+: )+(?P<file>[^:\s]+): (?P<why>Permission denied)", Cause.FILE_DAMAGED, "mode", "{file}",
          "{file} is not executable in the image (Permission denied)", "restore its mode (chmod +x) or reinstall the package that ships it"),
    blame(r"(?P<lib>[\w.+-]+\.so[\w.]*): cannot open shared object file", Cause.SYSTEM_LIBRARY_MISSING, "library", "{lib}",
          "system library {lib} missing in the image", "install the package that ships it"),
    (re.compile(r"(?:^|\n)(?:(?:(?:/bin/)?sh: \d+: )+|timeout: failed to run command ')(?P<tool>[^:' ]+)'?: (?:not found|No such file or directory)"),
     lambda m, f: tool_missing(m.group("tool"), f)),
]


def classify(output: str, facts: Facts) -> Diagnosis | None:
    """The diagnosis for a failed command's output, or None when no known cause matches."""
    for pattern, build in _PATTERNS:
        match = pattern.search(output)
        if match:
            return build(match, facts)
    return None


def diagnose(output: str, rc: int, what: str, facts: Facts) -> Diagnosis:
    """classify(); a cause it does not know is said to be unknown, with the first error line
    quoted, so that nothing ends as a traceback and nothing is blamed without evidence."""
    found = classify(output, facts)
    if found:
        return found
    if rc in (128 + SIGBUS, -SIGBUS):  # killed by SIGBUS where no shell said so
        return crashed_on_a_mapped_file(what)
    # rendergate.core.advice holds the program (the first word of `what`) and what it loads to their
    # packages: a file that is not its package's own (a stand-in, a replaced library) says why.
    program = re.match(r"[\w./+-]+", what)
    return Diagnosis(Cause.COMMAND_FAILED, f"{what} failed (exit {rc}), unknown cause: {first_error(output)}",
                     Missing("program", program.group(0), f"{what} failed (exit {rc}: {first_error(output)})") if program else None)
