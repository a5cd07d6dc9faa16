"""Make the workloads' reference images (fixtures/references/), by a documented command:

    make references            # or: python -m rendergate references

It renders each variant's canonical workloads on the CPU in a fresh container of the variant's
image, exactly as the suites do, and keeps the frames the suites compare against. Review the
new images before committing them: the suites trust them.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from rendergate.checks.media import LAST, judge_video, to_png
from rendergate.checks.workloads import cycles_reference, manim_reference, render_frames, render_manim
from rendergate.commands.common import builder, variants
from rendergate.core.assets import REFERENCES
from rendergate.core.manifest import Variant
from rendergate.engines.docker import DockerTarget
from rendergate.engines.docker_engine import Engine, owner_label
from rendergate.engines.progress import BuildProgress


def make_references(engine: Engine, variants: dict[str, Variant], image_of, log_dir: Path) -> list[Path]:
    made = []
    REFERENCES.mkdir(parents=True, exist_ok=True)
    for variant in variants.values():
        wants = {k: v for k, v in variant.workloads.items() if k in ("manim_scene", "cycles_frame")}
        if not wants:
            continue
        target = DockerTarget.start(engine, variant, image_of(variant), f"references-{os.getpid()}", owner_label(),
                                    log_dir, default_timeout=600)
        try:
            for quality in sorted(set(wants.get("manim_scene", {}).values())):
                video = render_manim(target, quality, f"{target.workdir}/manim-{quality}")
                path = manim_reference(quality)
                path.write_bytes(to_png(judge_video(target, video, keep=[LAST]).frames[LAST]))
                made.append(path)
            if "cycles_frame" in wants:
                cfg = wants["cycles_frame"]
                out = f"{target.workdir}/cycles-reference"
                render_frames(target, out, 1, cfg["size"], cfg["samples"])
                path = cycles_reference(cfg["size"], cfg["samples"])
                path.write_bytes(target.fetch(f"{out}/frame_0001.png"))
                made.append(path)
        finally:
            engine.remove(target.container.id)
    return made


def add(sub) -> None:
    sub.add_parser("references", help="make the reference images of fixtures/references/ (building images first)"
                   ).add_argument("variants", nargs="*")


def run(args) -> int:
    known = variants(args, args.variants)
    engine = Engine()
    chosen = {n: known[n] for n in args.variants or [n for n, v in known.items() if v.needs_image]}
    progress = BuildProgress(stream=sys.stdout)
    with progress:
        for path in make_references(engine, chosen, builder(args, engine, progress), Path(args.reports_dir) / "logs"):
            print(f"wrote {path}")
    return 0
