"""The diagnosis of real failure outputs (captures named in tests/data/captures/README.md)."""
import re
from pathlib import Path

import pytest

from rendergate.checks.graphics import vendor_failure
from rendergate.core.diagnosis import Cause, Facts, first_error
from rendergate.core.grammars import classify, diagnose
from rendergate.core.known_causes import bundled_driver_wrong, driver_baked_in
from rendergate.core.parsers import glx_device, parse_driver_version, parse_eglinfo, parse_glxinfo, parse_vulkaninfo_summary

CAPTURES = Path(__file__).parent / "data" / "captures"
H100 = Facts(nvidia_devices_visible=True, gpu_names=("NVIDIA H100 80GB HBM3",))
NO_GPU = Facts(nvidia_devices_visible=False)


def test_nvenc_without_gpu_is_no_device():
    d = classify((CAPTURES / "cpu-host" / "debian-ffmpeg5.1-h264_nvenc-no-gpu.txt").read_text(), NO_GPU)
    assert d.cause is Cause.NO_GPU_DEVICE
    assert "libcuda.so.1" in d.message


def test_nvenc_api_newer_than_the_driver_is_driver_too_old():
    d = classify((CAPTURES / "h100-2026-11-23" / "ffmpeg9-static-h264_nvenc.txt").read_text(), H100)
    assert d.cause is Cause.DRIVER_TOO_OLD
    assert "13.1" in d.message and "13.0" in d.message


def test_missing_encode_library_names_the_video_capability():
    d = classify("[h264_nvenc @ 0x55] Cannot load libnvidia-encode.so.1\n", H100)
    assert d.cause is Cause.DRIVER_CAPABILITY_MISSING
    assert d.message == "libnvidia-encode.so.1 missing: the container lacks NVIDIA_DRIVER_CAPABILITIES=video"


def test_nvidia_smi_absent_in_a_gpu_container_is_the_utility_capability():
    d = classify("/bin/sh: 1: nvidia-smi: not found\n", H100)
    assert d.cause is Cause.DRIVER_CAPABILITY_MISSING and "utility" in d.message


def test_an_unknown_cause_is_said_so_quoting_the_first_error_line():
    d = diagnose("starting\nsomething odd happened\n\n", 3, "the probe", NO_GPU)  # no line reads as an error: the last
    assert d.cause is Cause.COMMAND_FAILED
    assert d.message == "the probe failed (exit 3), unknown cause: something odd happened"
    traceback = ('Traceback (most recent call last):\n  File "/w/probes/nvml.py", line 9, in <module>\n'
                 "    print(handle.name)\nAttributeError: 'NoneType' object has no attribute 'name'\n")
    assert diagnose(traceback, 1, "the probe", NO_GPU).message.endswith(
        "unknown cause: AttributeError: 'NoneType' object has no attribute 'name'")


def test_xorg_without_its_keyboard_data_is_named_not_its_last_words():
    """Xorg's real output (its (EE) lines as the check greps them): the cause is the XKB rules it
    could not open, not the system bus every container lacks nor "Server terminated"."""
    output = (CAPTURES / "cpu-host" / "xorg1.21-without-xkb-data.txt").read_text()
    d = diagnose(output, 1, "Xorg with the dummy driver", NO_GPU)
    assert d.cause is Cause.DATA_FILES_MISSING and "xkb-data" in d.message and "xkb/rules/evdev" in d.message
    unknown = output.replace("Couldn't open rules file", "cannot read rules")  # a grammar nobody taught it
    assert first_error(unknown) == "(EE) XKB: cannot read rules /usr/share/X11/xkb/rules/evdev"
    assert "Server terminated" not in diagnose(unknown, 1, "Xorg", NO_GPU).message
    only_noise = "\n".join(line for line in output.splitlines() if "dbus-core" in line or "did not come up" in line)
    assert first_error(only_noise) == "Xorg did not come up"  # the system bus every container lacks is never it


def test_h100_refusing_nvenc_is_a_gpu_without_the_engine():
    d = classify((CAPTURES / "h100-2026-11-23" / "ffmpeg-nvenc-api11-h264_nvenc.txt").read_text(), H100)
    assert d.cause is Cause.GPU_LACKS_ENGINE
    assert d.message.startswith("NVIDIA H100 80GB HBM3 has no NVENC engine")


