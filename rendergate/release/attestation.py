"""Signed attestations: a passing gate's verdict as an in-toto Statement about the image, in a
DSSE envelope signed with the user's key, kept beside the verdict, verified before promotion,
and pushed next to the image in its registry as an OCI artifact, where `rendergate verify` (or a
deployment-side policy) reads it back.

The Statement's subject is the image by name and by the sha256 of its config (the image id,
what every verdict is about): the same on every registry the image is pushed to. In a registry
the envelope is the one layer of an artifact tagged `sha256-<manifest digest>.att` in the
image's repository (cosign's place for attestations), so that it is found from the image alone.
Keys are PEM files (ed25519 or ECDSA, RSA too) read with pyca/cryptography; signing and the
DSSE encoding are securesystemslib's; registry traffic is oras's. A private key never reaches a
log: its text, when it comes from the environment, is remembered for redaction.
"""
from __future__ import annotations

import binascii
import copy
import hashlib
import json
import os
import tempfile
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm

from rendergate.core.jsonfile import Unusable, parse, read_regular, write_whole
from rendergate.core.manifest import IMAGE_REF
from rendergate.core.redact import printable, remember_secrets

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://rendergate.invalid/attestation/verdict/v1"  # ours: a rendergate verdict
SBOM_PREDICATE_TYPE = "https://cyclonedx.org/bom"  # in-toto's for a CycloneDX SBOM: what the image is made of
# The files of the artifact next to an image, each an envelope of one predicate.
ENVELOPE_FILES = {PREDICATE_TYPE: "verdict.intoto.json", SBOM_PREDICATE_TYPE: "sbom.intoto.json"}
PAYLOAD_TYPE = "application/vnd.in-toto+json"
ENVELOPE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
MANIFEST_TYPES = ["application/vnd.docker.distribution.manifest.v2+json", "application/vnd.oci.image.manifest.v1+json"]
SIGNING_KEY_ENV = "RENDERGATE_SIGNING_KEY"  # the private key's PEM text, for CI secrets
MAX_KEY_BYTES = 64 * 1024
MAX_ENVELOPE_BYTES = 96 * 2**20  # a verdict (64 MiB at most) in base64, and its signatures
# cosign's annotation on an attestation's layer (and its predicateType): where cosign, and policies written for it, look.
COSIGN_SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"


class AttestationError(Exception):
    """An attestation that cannot be made, found or trusted; one line saying why."""


def private_key(path: Path | None):
    """The signer of a PEM private key: the file, else the text of $RENDERGATE_SIGNING_KEY; None
    without either. A key that is set but empty, or not PEM, is an error: never a silent unsigned gate."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner

    if path is not None:
        where, pem = str(path), _key_file(path, "signing key")
    elif os.environb.get(SIGNING_KEY_ENV.encode()) is not None:
        where, pem = f"${SIGNING_KEY_ENV}", os.environb[SIGNING_KEY_ENV.encode()]
        remember_secrets({SIGNING_KEY_ENV: os.environ[SIGNING_KEY_ENV]})
        if not pem.strip():
            raise AttestationError(f"signing key ${SIGNING_KEY_ENV}: set but empty: give it the PEM text of the "
                                   "private key, or unset it to gate without signing")
    else:
        return None
    try:
        return CryptoSigner(load_pem_private_key(pem, password=None))
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:  # not PEM, encrypted, an unsupported type
        raise AttestationError(f"signing key {where}: not an unencrypted PEM private key of ed25519, ECDSA or RSA "
                               f"({type(e).__name__})") from None


def _key_file(path: Path, what: str) -> bytes:
    try:
        return read_regular(path, MAX_KEY_BYTES)
    except FileNotFoundError:
        raise AttestationError(f"{what} {path}: no such file") from None
    except Unusable as e:
        raise AttestationError(f"{what} {path}: {e}") from None


def public_key(path: Path):
    """A PEM public key (the trusted one), as securesystemslib verifies with it."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.signer import SSlibKey

    try:
        return SSlibKey.from_crypto(load_pem_public_key(_key_file(path, "public key")))
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise AttestationError(f"public key {path}: not a PEM public key of ed25519, ECDSA or RSA ({type(e).__name__})") from None


