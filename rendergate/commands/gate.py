"""`rendergate gate VARIANT [--image REF | --gpu T4,L4,...] [--sign-key PEM]`: pass only a complete
verdict in which every declared requirement passed; with a key, write it as a signed attestation."""
from __future__ import annotations

from pathlib import Path

from rendergate.commands.common import say, variants, verdict_path
from rendergate.core import contents
from rendergate.core.manifest import ManifestError
from rendergate.engines.docker_engine import Engine
from rendergate.release import attestation as attestations
from rendergate.release.promotion import gate, gate_matrix, sbom_attestation_path


def add(sub) -> None:
    command = sub.add_parser("gate", help="pass only when every declared requirement passed on a complete run")
    command.add_argument("variant")
    command.add_argument("--image", help="the image the verdict must be about (default: the variant's own, when present)")
    command.add_argument("--gpu", metavar="TYPES", help="a Modal GPU matrix (T4,L4,...): every cell's verdict must pass")
    command.add_argument("--sign-key", type=Path, metavar="PEM",
                         help=f"private key that signs the passing verdict as an attestation (or ${attestations.SIGNING_KEY_ENV})")


def run(args) -> int:
    variant = variants(args, [args.variant])[args.variant]
    if args.gpu is not None:
        if args.image or args.sign_key:
            raise ManifestError(f"{'--image' if args.image else '--sign-key'} with --gpu: each cell of a Modal matrix "
                                "ran the image Modal built from the variant's Dockerfile, which no registry holds: "
                                "gate and sign an image with --image, on a local engine")
        gpu_types = [g.strip() for g in args.gpu.split(",") if g.strip()]
        say(gate_matrix(Path(args.reports_dir) / "verdicts", variant, gpu_types))
        return 0
    if args.image and variant.host:
        raise ManifestError(f"--image: {variant.name} is this machine itself (host = true in {variant.manifest}), "
                            "not an image")
    image = args.image or variant.image_ref
    if variant.needs_image and not image:
        raise ManifestError(f"{variant.name} names no image ({variant.manifest} has no `image =`, and there is no "
                            "Dockerfile beside it): gate it with --image REF, the image its verdict must be about")
    digest = Engine().image_digest(image) if image else None
    signer = attestations.private_key(args.sign_key)
    if signer and not digest:
        raise attestations.AttestationError(f"--sign-key: {args.variant} has no image to attest")
    line, judged = gate(verdict_path(args, args.variant), variant, digest)
    say(line)
    if signer:
        path = Path(args.reports_dir) / "attestations" / f"{args.variant}.intoto.json"
        attestations.write(path, attestations.attest(judged.as_json(), [(image, digest)], signer))
        say(f"attestation about {image} ({digest}) signed by key {signer.public_key.keyid[:16]}: {path}")
        try:
            sbom, _ = contents.read_document(contents.sbom_path(verdict_path(args, args.variant)), digest)
        except contents.SbomError as e:
            sbom_attestation_path(path).unlink(missing_ok=True)  # never one of another image
            say(f"no SBOM attested: {e}")
        else:
            attestations.write(sbom_attestation_path(path), attestations.attest(
                sbom, [(image, digest)], signer, attestations.SBOM_PREDICATE_TYPE))
            say(f"its SBOM signed too: {sbom_attestation_path(path)}")
    return 0