def test_nvenc_refused_on_a_gpu_that_has_the_engine_is_not_blamed_on_the_gpu():
    l4 = Facts(nvidia_devices_visible=True, gpu_names=("NVIDIA L4",))
    d = classify((CAPTURES / "h100-2026-11-23" / "ffmpeg-nvenc-api11-h264_nvenc.txt").read_text(), l4)
    assert d.cause is Cause.COMMAND_FAILED


def test_llvmpipe_fails_the_nvidia_renderer_requirement():
    info = parse_glxinfo((CAPTURES / "cpu-host" / "mesa-llvmpipe-glxinfo-B.txt").read_text())
    failure = vendor_failure([glx_device(info)], "GLX", "nvidia")
    assert failure.cause is Cause.SOFTWARE_RENDERER
    assert failure.message.startswith("GLX renders in software (llvmpipe")
    assert vendor_failure([glx_device(info)], "GLX", "mesa") is not None  # software never passes a vendor requirement


def test_software_egl_and_vulkan_fail_the_nvidia_vendor_requirement():
    egl = parse_eglinfo((CAPTURES / "cpu-host" / "mesa-eglinfo.txt").read_text())
    vulkan = parse_vulkaninfo_summary((CAPTURES / "cpu-host" / "mesa-vulkaninfo-summary.txt").read_text())
    for api, devices, file in (("EGL", egl, "libEGL_nvidia.so.0"), ("Vulkan", vulkan, "nvidia_icd.json")):
        failure = vendor_failure(devices, api, "nvidia")
        assert failure.cause is Cause.SOFTWARE_RENDERER and failure.message.startswith(f"{api} renders in software")
        assert file in failure.message
    assert vendor_failure([], "Vulkan", "nvidia").message == "Vulkan offers no nvidia device (found: no device)"


def test_a_session_over_the_cap_is_the_session_limit():
    for capture in ("ffmpeg-nvenc-session-refused-21.txt", "ffmpeg-nvenc-session-refused-10.txt"):
        d = classify((CAPTURES / "public" / capture).read_text(), Facts(nvidia_devices_visible=True, gpu_names=("NVIDIA GeForce RTX 4090",)))
        assert d.cause is Cause.SESSION_LIMIT, capture
        assert "concurrent-session cap" in d.message


def test_nvenc_refused_on_the_h100_names_the_gpu_from_the_capability_table():
    d = classify((CAPTURES / "h100-2026-11-23" / "ffmpeg-nvenc-api11-h264_nvenc.txt").read_text(), H100)
    assert d.cause is Cause.GPU_LACKS_ENGINE and d.message.startswith("NVIDIA H100 80GB HBM3 has no NVENC engine")


def test_driver_files_baked_into_an_image_name_their_version_and_package():
    """What rendergate.engines.targets' baked_driver_files found in an image with Debian's nvidia-smi and
    libnvidia-ml1 installed (tests/known_bad/nvidia-userspace-from-debian)."""
    lines = (CAPTURES / "cpu-host" / "debian-nvidia535-userspace-baked.txt").read_text().splitlines()
    baked = [tuple(line.split("|", 2)) for line in lines]
    d = driver_baked_in(baked, "580.159.04")
    assert d.cause is Cause.DRIVER_BAKED_IN
    assert "of driver 535.261.03" in d.message and "this host's kernel module is 580.159.04" in d.message
    assert "remove the packages libnvidia-ml1, nvidia-smi" in d.message