def attest(predicate: dict, subjects: list[tuple[str, str]], signer, predicate_type: str = PREDICATE_TYPE) -> dict:
    """The predicate (a verdict, or the image's SBOM) as a signed in-toto Statement about the images
    named by (reference, sha256 digest) in `subjects` (a DSSE envelope, as JSON)."""
    from securesystemslib.dsse import Envelope

    statement = {"_type": STATEMENT_TYPE,
                 "subject": [{"name": name, "digest": {"sha256": digest.removeprefix("sha256:")}} for name, digest in subjects],
                 "predicateType": predicate_type, "predicate": predicate}
    envelope = Envelope(json.dumps(statement, sort_keys=True).encode(), PAYLOAD_TYPE, {})
    envelope.sign(signer)
    return envelope.to_dict()


def verify(envelope: dict, key, image_digest: str, where: str, predicate_type: str = PREDICATE_TYPE) -> dict:
    """The Statement of `envelope` once its signature verifies with `key`, its predicate is of
    `predicate_type` and one of its subjects is the image with `image_digest`; AttestationError
    naming `where` otherwise."""
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError

    try:
        parsed = Envelope.from_dict(copy.deepcopy(envelope))  # from_dict consumes the dict it is given
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as e:
        raise AttestationError(f"{where}: not a DSSE envelope ({type(e).__name__})") from None
    if parsed.payload_type != PAYLOAD_TYPE:
        raise AttestationError(f"{where}: payload type {printable(str(parsed.payload_type)[:100])!r}, not an in-toto Statement")
    try:
        parsed.verify([key], 1)
    except VerificationError:
        raise AttestationError(f"{where}: the signature does not verify with the trusted key (another key signed "
                               "it, or the envelope was changed after signing)") from None
    try:
        statement = parse(parsed.payload)
        subjects = [s["digest"]["sha256"] for s in statement["subject"]]
        statement_type = statement["predicateType"]
    except (Unusable, KeyError, TypeError) as e:
        raise AttestationError(f"{where}: a signed payload that is not an in-toto Statement "
                               f"({e if isinstance(e, Unusable) else type(e).__name__})") from None
    if statement_type != predicate_type:
        what = "a rendergate verdict" if predicate_type == PREDICATE_TYPE else "a CycloneDX SBOM"
        raise AttestationError(f"{where}: predicate {printable(str(statement_type)[:200])!r}, not {what}")
    if image_digest.removeprefix("sha256:") not in subjects:
        named = ", ".join(printable(f"sha256:{s}"[:80]) for s in subjects[:4])
        raise AttestationError(f"{where}: the attestation is about {named}, not this image ({image_digest})")
    return statement


def write(path: Path, envelope: dict) -> None:
    """Written whole, in place of whatever `path` was (a symlink there is replaced, not followed)."""
    write_whole(path, json.dumps(envelope, indent=1))


def read(path: Path) -> dict:
    """An envelope file: a regular file, strict JSON, bounded in size and depth."""
    try:
        document = parse(read_regular(path, MAX_ENVELOPE_BYTES))
    except FileNotFoundError:
        raise AttestationError(f"{path}: no attestation (a passing gate writes one when given a signing key)") from None
    except Unusable as e:
        raise AttestationError(f"{path}: not a readable attestation: {e}") from None
    if not isinstance(document, dict):
        raise AttestationError(f"{path}: not a DSSE envelope (a JSON object)")
    return document


def _docker_config() -> str | None:
    """The Docker config holding the engine's stored logins, for oras too ($DOCKER_CONFIG honoured)."""
    path = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    return str(path) if path.is_file() else None


def _registry(ref: str):
    import oras.provider

    host = ref.split("/", 1)[0]
    local = host.split(":")[0] in ("localhost", "127.0.0.1") or host.startswith("127.")
    return oras.provider.Registry(hostname=host, insecure=local, auth_backend="basic")


