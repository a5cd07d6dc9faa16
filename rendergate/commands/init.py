"""`rendergate init`: a starting manifest, proposed from what an image holds.

The image is started as the suites start it (its entrypoint replaced by the keep-alive command,
its own user) and looked at with its own tools: ffmpeg and its NVENC encoders, Manim, ManimPango
and LaTeX, bpy and the Cycles GPU backends compiled into it, Xorg, glxinfo, x11vnc, eglinfo,
vulkaninfo, and which of its Pythons has the modules. Each requirement proposed says, in a
comment, what it was found from: a proposal for a person to review, never a verdict (goss's
`autoadd` works the same way). Nothing here needs a GPU: what needs one is proposed from what
the image is built for (NVENC encoders, CUDA/OptiX backends, NVIDIA_* variables).
"""
from __future__ import annotations

import json
import re
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from rendergate.core import requirements
from rendergate.core.diagnosis import CheckFailed
from rendergate.core.driver_capabilities import needed
from rendergate.core.manifest import VARIANT_NAME, ManifestError, Variant, load_variant
from rendergate.core.parsers import parse_ffmpeg_encoders
from rendergate.engines.docker import DockerTarget
from rendergate.engines.docker_engine import Engine, EngineError, owner_label
from rendergate.engines.progress import BuildProgress, EngineProgress

TOOLS = ("ffmpeg", "Xorg", "glxinfo", "x11vnc", "eglinfo", "vulkaninfo", "latex", "dvisvgm", "kpsewhich")
# Where images keep Pythons besides PATH: venvs under /opt, /venv, /app, the user's home.
PYTHON_PLACES = ("/opt/*/bin/python3", "/opt/*/bin/python", "/usr/local/bin/python3", "/venv/bin/python3",
                 "/app/.venv/bin/python3", "$HOME/.venv/bin/python3")
NVIDIA_BACKENDS = ("OPTIX", "CUDA")  # the Cycles backends rendergate validates, in the order our manifests list them


@dataclass
class Inventory:
    """What the image holds, and where each thing was found (the manifest's comments quote it)."""
    image: str
    env: dict[str, str]
    tools: dict[str, str]  # name -> path in the image
    ffmpeg: str = ""  # its version line
    nvenc: list[str] = field(default_factory=list)
    python: str | None = None
    modules: dict = field(default_factory=dict)  # probes/inventory.py's answer for that Python
    standalone_cls: str = ""
    checksummed: int = 0  # installed packages whose files dpkg keeps checksums of


def take(target: DockerTarget, env: dict[str, str]) -> Inventory:
    """Look at the running image with its own tools."""
    listed = target.run("; ".join(f"printf '%s=%s\\n' {t} \"$(command -v {t})\"" for t in TOOLS)).stdout
    tools = {k: v for k, _, v in (line.partition("=") for line in listed.splitlines()) if v}
    found = Inventory(target.image_ref, env, tools)
    if "ffmpeg" in tools:
        found.ffmpeg = " ".join(target.run("ffmpeg -hide_banner -version").stdout.split()[:3])  # ffmpeg version 5.1.6
        encoders = parse_ffmpeg_encoders(target.run("ffmpeg -hide_banner -encoders").stdout)
        found.nvenc = [name for name in encoders if name.endswith("_nvenc")]
    counted = target.run("ls /var/lib/dpkg/info/ 2>/dev/null | grep -c '[.]md5sums$'").stdout.strip()
    found.checksummed = int(counted) if counted.isdigit() else 0
    if "kpsewhich" in tools:
        found.standalone_cls = target.run("kpsewhich standalone.cls").stdout.strip()
    candidates = target.run(f"for p in $(command -v python3 python) {' '.join(PYTHON_PLACES)}; do "
                            "[ -x \"$p\" ] && echo \"$p\"; done").stdout.split()
    for python in dict.fromkeys(candidates):
        target.python = python
        result = target.run_probe("inventory")
        if result.rc != 0:
            continue
        modules = json.loads(result.stdout.strip().splitlines()[-1])
        if found.python is None or modules["manim"] or modules["bpy"]:
            found.python, found.modules = python, modules
        if modules["manim"] or modules["bpy"]:
            break
    return found