def test_no_glx_visual_is_blamed_on_what_the_servers_log_shows_missing():
    """glxinfo says the same ("couldn't find RGB GLX visual") without the GLX module and without
    Mesa's DRI driver; the X server's (EE) lines tell them apart. Alone, it blames nothing."""
    without_glx = (CAPTURES / "cpu-host" / "xorg1.21-glxinfo-without-libglx.txt").read_text()
    without_dri = (CAPTURES / "cpu-host" / "xorg1.21-glxinfo-without-mesa-dri.txt").read_text()
    assert classify(without_glx, NO_GPU).cause is Cause.X_EXTENSION_MISSING
    dri = classify(without_dri, NO_GPU)
    assert dri.cause is Cause.SYSTEM_LIBRARY_MISSING and "swrast_dri.so" in dri.message and "GLX is loaded" in dri.message
    client_only = without_dri.splitlines()[0]
    d = diagnose(client_only, 0, "glxinfo -B (no OpenGL renderer)", NO_GPU)
    assert d.cause is Cause.COMMAND_FAILED and "unknown cause: Error: couldn't find RGB GLX visual" in d.message


def test_a_driver_library_mismatch_names_the_library_version_and_both_ways_out():
    """nvidia-smi in an image that baked driver 565 on a host running 535 (public capture)."""
    d = classify((CAPTURES / "public" / "nvidia-smi-driver-library-mismatch.txt").read_text(), H100)
    assert d.cause is Cause.DRIVER_VERSION_MISMATCH
    assert "(NVML 565.57)" in d.message and "driver files of its own" in d.message and "reboot the host" in d.message


def test_bpy_without_its_cycles_addon_is_named_not_its_attribute_error():
    d = classify((CAPTURES / "cpu-host" / "bpy5.0.1-without-cycles-addon.txt").read_text(), NO_GPU)
    assert d.cause is Cause.PYTHON_MODULE_MISSING and "Cycles add-on missing" in d.message
    assert "addons_core/cycles" in d.message and "AttributeError" not in d.message


def test_the_loaders_name_the_library_a_graphics_driver_could_not_load():
    """Real outputs from an xorg-glx image without zlib (a mutant of `make mutate`): eglinfo only
    says eglInitialize failed and vulkaninfo found no driver; asked to say why, Mesa's loader and
    the Vulkan loader name the driver and the library it needs; Xorg's loader the same."""
    egl = diagnose((CAPTURES / "cpu-host" / "mesa22-eglinfo-debug-without-zlib.txt").read_text(), 0, "eglinfo", NO_GPU)
    assert egl.cause is Cause.SYSTEM_LIBRARY_MISSING
    assert egl.message.startswith("Mesa's driver swrast_dri.so cannot load: libz.so.1 missing in the image")
    vulkan = diagnose((CAPTURES / "cpu-host" / "vulkan-loader-without-zlib.txt").read_text(), 1, "vulkaninfo", NO_GPU)
    assert vulkan.cause is Cause.SYSTEM_LIBRARY_MISSING and "cannot load: libz.so.1 missing" in vulkan.message
    xorg = diagnose((CAPTURES / "cpu-host" / "xorg1.21-without-zlib.txt").read_text(), 127, "Xorg", NO_GPU)
    assert xorg.cause is Cause.SYSTEM_LIBRARY_MISSING and "libz.so.1" in xorg.message


def test_a_driver_of_nvidia_is_never_blamed_on_mesa():
    """Mesa's loader probing NVIDIA's DRM name is a GPU host's affair, not a missing Mesa package."""
    line = ("libEGL debug: MESA-LOADER: failed to open /usr/lib/x86_64-linux-gnu/dri/nvidia-drm_dri.so: "
            "/usr/lib/x86_64-linux-gnu/dri/nvidia-drm_dri.so: cannot open shared object file: No such file or directory\n")
    assert "Mesa's driver" not in diagnose(line, 1, "eglinfo", H100).message
    icd = ("ERROR:            libGLX_nvidia.so.0: cannot open shared object file: No such file or directory\n"
           "ERROR:            loader_icd_scan: Failed loading library associated with ICD JSON libGLX_nvidia.so.0. Ignoring this JSON\n")
    assert diagnose(icd, 1, "vulkaninfo", H100).cause in (Cause.DRIVER_CAPABILITY_MISSING, Cause.HOST_MISCONFIGURED)