def _manifest(ref: str) -> tuple[str, str]:
    """The image's manifest digest and config digest, as its registry has them."""
    import oras.container

    registry = _registry(ref)
    container = oras.container.Container(ref)
    try:  # one quick try first: oras retries an unreachable registry for minutes
        registry.session.get(f"{registry.prefix}://{registry.hostname}/v2/", timeout=10)
    except Exception as e:
        raise AttestationError(f"{ref}: its registry cannot be reached ({type(e).__name__})") from None
    registry.auth.load_configs(container, configs=[c for c in [_docker_config()] if c])
    try:
        response = registry.do_request(f"{registry.prefix}://{container.manifest_url()}", "GET",
                                       headers={"Accept": ", ".join(MANIFEST_TYPES)})
    except Exception as e:  # requests' errors: the registry is not there
        raise AttestationError(f"{ref}: its registry cannot be reached ({type(e).__name__})") from None
    if response.status_code != 200:
        raise AttestationError(f"{ref}: the registry answered {response.status_code} for its manifest")
    try:
        config = response.json()["config"]["digest"]
    except (ValueError, KeyError, TypeError):
        raise AttestationError(f"{ref}: the registry's manifest names no image config") from None
    return "sha256:" + hashlib.sha256(response.content).hexdigest(), config


def attestation_ref(ref: str, manifest_digest: str) -> str:
    repository = ref.split("@")[0]
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository.rsplit(":", 1)[0]
    return f"{repository}:{manifest_digest.replace(':', '-')}.att"


def push(ref: str, envelopes: dict[str, dict], manifest_digest: str) -> str:
    """Push the envelopes (by predicate type: the verdict's, and the SBOM's where there is one) next
    to the image `ref` (whose manifest has `manifest_digest`, as its registry confirmed on the
    image's push) in its registry, one layer each; returns the artifact's reference."""
    target = attestation_ref(ref, manifest_digest)
    with tempfile.TemporaryDirectory(prefix="rendergate-attestation-") as folder:
        paths = {predicate_type: Path(folder) / ENVELOPE_FILES[predicate_type] for predicate_type in envelopes}
        for predicate_type, envelope in envelopes.items():
            write(paths[predicate_type], envelope)
        annotations = Path(folder) / "annotations.json"
        annotations.write_text(json.dumps({str(path): {COSIGN_SIGNATURE_ANNOTATION: "", "predicateType": predicate_type}
                                           for predicate_type, path in paths.items()}))
        try:
            _registry(ref).push(target=target, files=[f"{path}:{ENVELOPE_MEDIA_TYPE}" for path in paths.values()],
                                disable_path_validation=True,
                                config_path=_docker_config(), quiet=True, annotation_file=str(annotations),
                                manifest_annotations={"org.opencontainers.image.title": "rendergate verdict"})
        except Exception as e:  # oras raises requests' and its own errors
            raise AttestationError(f"pushing the attestation to {target} failed: {type(e).__name__}: "
                                   f"{str(e).splitlines()[0][:200] if str(e) else ''}") from None
    return target


def pull_and_verify(ref: str, key) -> tuple[str, dict]:
    """The attestation next to the image `ref` in its registry, verified against the trusted `key`
    and the manifest digest the registry serves under `ref` (what a cluster pulls): (its
    reference, its Statement)."""
    if not IMAGE_REF.fullmatch(ref):
        raise AttestationError(f"{ref!r}: not an image reference ([registry/]path[:tag])")
    manifest_digest, config_digest = _manifest(ref)
    target = attestation_ref(ref, manifest_digest)
    with tempfile.TemporaryDirectory(prefix="rendergate-attestation-") as folder:
        try:
            files = _registry(ref).pull(target=target, outdir=folder, config_path=_docker_config(),
                                        allowed_media_type=["application/vnd.oci.image.manifest.v1+json"])
        except Exception as e:
            raise AttestationError(f"{target}: no attestation could be read ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
        verdicts = [f for f in files if Path(f).name == ENVELOPE_FILES[PREDICATE_TYPE]]
        if len(verdicts) != 1:
            raise AttestationError(f"{target}: {len(files)} files, none of them the verdict's envelope "
                                   f"({ENVELOPE_FILES[PREDICATE_TYPE]})")
        envelope = read(Path(verdicts[0]))
    statement = verify(envelope, key, manifest_digest, target)
    verdict = statement.get("predicate") if isinstance(statement.get("predicate"), dict) else {}
    about = (verdict.get("image") if isinstance(verdict.get("image"), dict) else {}).get("digest")
    if about != config_digest:
        raise AttestationError(f"{target}: its verdict is about image {printable(str(about))[:80]}, the registry serves "
                               f"{config_digest} under {ref}")
    return target, statement
