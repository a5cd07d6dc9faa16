"""`rendergate verify IMAGE --key PUB`: the attestation next to IMAGE in its registry: signed, about it, passing."""
from __future__ import annotations

import sys
from pathlib import Path

from rendergate.commands.common import say
from rendergate.core import judging
from rendergate.core import verdict as verdicts
from rendergate.release import attestation as attestations


def add(sub) -> None:
    command = sub.add_parser("verify", help="read the attestation next to an image in its registry and judge it")
    command.add_argument("image")
    command.add_argument("--key", type=Path, required=True, metavar="PUB", help="the trusted public key")


def run(args) -> int:
    """Exit 0 only when the image's attestation verifies with the key, is about the image the
    registry serves, and holds a complete, passing verdict."""
    try:
        where, statement = attestations.pull_and_verify(args.image, attestations.public_key(args.key))
        verdict = verdicts.checked(statement["predicate"], f"{where} (its verdict)")
    except (attestations.AttestationError, verdicts.VerdictError) as e:
        say(f"VERIFY REFUSED {args.image}: {e}", sys.stderr)
        return 1
    problems = judging.judge(verdict)
    if problems:
        say("\n".join([f"VERIFY REFUSED {args.image}: its signed verdict is {judging.state_of(problems).said}",
                        *(f"  - {line}" for line in judging.summary(problems))]), sys.stderr)
        return 1
    say(f"VERIFIED {args.image}: signed rendergate verdict of {verdict.variant} (run {verdict.run_id}, "
        f"{verdict.finished}, on {verdict.host['gpu_type']}) in {where}")
    return 0
