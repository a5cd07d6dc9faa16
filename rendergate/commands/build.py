"""`rendergate build [VARIANT ...]`: build variant images, with their time and size; several at
once (RENDERGATE_BUILD_JOBS, default 3): a build that fails does not stop the others, and each
failure ends the command with its own line."""
from __future__ import annotations

import sys
from contextlib import closing

from rendergate.commands.common import builder, say, variants
from rendergate.engines.docker_engine import Engine, EngineError, in_parallel
from rendergate.engines.progress import BuildProgress


def add(sub) -> None:
    sub.add_parser("build", help="build variant images (default: every variant with a Dockerfile)").add_argument(
        "variants", nargs="*")


def run(args) -> int:
    known = variants(args, args.variants)
    names = list(dict.fromkeys(args.variants)) or [n for n, v in known.items() if v.needs_image]
    Engine().client.close()  # the engine answers (or one line says it does not) before anything starts
    failures: list[EngineError] = []
    # Each step as it starts; "built TAG in N s (SIZE GB)" as each ends, the total after two or more.
    with BuildProgress(stream=sys.stdout) as progress, \
            closing(in_parallel(names, lambda engine, name: builder(args, engine, progress)(known[name]))) as outcomes:
        for _, outcome in outcomes:
            if isinstance(outcome, EngineError):
                failures.append(outcome)  # its line is said once every build has ended
            elif isinstance(outcome, BaseException):
                raise outcome
    for failure in failures:  # after the progress: its lines end above them
        say(f"rendergate: {failure}", sys.stderr)
    return 2 if failures else 0
