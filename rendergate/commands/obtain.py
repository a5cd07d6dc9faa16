"""`rendergate obtain VARIANT IMAGE`: make IMAGE present, built (the variant's own tag) or pulled."""
from __future__ import annotations

import sys

from rendergate.commands.common import builder, variants
from rendergate.engines.docker_engine import Engine, obtain
from rendergate.engines.progress import BuildProgress


def add(sub) -> None:
    command = sub.add_parser("obtain", help="make IMAGE present: build it (the variant's own tag) or pull it")
    command.add_argument("variant")
    command.add_argument("image")


def run(args) -> int:
    known = variants(args, [args.variant])
    engine = Engine()
    progress = BuildProgress(stream=sys.stdout)
    with progress:
        how = obtain(engine, known[args.variant], args.image, builder(args, engine, progress), progress)
    print(f"{args.image}: {how} ({engine.image_digest(args.image)})")
    return 0
