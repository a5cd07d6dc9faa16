"""`python -m rendergate build [VARIANT ...]`: build variant images, with their time and size.
`python -m rendergate references [VARIANT ...]`: make the workloads' reference images.

The suites build what they need on first use; `build` exists so the main job and CI can build
every image up front, report how long each took, and stop early with the failing step.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .engine import Engine, EngineError
from .manifest import ManifestError, load_variants
from .references import make_references


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rendergate")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("build", "build variant images (default: every variant with a Dockerfile)"),
                       ("references", "make the reference images of fixtures/references/ (building images first)")):
        command = sub.add_parser(name, help=text)
        command.add_argument("variants", nargs="*")
        command.add_argument("--images-dir", default="images")
        command.add_argument("--base-image", default=os.environ.get("BASE_IMAGE") or None)
        command.add_argument("--extra-ca", default=os.environ.get("RENDERGATE_EXTRA_CA") or None)
        command.add_argument("--logs", default="reports/logs")
    args = parser.parse_args(argv)
    try:
        variants = load_variants(Path(args.images_dir))
        unknown = [n for n in args.variants if n not in variants]
        if unknown:
            raise ManifestError(f"unknown variant {', '.join(unknown)} (known: {', '.join(variants)})")
        engine = Engine()
        names = args.variants or [n for n, v in variants.items() if v.needs_image]
        extra_ca = Path(args.extra_ca) if args.extra_ca else None

        def built(variant):
            started = time.monotonic()
            tag = engine.build(variant, Path(args.logs), args.base_image, extra_ca)
            size = engine.client.images.get(tag).attrs["Size"] / 1e9
            print(f"built {tag} in {time.monotonic() - started:.1f} s ({size:.2f} GB)", flush=True)
            return tag

        if args.command == "build":
            for name in names:
                built(variants[name])
        else:
            for path in make_references(engine, {n: variants[n] for n in names}, built, Path(args.logs)):
                print(f"wrote {path}")
    except (ManifestError, EngineError) as e:
        print(f"rendergate: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