def test_the_cuda_runtime_is_the_images_own_and_only_the_tables_names_are_the_drivers():
    """libcudart (the CUDA runtime an image ships) is no file of the driver: missing, it is the
    image's library; a driver library of another soname than the table's is no crash either."""
    for line, cause in (("libcudart.so.12: cannot open shared object file: No such file or directory", Cause.SYSTEM_LIBRARY_MISSING),
                        ("libnvidia-ml.so.2: cannot open shared object file: No such file or directory", Cause.SYSTEM_LIBRARY_MISSING),
                        ("libcuda.so.1: cannot open shared object file: No such file or directory", Cause.DRIVER_CAPABILITY_MISSING),
                        ("[h264_nvenc @ 0x55] Cannot load libnvidia-encode.so.1", Cause.DRIVER_CAPABILITY_MISSING)):
        assert diagnose(line, 127, "render", H100).cause is cause, line


def test_a_damaged_file_is_named_as_damaged_not_missing():
    """The dynamic loader on a truncated glvnd vendor library (real, `tests/known_bad/glx-vendor-library-truncated`)."""
    d = diagnose((CAPTURES / "cpu-host" / "ldso-list-libGLX-truncated.txt").read_text(), 0, "glxinfo -B", NO_GPU)
    assert d.cause is Cause.FILE_DAMAGED
    assert d.message.startswith("libGLX_mesa.so.0.0.0 is damaged in the image (file too short")
    egl = diagnose((CAPTURES / "cpu-host" / "ldso-list-libEGL-without-libxcb-sync.txt").read_text(), 0, "eglinfo", NO_GPU)
    assert egl.cause is Cause.SYSTEM_LIBRARY_MISSING and "libxcb-sync.so.1 missing in the image (needed by libEGL_mesa" in egl.message
    d = diagnose("/bin/sh: 1: xdpyinfo: Permission denied\n", 126, "Xorg", NO_GPU)
    assert d.cause is Cause.FILE_DAMAGED and d.message.startswith("xdpyinfo is not executable in the image")
    # Two background jobs of one shell whose words interleave on one line (real: blender's parallel
    # render with nproc made non-executable, a `make mutate` mutant): the program is still named.
    d = diagnose(capture("dash0.5.12-two-jobs-permission-denied-interleaved.txt"), 1,
                 "the parallel Cycles render (2 Pythons with bpy)", NO_GPU)
    assert d.cause is Cause.FILE_DAMAGED and d.message.startswith("nproc is not executable in the image"), d.message
    assert (d.missing.kind, d.missing.name) == ("mode", "nproc")


def test_the_kernel_modules_api_mismatch_names_both_versions():
    """NVRM's words in both of its layouts (public captures: negativo17/nvidia-driver #43,
    Frogging-Family/nvidia-all #394), as NVIDIA's X driver fails with them."""
    for name, client, kernel in (("nvrm-api-mismatch.txt", "390.25", "390.12"),
                                 ("nvrm-api-mismatch-named-client.txt", "595.84", "595.80")):
        d = diagnose((CAPTURES / "public" / name).read_text(), 1, "Xorg with the nvidia driver", H100)
        assert d.cause is Cause.DRIVER_VERSION_MISMATCH
        assert f"are {client} but the host's kernel module is {kernel} (NVRM" in d.message and "run.bundled_driver" in d.message


def test_a_bundled_driver_is_held_to_its_declared_version_and_to_the_hosts():
    baked = [("libnvidia-ml.so.1", "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.535.261.03", "libnvidia-ml1")]
    assert bundled_driver_wrong("535.261.03", baked, None) is None
    assert bundled_driver_wrong("535.261.03", baked, "535.261.03") is None
    assert "carries NVIDIA driver files of 535.261.03" in bundled_driver_wrong("550.54.14", baked, None).message
    host = bundled_driver_wrong("535.261.03", baked, "580.95.05")
    assert host.cause is Cause.DRIVER_VERSION_MISMATCH and "kernel module is 580.95.05" in host.message


def test_an_xorg_module_that_cannot_load_names_the_library_it_needs():
    """Real: Xorg 1.21 without libxcb (a mutant of `make mutate`): GLX's module is there, the
    library it needs is not; "Failed to load module "glx"" alone would blame GLX."""
    d = diagnose((CAPTURES / "cpu-host" / "xorg1.21-without-libxcb.txt").read_text(), 1, "Xorg with the dummy driver", NO_GPU)
    assert d.cause is Cause.SYSTEM_LIBRARY_MISSING
    assert d.message.startswith("Xorg's module libglx.so cannot load: libxcb.so.1 missing in the image")


