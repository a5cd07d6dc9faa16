"""`rendergate gate VARIANT [--image REF | --gpu T4,L4,... | --engine E ...] [--sign-key PEM]`: pass
only a complete verdict in which every declared requirement passed, about the image as the engine
holds it and run on that engine; with a key, write it as a signed attestation."""
from __future__ import annotations

from pathlib import Path

from rendergate.commands.common import say, variants, verdict_path
from rendergate.core import contents
from rendergate.core.manifest import ManifestError
from rendergate.engines.docker_engine import Engine
from rendergate.engines.endpoint import resolve
from rendergate.release import attestation as attestations
from rendergate.release.promotion import gate, gate_engines, gate_matrix, sbom_attestation_path


def add(sub) -> None:
    command = sub.add_parser("gate", help="pass only when every declared requirement passed on a complete run")
    command.add_argument("variant")
    command.add_argument("--image", help="the image the verdict must be about (default: the variant's own, when present)")
    command.add_argument("--gpu", metavar="TYPES", help="a Modal GPU matrix (T4,L4,...): every cell's verdict must pass")
    command.add_argument("--engine", action="append", default=[], metavar="URL|CONTEXT",
                         help="the Docker engine the verdict must have run on and whose image it judges (default: "
                              "DOCKER_HOST, the docker context, the local socket); repeatable: a matrix of engines, "
                              "every cell's verdict must pass")
    command.add_argument("--sign-key", type=Path, metavar="PEM",
                         help=f"private key that signs the passing verdict as an attestation (or ${attestations.SIGNING_KEY_ENV})")


def run(args) -> int:
    variant = variants(args, [args.variant])[args.variant]
    if len(set(args.engine)) < len(args.engine):
        raise ManifestError(f"--engine: {', '.join(args.engine)} name one engine twice: name each once")
    if args.engine and (args.gpu is not None or variant.host):
        raise ManifestError("--engine with " + ("--gpu: a Modal matrix runs on Modal, on no engine of yours"
                            if args.gpu is not None else f"{variant.name}, this machine itself (host = true): no engine runs it"))
    if args.gpu is not None:
        if args.image or args.sign_key:
            raise ManifestError(f"{'--image' if args.image else '--sign-key'} with --gpu: each cell of a Modal matrix "
                                "ran the image Modal built from the variant's Dockerfile, which no registry holds: "
                                "gate and sign an image with --image, on a local engine")
        gpu_types = [g.strip() for g in args.gpu.split(",") if g.strip()]
        say(gate_matrix(Path(args.reports_dir) / "verdicts", variant, gpu_types))
        return 0
    if len(args.engine) > 1:
        if args.sign_key:
            raise ManifestError("--sign-key with several --engine: sign the verdict of one engine at a time")
        image = args.image or variant.image_ref
        if not image:
            raise ManifestError(f"{variant.name} names no image: a matrix of engines needs one (--image REF)")
        say(gate_engines(Path(args.reports_dir) / "verdicts", variant, image,
                         [Engine(endpoint=resolve(named)) for named in args.engine]))
        return 0
    if args.image and variant.host:
        raise ManifestError(f"--image: {variant.name} is this machine itself (host = true in {variant.manifest}), "
                            "not an image")
    image = args.image or variant.image_ref
    if variant.needs_image and not image:
        raise ManifestError(f"{variant.name} names no image ({variant.manifest} has no `image =`, and there is no "
                            "Dockerfile beside it): gate it with --image REF, the image its verdict must be about")
    engine = Engine(endpoint=resolve(args.engine[0] if args.engine else None)) if image else None
    digest = engine.image_digest(image) if engine else None
    bound = (*engine.identity(), str(engine.endpoint)) if engine else None
    signer = attestations.private_key(args.sign_key)
    if signer and not digest:
        raise attestations.AttestationError(f"--sign-key: {args.variant} has no image to attest")
    line, judged = gate(verdict_path(args, args.variant), variant, digest, engine=bound)
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