def _has(found: Inventory, module: str) -> bool:
    return isinstance(found.modules.get(module), str)


def _nvidia_backends(found: Inventory) -> list[str]:
    return [b for b in NVIDIA_BACKENDS if b in found.modules.get("cycles_backends", [])]


def _requirements(found: Inventory) -> list[tuple[str, str, str]]:
    """(key, TOML value, why) per requirement proposed."""
    backends = _nvidia_backends(found)
    nvidia_env = sorted(k for k in found.env if k.startswith("NVIDIA_"))
    gpu = bool(found.nvenc or backends or nvidia_env)
    out = []
    if gpu:
        why = ", ".join(filter(None, [found.nvenc and "NVENC encoders", backends and f"Cycles {'/'.join(backends)}",
                                      nvidia_env and f"the image sets {', '.join(nvidia_env)}"]))
        out.append(("gpu", "true", f"built for NVIDIA GPUs: {why}"))
    if found.nvenc:
        out.append(("nvenc", json.dumps(found.nvenc), f"{found.tools['ffmpeg']} lists them ({found.ffmpeg})"))
    if _has(found, "manimpango"):
        out.append(("manimpango", "true", f"ManimPango {found.modules['manimpango']} in {found.python}"))
    latex = [t for t in ("latex", "dvisvgm") if t in found.tools]
    if _has(found, "manim") and len(latex) == 2 and found.standalone_cls:
        out.append(("latex", "true", f"Manim {found.modules['manim']} with {found.tools['latex']}, "
                                     f"{found.tools['dvisvgm']} and {found.standalone_cls}"))
    if found.checksummed and found.python:
        out.append(("files_intact", "true", f"dpkg keeps checksums of {found.checksummed} packages' files, and "
                                            f"{found.python} the wheels' RECORD"))
    if backends:
        out.append(("cycles_devices", json.dumps(backends), f"bpy {found.modules['bpy']} was built with them "
                                                            f"(all: {', '.join(found.modules['cycles_backends'])})"))
    for key, tool, vendor_key in (("xorg", "Xorg", None), ("vnc", "x11vnc", None), ("egl", "eglinfo", "egl_renderer"),
                                  ("vulkan", "vulkaninfo", "vulkan_device")):
        if tool in found.tools and (key != "vnc" or "Xorg" in found.tools):
            out.append((key, "true", f"{found.tools[tool]}"))
            if vendor_key and gpu:
                out.append((vendor_key, '"nvidia"', "on the NVIDIA GPU, not a software rasteriser"))
        if key == "xorg" and "Xorg" in found.tools and "glxinfo" in found.tools and gpu:
            out.append(("glx_renderer", '"nvidia"', f"{found.tools['glxinfo']}: GL on the NVIDIA GPU, not llvmpipe"))
    return out


def _workloads(found: Inventory) -> list[tuple[str, str]]:
    """(key, why) per workload proposed."""
    out = []
    if _has(found, "manim"):
        out += [("manim_scene", "Manim renders the canonical scene"),
                ("manim_parts", "the scene in two parts, rendered at once and concatenated")]
    if _has(found, "bpy") and _nvidia_backends(found):  # the frame is compared on the CPU and a GPU backend
        out.append(("cycles_frame", "a canonical Cycles frame"))
        if "ffmpeg" in found.tools:
            out.append(("parallel_frames", "frames over parallel workers, stitched with the image's ffmpeg"))
    if "ffmpeg" in found.tools:
        out.append(("encode", "libx264 and each NVENC encoder on one clip"))
    return out