def test_a_wrapper_whose_program_is_gone_names_the_program():
    """Debian's /usr/bin/Xorg is a script running /usr/lib/xorg/Xorg; its words when that is
    deleted (real, the `make mutate` mutant deleting /usr/lib/xorg of rendergate/xorg-glx:dev)."""
    d = diagnose("Xorg did not come up\n/usr/bin/Xorg: 10: exec: /usr/lib/xorg/Xorg: not found\n", 1, "Xorg", NO_GPU)
    assert d.cause is Cause.TOOL_MISSING and d.message.startswith("/usr/lib/xorg/Xorg not found in the target")


def test_the_kernel_modules_version_is_read_from_open_and_proprietary_modules():
    open_module = (CAPTURES / "h100-2026-11-23" / "proc-driver-nvidia-version.txt").read_text()  # the lent H100's
    assert parse_driver_version(open_module) == "580.159.04"
    assert parse_driver_version("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n") \
        == "535.104.05"
    assert parse_driver_version("") is None


def test_nvidia_libraries_a_loader_misses_are_the_drivers_not_a_package_of_the_image():
    xorg = "(EE) Failed to load /usr/lib/xorg/modules/drivers/nvidia_drv.so: libnvidia-glcore.so.580.95.05: cannot open shared object file: No such file or directory\n"
    d = diagnose(xorg, 1, "Xorg with the nvidia driver", H100)
    assert d.cause is Cause.DRIVER_CAPABILITY_MISSING and "install" not in d.message
    listed = "/usr/lib/x86_64-linux-gnu/libGLX_nvidia.so.0: \tlibnvidia-glcore.so.580.95.05 => not found\n"
    assert diagnose(listed, 0, "glxinfo -B", H100).cause is Cause.DRIVER_CAPABILITY_MISSING


def test_a_vulkan_loader_message_in_its_other_layout_names_the_library_needed():
    output = ("ERROR: [Loader Message] Code 0 : libz.so.1: cannot open shared object file: No such file or directory\n"
              "ERROR: [Loader Message] Code 0 : loader_icd_scan: Failed loading library associated with ICD JSON "
              "/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so. Ignoring this JSON\n")
    d = diagnose(output, 1, "vulkaninfo", NO_GPU)
    assert d.cause is Cause.SYSTEM_LIBRARY_MISSING
    assert d.message.startswith("the Vulkan driver libvulkan_lvp.so cannot load: libz.so.1 missing in the image")


def test_the_x_servers_dri_loading_names_the_library_the_driver_needs():
    """Real: glxinfo and the server's (EE) lines in rendergate/xorg-glx:dev without libdrm_radeon
    (a `make mutate` mutant): the DRI driver is there, a library it needs is not."""
    output = (CAPTURES / "cpu-host" / "xorg1.21-aiglx-without-libdrm-radeon.txt").read_text()
    d = diagnose(output, 0, "glxinfo -B (no OpenGL renderer)", NO_GPU)
    assert d.cause is Cause.SYSTEM_LIBRARY_MISSING
    assert d.message.startswith("Mesa's DRI driver swrast_dri.so cannot load: libdrm_radeon.so.1 missing in the image")
    missing = diagnose((CAPTURES / "cpu-host" / "xorg1.21-glxinfo-without-mesa-dri.txt").read_text(), 0, "glxinfo -B", NO_GPU)
    assert missing.message.startswith("Mesa's DRI driver swrast_dri.so missing in the image: install libgl1-mesa-dri")


@pytest.mark.parametrize("capture", ["ldso-undefined-symbol-pangocairo-replaced.txt", "ldso-undefined-symbol-zlib-replaced.txt"])
def test_a_library_that_lacks_a_symbol_is_the_wrong_version_named_by_its_user(capture):
    """The loader names the file that needs the symbol, not the library at fault: the line says so
    (rendergate.core.advice then asks the image which library it loads is not its package's own)."""
    output = (CAPTURES / "cpu-host" / capture).read_text()
    d = classify(output, NO_GPU)
    assert d.cause is Cause.LIBRARY_WRONG_VERSION and d.missing.kind == "needs"
    first = re.search(r"(/\S+): undefined symbol: (\w+)", output)
    assert d.missing.name == first[1] and f"needs the symbol {first[2]}" in d.message


