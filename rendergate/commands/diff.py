"""`rendergate diff CANDIDATE [PROMOTED] [--json]`: the promotion review, what changed since the
promoted image. CANDIDATE is a verdict file or the name of one under reports/verdicts/ (a variant,
or variant@GPU); PROMOTED a verdict file, by default the variant's under --promoted. The SBOM
beside each verdict holds what its image is made of."""
from __future__ import annotations

import json
from pathlib import Path

from rendergate.commands.common import say
from rendergate.core import verdict as verdicts
from rendergate.core.manifest import VARIANT_NAME
from rendergate.engines.modal import GPU_SPEC
from rendergate.release.review import beside, review, used_packages



def add(sub) -> None:
    command = sub.add_parser("diff", help="what changed since the promoted image: packages, config, layers, size, "
                                          "outcomes, timed figures")
    command.add_argument("candidate", help="a verdict file, or the name of one under reports/verdicts/ (manim, manim@T4)")
    command.add_argument("promoted", nargs="?", help="a verdict file (default: the variant's under --promoted)")
    command.add_argument("--promoted-dir", help="where promotion keeps the last promoted verdicts and SBOMs (default "
                                                "promoted/ in --reports-dir)")
    command.add_argument("--json", action="store_true", help="print the review as JSON")


def _verdict_file(args, said: str) -> Path:
    if said.endswith(".json") or "/" in said:
        return Path(said)
    variant, at, gpu = said.partition("@")
    if not VARIANT_NAME.fullmatch(variant) or (at and not GPU_SPEC.fullmatch(gpu)):
        raise verdicts.VerdictError(f"{said!r}: neither a verdict file (.json) nor a verdict's name (manim, manim@T4)")
    return Path(args.reports_dir) / "verdicts" / f"{said}.json"


def run(args) -> int:
    candidate_file = _verdict_file(args, args.candidate)
    candidate = verdicts.load(candidate_file)
    promoted_dir = Path(args.promoted_dir) if args.promoted_dir else Path(args.reports_dir) / "promoted"
    promoted_file = Path(args.promoted) if args.promoted else promoted_dir / f"{candidate.variant}.json"
    if not args.promoted and not promoted_file.is_file():
        raise verdicts.VerdictError(f"{promoted_file}: no promoted verdict of {candidate.variant} (`rendergate promote` "
                                    "keeps one): promote an image first, or name the verdict to compare with")
    promoted = verdicts.load(promoted_file)
    if promoted.variant != candidate.variant:
        raise verdicts.VerdictError(f"{promoted_file} is a verdict of {promoted.variant}, {candidate_file} of "
                                    f"{candidate.variant}: a review compares two images of one variant")
    found = review(candidate, beside(candidate_file, candidate), promoted, beside(promoted_file, promoted),
                   used_packages(Path(args.reports_dir) / "mutate" / f"{candidate.variant}.json"))
    say(json.dumps(found.as_json(), indent=1) if args.json else "\n".join(found.lines()))
    return 0
