"""`rendergate promote VARIANT --image REF --to TAG [--trusted-key PUB]`: tag (and push) REF when a
complete, passing, fresh verdict is about it; with a key, the verdict the gate signed, pushed
next to the image."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from rendergate.commands.common import say, variants, verdict_path
from rendergate.core.manifest import IMAGE_REF, ManifestError, positive
from rendergate.engines.docker_engine import Engine
from rendergate.release import attestation as attestations
from rendergate.release.promotion import promote

MAX_AGE_DAYS = 3650


def add(sub) -> None:
    command = sub.add_parser("promote", help="tag (and push) an image that has a complete, passing, fresh verdict")
    command.add_argument("variant")
    command.add_argument("--image", required=True)
    command.add_argument("--to", required=True, help="the new reference; with a registry host (127.0.0.1:5000/x:1) it is pushed")
    command.add_argument("--promoted", default="reports/promoted", help="where the last promoted verdicts are kept")
    command.add_argument("--max-age-days", type=positive(float), default=7, help="older verdicts are stale (default 7)")
    command.add_argument("--trusted-key", type=Path, metavar="PUB",
                         help="public key the gate's attestation must verify with; its verdict is then signed again "
                              "about the pushed manifest digest and pushed next to the image")
    command.add_argument("--sign-key", type=Path, metavar="PEM",
                         help=f"with --trusted-key and a registry: the private key that signs the pushed attestation "
                              f"(or ${attestations.SIGNING_KEY_ENV})")


def run(args) -> int:
    variant = variants(args, [args.variant])[args.variant]
    engine = Engine()
    if not IMAGE_REF.fullmatch(args.to):
        raise ManifestError(f"--to {args.to!r}: not an image reference ([registry/]path[:tag], lower case)")
    if args.max_age_days > MAX_AGE_DAYS:
        raise ManifestError(f"--max-age-days {args.max_age_days:g}: at most {MAX_AGE_DAYS} (ten years)")
    key = attestations.public_key(args.trusted_key) if args.trusted_key else None
    signer = attestations.private_key(args.sign_key) if key else None
    done = promote(engine, variant, args.image, args.to, verdict_path(args, args.variant), Path(args.promoted),
                   timedelta(days=args.max_age_days), key,
                   Path(args.reports_dir) / "attestations" / f"{args.variant}.intoto.json", signer, say=say,
                   mutation_file=Path(args.reports_dir) / "mutate" / f"{args.variant}.json")
    pushed = f", pushed as {done.pushed_digest}" if done.pushed_digest else " (local tag; no registry named)"
    attested = f"; its signed verdict and SBOM pushed as {done.attestation}" if done.attestation else ""
    kept = (f"; verdict kept in {args.promoted}, without an SBOM ({done.sbom_kept}): the next review will not show "
            "package, config or layer changes") if done.sbom_kept else f"; verdict and SBOM kept in {args.promoted}"
    say(f"PROMOTED {done.source} ({done.digest}) to {done.target}{pushed}{attested}{kept}")
    return 0