def propose(found: Inventory, name: str) -> str:
    """The manifest text proposed for the image."""
    proposed = _requirements(found)
    workloads = _workloads(found)
    lines = [f"# Proposed by `rendergate init --image {found.image}` from what the image holds: review each",
             "# line, drop what the image need not prove, add what the probing could not see.",
             f"description = {json.dumps(f'{name}: {found.image}')}",
             f"image = {json.dumps(found.image)}", "", "[requirements]"]
    lines += [f"{key} = {value}  # {why}" for key, value, why in proposed]
    if not proposed:
        lines.append("# nothing rendergate checks was found in the image")
    draft = Variant(name=name, folder=Path("."), requirements={k: json.loads(v) for k, v, _ in proposed})
    capabilities = sorted(needed(draft))
    lines += ["", "[run]"]
    if capabilities:
        lines.append(f"driver_capabilities = {json.dumps(capabilities)}  # what the requirements need")
    if found.python:
        lines.append(f"python = {json.dumps(found.python)}  # {found.modules.get('version', '')} "
                     f"{'with the modules checked' if _has(found, 'manim') or _has(found, 'bpy') else 'for the probes'}")
    if workloads:
        # Each workload's declared example and thresholds: this project's own variants' values
        # (images/*/manifest.toml, measured and explained there), whose references exist.
        declared = [requirements.of_section("workloads")[key] for key, _ in workloads]
        lines += ["", "[workloads]"] + [f"{r.name} = {r.example}  # {why}" for r, (_, why) in zip(declared, workloads)]
        lines += ["", "[thresholds]  # this project's own values: tune them to your hosts"]
        lines += [f"{key} = {value}" for r in declared for key, value in r.thresholds.items()] + ["repeats = 3"]
    return "\n".join(lines) + "\n"


def init(engine: Engine, image: str, folder: Path, log_dir: Path, force: bool = False,
         progress: EngineProgress | None = None) -> tuple[Path, Inventory]:
    """Probe `image` (pulled first if it is not here, its progress shown) and write
    folder/manifest.toml proposing what it holds; returns its path. (log_dir keeps the
    container's log if it does not come up.)"""
    path = folder / "manifest.toml"
    if path.exists() and not force:
        raise ManifestError(f"{path}: already exists (pass --force to replace it)")
    if not VARIANT_NAME.fullmatch(folder.name):
        raise ManifestError(f"{folder.name!r}: a variant's name is 1 to 64 letters, digits, '.', '_' and '-', "
                            "starting with a letter or digit")
    if not engine.image_exists(image):
        engine.pull(image, progress=progress)
    env = dict(e.partition("=")[::2] for e in engine.client.images.get(image).attrs["Config"].get("Env") or [])
    probe = Variant(name=folder.name, folder=folder, run={"python": "python3"})
    target = DockerTarget.start(engine, probe, image, f"init-{uuid.uuid4().hex[:8]}", owner_label(),
                                log_dir, default_timeout=180)
    try:
        found = take(target, env)
    except CheckFailed as e:
        raise EngineError(f"looking into {image} failed: {e}") from None
    finally:
        engine.remove(target.container.id)
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(propose(found, folder.name))
    try:
        load_variant(folder)
    except ManifestError as e:  # a proposal must always be a valid manifest
        raise ManifestError(f"rendergate proposed an invalid manifest (a bug of rendergate's): {e}") from None
    return path, found


def default_name(image: str) -> str:
    """A variant name from an image reference: studio/render:1.0 -> render."""
    last = image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", last) or "image"



def add(sub) -> None:
    command = sub.add_parser("init", help="probe an image and write a manifest proposing what it holds, for review")
    command.add_argument("--image", required=True, help="the image (pulled with the engine's stored login if not local)")
    command.add_argument("--name", help="the variant's name, its folder under --images-dir (default: from the image)")
    command.add_argument("--force", action="store_true", help="replace an existing manifest.toml")


def run(args) -> int:
    folder = Path(args.images_dir) / (args.name or default_name(args.image))
    with BuildProgress(stream=sys.stdout) as progress:
        path, _ = init(Engine(), args.image, folder, Path(args.reports_dir) / "logs", args.force, progress)
    print(path.read_text(), end="")
    print(f"wrote {path}: review it, then validate with `pytest -n auto` (see README, \"Validate your own image\")")
    return 0
