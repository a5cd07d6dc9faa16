"""The gate and promotion: what `make gate` and `make promote` decide, and the tag and push.

The gate passes only a verdict in which every declared requirement passed, on a run that
finished, about the very image named. Promotion needs that verdict, not stale, and then tags the
image (pushing it when the target names a registry) and keeps the verdict as the last promoted
one, which later runs compare their workload figures with.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import docker.errors

from rendergate.core import contents, judging, outcomes, times
from rendergate.core import verdict as verdicts
from rendergate.core.contents import SbomError, sbom_path
from rendergate.core.environment import suite_version
from rendergate.core.jsonfile import write_whole
from rendergate.core.manifest import Variant
from rendergate.core.verdict import Verdict
from rendergate.engines.docker_engine import Engine, EngineError
from rendergate.engines.modal import build_digest
from rendergate.release import attestation as attestations
from rendergate.release.review import beside, review, used_packages


class Refused(Exception):
    """The gate or a promotion said no; the lines say why."""

    def __init__(self, headline: str, problems: list[str]):
        super().__init__("\n".join([headline, *(f"  - {p}" for p in problems)]))


def gate(verdict_path: Path, variant: Variant, digest: str | None, gpu_type: str | None = None,
         engine: tuple[str, str, str] | None = None) -> tuple[str, Verdict]:
    """The verdict's one-line pass and the verdict as read, once (what a signature then covers is
    what was judged), or Refused with every reason: it is judged against the variant's current
    manifest, image `digest` (None: the host), the Docker `engine` it must have run on (id, its
    host's name, as named here), and this rendergate."""
    verdict = verdicts.load(verdict_path)
    problems = judging.gate_problems(verdict, variant, digest, suite_version(), gpu_type, engine=engine)
    where = f" ({engine[1]})" if engine else ""
    what = f"{variant.name}" + (f" ({digest})" if digest else "") + f" on {verdict.host['gpu_type']}{where}"
    if problems:
        raise Refused(f"GATE REFUSED {what}: {judging.state_of(problems).said} ({verdict_path})", judging.summary(problems))
    declared = judging.declared_requirements(variant)
    ran = sum(1 for c in verdict.checks if c.requirement in declared and c.outcome not in outcomes.DID_NOT_RUN)
    return (f"GATE PASSED {what}: {len(declared)} declared requirement{'s' * (len(declared) != 1)}, all {ran} checks "
            f"{'it implies' if len(declared) == 1 else 'they imply'} passed (run {verdict.run_id})"), verdict


def gate_matrix(verdicts_dir: Path, variant: Variant, gpu_types: list[str]) -> str:
    """A GPU matrix passes only when the verdict of every (variant, GPU type) cell does, each about
    the image Modal built from the variant's folder as it is now (engines.modal.build_digest): one
    line per cell, or Refused naming each cell that did not pass (or was never reached)."""
    if not gpu_types:
        raise Refused(f"GATE REFUSED {variant.name}: no GPU types given (--gpu T4,L4,...): nothing to judge", [])
    built = build_digest(variant)
    lines, refused = [], []
    for gpu_type in gpu_types:
        path = verdicts_dir / f"{variant.name}@{gpu_type}.json"
        try:
            lines.append(gate(path, variant, built, gpu_type)[0])
        except Refused as e:
            refused.append(str(e).replace("\n", "\n  "))
        except verdicts.VerdictError as e:
            refused.append(f"{gpu_type}: {e}")
    if refused:
        raise Refused(f"GATE REFUSED {variant.name} on the GPU matrix {','.join(gpu_types)}: "
                      f"{len(refused)} of {len(gpu_types)} cells did not pass", refused)
    return "\n".join(lines)


def gate_engines(verdicts_dir: Path, variant: Variant, image: str, engines: list[Engine]) -> str:
    """A matrix of engines passes only when the verdict of every (variant, engine) cell does, each
    about the image as that engine holds it and run on that engine: one line per cell, or Refused
    naming each cell that did not pass (or was never reached)."""
    lines, refused = [], []
    for engine in engines:
        label = engine.endpoint.label
        try:
            lines.append(gate(verdicts_dir / f"{variant.name}@{label}.json", variant, engine.image_digest(image),
                              engine=(*engine.identity(), str(engine.endpoint)))[0])
        except Refused as e:
            refused.append(str(e).replace("\n", "\n  "))
        except (verdicts.VerdictError, EngineError) as e:
            refused.append(f"{label}: {e}")
    if refused:
        raise Refused(f"GATE REFUSED {variant.name} on the engines {', '.join(e.endpoint.label for e in engines)}: "
                      f"{len(refused)} of {len(engines)} cells did not pass", refused)
    return "\n".join(lines)


@dataclass
class Promotion:
    source: str
    target: str
    digest: str
    pushed_digest: str | None
    attestation: str | None = None  # where the signed verdict was pushed, next to the image
    sbom_kept: str = ""  # why the SBOM was not kept with the verdict ("" when it was)


def sbom_attestation_path(attestation_path: Path) -> Path:
    """Where the gate writes the signed SBOM, beside the signed verdict."""
    return attestation_path.with_name(attestation_path.name.replace(".intoto.json", ".sbom.intoto.json"))


def _sbom(verdict_path: Path, digest: str, key, attestation_path: Path | None) -> dict | SbomError:
    """The SBOM document of the image promoted: the file beside its verdict or, when promotion
    trusts only signed statements, the one the gate signed with the verdict."""
    if key is None:
        try:
            return contents.read_document(sbom_path(verdict_path), digest)[0]  # the image judged: the verdict's own
        except SbomError as e:
            return e
    signed = sbom_attestation_path(attestation_path)
    try:
        statement = attestations.verify(attestations.read(signed), key, digest, str(signed), attestations.SBOM_PREDICATE_TYPE)
        contents.from_bom(statement["predicate"], str(signed))
    except (attestations.AttestationError, SbomError) as e:
        return SbomError(str(e))
    return statement["predicate"]


def promote(engine: Engine, variant: Variant, ref: str, to: str, verdict_path: Path, promoted_dir: Path,
            max_age: timedelta, trusted_key=None, attestation_path: Path | None = None, signer=None,
            say=None, mutation_file: Path | None = None) -> Promotion:
    """Tag (and push) `ref` as `to` when its verdict allows it. With a `trusted_key`, the verdict
    judged is the one the gate signed (attestation_path), verified against the key and the image
    first; once the image is pushed, that verdict is signed again (`signer`) as a Statement about
    the manifest digest the registry now serves (what a cluster pulls, as cosign names images) and
    the image's config, and pushed next to the image, with the signed SBOM. Before it tags, `say`
    hears the review against the last promoted image; the SBOM is kept with the verdict, for the
    next review."""
    repository, _, tag = to.rpartition(":") if ":" in to.rsplit("/", 1)[-1] else (to, "", "latest")
    if trusted_key is not None and signer is None and _names_registry(repository):
        raise attestations.AttestationError(
            f"--trusted-key: the attestation pushed next to {to} names the manifest digest the registry gives it, "
            f"so promotion signs it: give the signing key too (--sign-key, or ${attestations.SIGNING_KEY_ENV})")
    digest = engine.image_digest(ref)
    if trusted_key is not None:
        envelope = attestations.read(attestation_path)
        try:
            statement = attestations.verify(envelope, trusted_key, digest, str(attestation_path))
            verdict = verdicts.checked(statement["predicate"], f"{attestation_path} (its verdict)")
        except attestations.AttestationError as e:
            raise Refused(f"PROMOTION REFUSED {ref} -> {to}: the attestation is not to be trusted", [str(e)]) from None
        source = attestation_path
    else:
        verdict, source = verdicts.load(verdict_path), verdict_path
    problems = judging.promotion_problems(verdict, variant, digest, suite_version(), max_age)
    if problems:
        raise Refused(f"PROMOTION REFUSED {ref} -> {to}: {judging.state_of(problems).said} ({source})",
                      judging.summary(problems))
    sbom = _sbom(verdict_path, digest, trusted_key, attestation_path)
    kept = promoted_dir / f"{variant.name}.json"
    if say and kept.is_file():
        try:
            previous = verdicts.load(kept)
        except verdicts.VerdictError as e:
            say(f"no review: the last promoted verdict cannot be read: {e}")
        else:
            if previous.variant != variant.name:
                say(f"no review: {kept} is a verdict of {previous.variant}, not of {variant.name}")
            else:
                new = sbom if isinstance(sbom, SbomError) else contents.from_bom(sbom, "the SBOM")
                used = used_packages(mutation_file) if mutation_file else (set(), None)
                say("\n".join(review(verdict, new, previous, beside(kept, previous), used).lines()))
    try:
        engine.client.images.get(digest).tag(repository, tag)  # the image judged, even if `ref` moved meanwhile
    except docker.errors.APIError as e:
        raise EngineError(f"tagging {ref} as {to} failed: {e.explanation or e}") from None
    pushed = _push(engine, repository, tag) if _names_registry(repository) else None
    attested = None
    if pushed and trusted_key is not None:
        subjects = [(to, pushed), (to, digest)]
        envelope = attestations.attest(verdict.as_json(), subjects, signer)
        envelopes = {attestations.PREDICATE_TYPE: envelope}
        if not isinstance(sbom, SbomError):
            envelopes[attestations.SBOM_PREDICATE_TYPE] = attestations.attest(sbom, subjects, signer,
                                                                              attestations.SBOM_PREDICATE_TYPE)
        attested = attestations.push(to, envelopes, pushed)
    verdict.promotion = {"to": to, "at": times.now_iso(), "pushed_digest": pushed}
    verdicts.write(kept, verdict.as_json())
    if isinstance(sbom, SbomError):
        sbom_path(kept).unlink(missing_ok=True)  # never the SBOM of the image promoted before
    else:
        write_whole(sbom_path(kept), json.dumps(sbom, indent=1))
    if trusted_key is not None:
        attestations.write(promoted_dir / f"{variant.name}.intoto.json", envelope)
    return Promotion(ref, to, digest, pushed, attested, str(sbom) if isinstance(sbom, SbomError) else "")


def _names_registry(repository: str) -> bool:
    first = repository.split("/", 1)[0]
    return "/" in repository and ("." in first or ":" in first or first == "localhost")


def _push(engine: Engine, repository: str, tag: str) -> str:
    digest = None
    for chunk in engine.client.images.push(repository, tag, stream=True, decode=True):
        if "error" in chunk:
            raise EngineError(f"pushing {repository}:{tag} failed: {chunk['error'].strip()}")
        digest = chunk.get("aux", {}).get("Digest", digest)
    if not digest:
        raise EngineError(f"pushing {repository}:{tag}: the registry confirmed no digest")
    return digest