@pytest.mark.parametrize("said, words", [
    ("Unknown input format: 'nosuchfmt'", "ffmpeg was built without the input format nosuchfmt"),
    ("No such filter: 'nosuchfilter'", "ffmpeg was built without the filter nosuchfilter"),
    ("Unknown decoder 'nosuchdec'", "ffmpeg was built without the decoder nosuchdec"),
    ("Unrecognized option 'nosuchopt'", "ffmpeg does not know the option -nosuchopt"),
])
def test_an_ffmpeg_without_one_of_its_own_features_is_not_compiled_in(said, words):
    """Debian's ffmpeg 5.1 asked for what it lacks, in its own words: each line of the capture."""
    output = (CAPTURES / "cpu-host" / "debian-ffmpeg5.1-not-compiled-in.txt").read_text()
    line = next(line for line in output.splitlines() if said in line)
    d = classify(line, NO_GPU)
    assert d.cause is Cause.FEATURE_NOT_COMPILED and d.message.startswith(words), d


def capture(name: str) -> str:
    return (CAPTURES / "cpu-host" / name).read_text()


@pytest.mark.parametrize("name, cause, words", [
    # the dynamic loader: a library without the version node its user needs, or of the other architecture
    ("glibc2.36-version-not-found-zlib-replaced.txt", Cause.LIBRARY_WRONG_VERSION,
     ["/lib/x86_64-linux-gnu/libz.so.1 lacks the version ZLIB_1.2.0.2", "libavformat.so.59"]),
    ("glibc2.36-wrong-elf-class-zlib-i386.txt", Cause.LIBRARY_WRONG_VERSION, ["libz.so.1 is a library of another architecture"]),
    # TeX's format and files
    ("pdftex1.40.24-mathtex-latex-fmt-written-by-tex.txt", Cause.LIBRARY_WRONG_VERSION,
     ["/var/lib/texmf/web2c/pdftex/latex.fmt was written by tex", "fmtutil-sys --byfmt latex"]),
    ("pdftex1.40.24-mathtex-latex-fmt-truncated.txt", Cause.FILE_DAMAGED,
     ["/var/lib/texmf/web2c/pdftex/latex.fmt is cut short", "fmtutil-sys --byfmt latex"]),
    ("pdftex1.40.24-mathtex-latex-fmt-of-luahbtex.txt", Cause.FILE_DAMAGED, ["latex.fmt does not load", "fmtutil-sys --byfmt latex"]),
    ("pdftex1.40.24-mathtex-standalone-cls-truncated.txt", Cause.FILE_DAMAGED,
     ["/usr/share/texlive/texmf-dist/tex/latex/standalone/standalone.cls ends too early", "reinstall"]),
    # config files that do not parse
    ("fontconfig2.14.1-fonts-conf-truncated.txt", Cause.CONFIG_INVALID, ["/etc/fonts/fonts.conf does not parse", "line 94"]),
    ("xorg1.21-conf-d-unknown-keyword.txt", Cause.CONFIG_INVALID,
     ["/etc/X11/xorg.conf.d/20-typo.conf does not parse", "\"Optin\" is not a valid keyword"]),
    ("vulkan-loader1.3.239-icd-json-truncated.txt", Cause.CONFIG_INVALID, ["/usr/share/vulkan/icd.d/lvp_icd.x86_64.json does not parse"]),
    ("manim0.22-default-cfg-truncated.txt", Cause.CONFIG_INVALID, ["manim/_config/default.cfg does not parse", "line 49"]),
    # tools refusing an option
    ("xorg1.21-unrecognized-option.txt", Cause.FEATURE_NOT_COMPILED, ["Xorg does not know the option -nosuchopt"]),
    ("dvisvgm3.0.3-unknown-option.txt", Cause.FEATURE_NOT_COMPILED, ["dvisvgm does not know the option --nosuchopt"]),
    ("pdftex1.40.24-unknown-option.txt", Cause.FEATURE_NOT_COMPILED, ["latex does not know the option --nosuchopt"]),
    ("python3.11-unknown-option.txt", Cause.FEATURE_NOT_COMPILED, ["python does not know the option -Q"]),
    ("glxinfo8.5.0-unknown-option.txt", Cause.FEATURE_NOT_COMPILED, ["glxinfo does not know the option -nosuchopt"]),
    # Python modules
    ("python3.11-manim-module-truncated.txt", Cause.FILE_DAMAGED,
     ["/opt/venv/lib/python3.11/site-packages/manim/utils/color/core.py does not compile"]),
    ("python3.11-manim-module-emptied.txt", Cause.LIBRARY_WRONG_VERSION,
     ["manim.utils.color.core (/opt/venv/lib/python3.11/site-packages/manim/utils/color/core.py) lacks ManimColor"]),
])
def test_the_fault_kind_is_part_of_the_cause(name, cause, words):
    """Real outputs with a file missing, damaged, of another version, misconfigured or a tool
    without an option (how each was made: tests/data/captures/README.md): the cause says which
    kind, the line names the file or tool."""
    d = diagnose(capture(name), 1, "the tool", NO_GPU)
    assert d.cause is cause, d
    for word in words:
        assert word in d.message, d


