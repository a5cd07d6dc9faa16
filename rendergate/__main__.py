"""`python -m rendergate build [VARIANT ...]`: build variant images, with their time and size.

The suites build what they need on first use; this exists so the main job and CI can build
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rendergate")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build variant images (default: every variant with a Dockerfile)")
    build.add_argument("variants", nargs="*")
    build.add_argument("--images-dir", default="images")
    build.add_argument("--base-image", default=os.environ.get("BASE_IMAGE") or None)
    build.add_argument("--extra-ca", default=os.environ.get("RENDERGATE_EXTRA_CA") or None)
    build.add_argument("--logs", default="reports/logs")
    args = parser.parse_args(argv)
    try:
        variants = load_variants(Path(args.images_dir))
        unknown = [n for n in args.variants if n not in variants]
        if unknown:
            raise ManifestError(f"unknown variant {', '.join(unknown)} (known: {', '.join(variants)})")
        engine = Engine()
        for name in args.variants or [n for n, v in variants.items() if v.needs_image]:
            started = time.monotonic()
            tag = engine.build(variants[name], Path(args.logs), args.base_image,
                               Path(args.extra_ca) if args.extra_ca else None)
            size = engine.client.images.get(tag).attrs["Size"] / 1e9
            print(f"built {tag} in {time.monotonic() - started:.1f} s ({size:.2f} GB)", flush=True)
    except (ManifestError, EngineError) as e:
        print(f"rendergate: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
