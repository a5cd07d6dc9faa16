"""`rendergate build [VARIANT ...]`: build variant images, with their time and size."""
from __future__ import annotations

import sys

from rendergate.commands.common import builder, variants
from rendergate.engines.docker_engine import Engine
from rendergate.engines.progress import BuildProgress


def add(sub) -> None:
    sub.add_parser("build", help="build variant images (default: every variant with a Dockerfile)").add_argument(
        "variants", nargs="*")


def run(args) -> int:
    known = variants(args, args.variants)
    engine = Engine()
    progress = BuildProgress(stream=sys.stdout)  # each step as it starts; "built TAG in N s (SIZE GB)" at the end
    built = builder(args, engine, progress)
    with progress:
        for name in args.variants or [n for n, v in known.items() if v.needs_image]:
            built(known[name])
    return 0