def test_a_file_blamed_for_its_kind_is_held_to_the_image():
    """Lines that name a package's file carry it for rendergate.core.advice: the library by its name,
    any other file by its path."""
    assert classify(capture("glibc2.36-version-not-found-zlib-replaced.txt"), NO_GPU).missing.name == "libz.so.1"
    assert classify(capture("fontconfig2.14.1-fonts-conf-truncated.txt"), NO_GPU).missing.name == "/etc/fonts/fonts.conf"
    cls = classify(capture("pdftex1.40.24-mathtex-standalone-cls-truncated.txt"), NO_GPU).missing
    assert cls.kind == "file" and cls.name.endswith("/standalone/standalone.cls")


def test_a_program_killed_by_sigbus_is_a_file_cut_short_under_it():
    """Real: ffmpeg encoding while its libx264 was truncated in place; the shell said "Bus error",
    exit 135. Without the shell's words the exit status alone tells, naming what ran."""
    d = diagnose(capture("dash0.5.12-ffmpeg5.1-sigbus-libx264-truncated.txt"), 135, "encoding with libx264", NO_GPU)
    assert d.cause is Cause.FILE_DAMAGED and "SIGBUS" in d.message
    quiet = diagnose("", 135, "encoding with libx264 (ffmpeg)", NO_GPU)
    assert quiet.cause is Cause.FILE_DAMAGED and quiet.message.startswith("encoding with libx264 (ffmpeg) crashed with SIGBUS")


def test_an_icd_json_that_names_a_library_not_there_is_named():
    """Real: the Vulkan loader asked for its driver messages too (VK_LOADER_DEBUG=error,warn,driver)
    names the ICD JSON before the library it could not open; the line names both, and carries the
    JSON for rendergate.core.advice to tell a deleted library from a JSON that names one wrong. Never
    "install mesa-vulkan-drivers": it is installed (tests/test_advice.py holds the line to the image)."""
    d = classify(capture("vulkan-loader1.3.239-icd-json-names-missing-library.txt"), NO_GPU)
    assert d.message.startswith("the ICD JSON /usr/share/vulkan/icd.d/lvp_icd.x86_64.json names the Vulkan driver "
                                "/usr/lib/x86_64-linux-gnu/libvulkan_nosuch.so, which is not there"), d
    assert (d.missing.name, d.missing.named_by) == ("libvulkan_nosuch.so", "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json")
    assert "install mesa-vulkan-drivers" not in d.message


def test_a_missing_latex_file_is_advised_by_its_own_name():
    """The advice for a missing .sty names that file, never another's package (standalone.cls's)."""
    d = classify("! LaTeX Error: File `amsmath.sty' not found.\n", NO_GPU)
    assert d.message.endswith("install the TeX Live package that ships it (apt-file search amsmath.sty names it)")
    assert classify("! You do not have package siunitx installed\n", NO_GPU).missing.name == "siunitx.sty"


