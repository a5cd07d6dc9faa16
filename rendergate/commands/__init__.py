"""rendergate's commands (the Makefile's targets call them):

    rendergate requirements                        the requirement keys a manifest may declare (the registry), as a table
    rendergate init --image REF [--name NAME]      probe an image, write images/NAME/manifest.toml proposing what it holds
    rendergate build [VARIANT ...]                 build variant images, with their time and size
    rendergate references [VARIANT ...]            make the workloads' reference images
    rendergate obtain VARIANT IMAGE                build (the variant's own tag) or pull IMAGE
    rendergate gate VARIANT [--image REF | --gpu T4,L4,...] [--sign-key PEM]
                                                   pass only a complete verdict where every declared requirement passed;
                                                   with a key, write it as a signed attestation about the image
    rendergate diff CANDIDATE [PROMOTED] [--json]  what changed since the promoted image (the SBOMs beside the
                                                   verdicts): packages, config, layers, size, outcomes, timed figures
    rendergate promote VARIANT --image REF --to TAG [--trusted-key PUB]
                                                   tag (and push) REF when a complete, passing, fresh verdict is about it;
                                                   with a key, the verdict the gate signed, pushed next to the image
    rendergate verify IMAGE --key PUB              the attestation next to IMAGE in its registry: signed, about it, passing
    rendergate merge PATH ...                      merge verdicts of several hosts into one matrix report
    rendergate mutate VARIANT [--n 40] [--seed 1] [--allow-no-gpu]
                                                   plant single defects in copies of the variant's image, from the
                                                   files its checks use; score what the suites detect and root-cause

(`python -m rendergate` is the same command; `--checks DIR` before the command loads a folder of
your own checks, so that manifests may declare their requirement keys.)

Exit status: 0 done / passed, 1 refused (the lines say why), 2 bad input or engine trouble.

A command is one module of this package with `add(subparsers)` (its arguments) and `run(args)`
(its exit status), and one line in COMMANDS.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rendergate.commands import build, diff, gate, init, merge, mutate, obtain, promote, references, requirements, verify
from rendergate.commands.common import say
from rendergate.core.manifest import ManifestError
from rendergate.core.requirements import RegistryError
from rendergate.core.verdict import VerdictError
from rendergate.engines.docker_engine import EngineError
from rendergate.engines.endpoint import EndpointError
from rendergate.plugin import check_modules
from rendergate.release.attestation import AttestationError
from rendergate.release.promotion import Refused

COMMANDS = {module.__name__.rsplit(".", 1)[1]: module
            for module in (requirements, init, build, references, obtain, gate, diff, promote, verify, merge, mutate)}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="rendergate", description=__doc__.split("\n\n")[0])
    top.add_argument("--images-dir", default="images")
    top.add_argument("--reports-dir", default="reports", help="where the suites wrote verdicts/ (default reports)")
    top.add_argument("--base-image", default=os.environ.get("BASE_IMAGE") or None)
    top.add_argument("--extra-ca", default=os.environ.get("RENDERGATE_EXTRA_CA") or None)
    top.add_argument("--checks", action="append", default=[], type=Path, metavar="DIR",
                     help="a folder of your own checks declaring requirements of their own (as the suites' "
                          "--checks); repeatable")
    sub = top.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        module.add(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        check_modules.load(args.checks)
        return COMMANDS[args.command].run(args)
    except Refused as e:
        say(str(e), sys.stderr)
        return 1
    except (ManifestError, RegistryError, EngineError, EndpointError, VerdictError, AttestationError) as e:
        say(f"rendergate: {e}", sys.stderr)
        return 2
    except OSError as e:  # a file to write where a folder (or a file, for a folder) is in the way, a full disk
        say(f"rendergate: {e.filename or ''}: cannot be written ({e.strerror or e})", sys.stderr)
        return 2