def test_a_driver_library_that_misses_a_symbol_sends_the_image_to_what_it_loads():
    """Mesa's loader names the library that lacks a symbol (libstdc++), never the one replaced
    (libm): the line says so and hands the library's path to the advice, which holds what it
    loads to their packages (tests/test_advice.py)."""
    d = classify((CAPTURES / "cpu-host" / "mesa22-eglinfo-debug-libm-replaced.txt").read_text(), NO_GPU)
    assert d.cause is Cause.LIBRARY_WRONG_VERSION, d.line()
    assert "libstdc++.so.6 needs a symbol none of the libraries it loads provides (undefined symbol: fegetround" in d.message
    assert (d.missing.kind, d.missing.name) == ("needs", "/lib/x86_64-linux-gnu/libstdc++.so.6")


@pytest.mark.parametrize("name, what, words, kind, blamed", [
    ("xorg1.21-glx-module-replaced.txt", "glxinfo -B", "Xorg's module glx (libglx.so) is not that module", "file", "libglx.so"),
    ("mesa22-eglinfo-debug-swrast-driver-replaced.txt", "eglinfo",
     "Mesa's driver /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so exports none of its own entry points", "file",
     "/usr/lib/x86_64-linux-gnu/dri/swrast_dri.so"),
    ("vulkan-loader1.3.239-icd-library-replaced.txt", "vulkaninfo --summary",
     "the Vulkan driver /usr/lib/x86_64-linux-gnu/libvulkan_lvp.so exports no Vulkan entry point", "file",
     "/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so"),
    ("python3.11-extension-module-replaced.txt", "python mathtex.py", "the Python extension module cmanimpango is not that module",
     "library", "cmanimpango"),
    ("python3.11-subprocess-program-not-executable.txt", "python mathtex.py", "dvisvgm is not executable in the image", "mode",
     "dvisvgm"),
    ("dash0.5.12-xorg-wrapper-exec-permission-denied.txt", "Xorg with the dummy driver",
     "/usr/lib/xorg/Xorg is not executable in the image (the /usr/bin/Xorg wrapper runs it)", "mode", "/usr/lib/xorg/Xorg"),
])
def test_a_file_that_is_there_but_not_itself_is_damaged_not_missing(name, what, words, kind, blamed):
    """Files replaced by another library, or that lost their execute bit, in their users' words
    (real: the mutants of an attack on the diagnoses, issue 24): the file is named, and damaged."""
    d = diagnose(capture(name), 1, what, NO_GPU)
    assert d.cause is Cause.FILE_DAMAGED and d.message.startswith(words), d.message
    assert (d.missing.kind, d.missing.name) == (kind, blamed)


def test_a_tool_that_does_nothing_and_an_add_on_that_does_not_load_are_held_to_their_owners():
    """Real (a second attack on the diagnoses, issue 24): Manim's words when dvisvgm converts
    nothing name the program for the advice to hold to its package; bpy's Cycles add-on that is
    there but does not load names its folder, held to bpy's RECORD; a rich traceback's frame lines
    are never the cause quoted."""
    d = diagnose(capture("python3.11-manim-dvisvgm-converts-nothing.txt"), 1, "python mathtex.py", NO_GPU)
    assert d.cause is Cause.FEATURE_NOT_COMPILED and d.message.startswith("dvisvgm converts no DVI file to SVG")
    assert (d.missing.kind, d.missing.name) == ("program", "dvisvgm")
    d = diagnose(capture("bpy5.0-cycles-addon-file-emptied.txt"), 1, "bpy", NO_GPU)
    assert d.message.startswith("bpy's Cycles add-on did not load (/opt/venv/lib/python3.11/site-packages/bpy/5.0/")
    assert (d.missing.kind, d.missing.name) == ("file", "/opt/venv/lib/python3.11/site-packages/bpy/5.0/scripts/addons_core/cycles")
    boxed = ("\u2502   256 \u2502   # if the file does not exist now, this means conversion failed   \u2502\n"
             "\u2570\u2500\u2500\u2500\u256f\nRuntimeError: the render stopped\n")
    assert first_error(boxed) == "RuntimeError: the render stopped"
