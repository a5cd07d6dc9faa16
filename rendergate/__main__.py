"""rendergate's commands (the Makefile's targets call them):

    rendergate requirements                        the requirement keys a manifest may declare (the registry), as a table
    rendergate init --image REF [--name NAME]      probe an image, write images/NAME/manifest.toml proposing what it holds
    rendergate build [VARIANT ...]                 build variant images, with their time and size
    rendergate references [VARIANT ...]            make the workloads' reference images
    rendergate obtain VARIANT IMAGE                build (the variant's own tag) or pull IMAGE
    rendergate gate VARIANT [--image REF | --gpu T4,L4,...] [--sign-key PEM]
                                                   pass only a complete verdict where every declared requirement passed;
                                                   with a key, write it as a signed attestation about the image
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
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

from rendergate.release import attestation as attestations
from rendergate.core import requirements
from rendergate.core import verdict as verdicts
from rendergate.engines.docker_engine import Engine, EngineError
from rendergate.commands.inventory import default_name, init
from rendergate.core.jsonfile import write_whole
from rendergate.core.manifest import IMAGE_REF, ManifestError, load_variants, positive
from rendergate.mutation import Mutation, MutationError, Suite, mutate
from rendergate.pages import merged_html, mutation_html
from rendergate.core.platforms import Platform
from rendergate.engines.progress import BuildProgress
from rendergate.core.redact import printable
from rendergate.release.promotion import Refused, gate, gate_matrix, obtain, promote
from rendergate.commands.references import make_references
from rendergate.core.requirements import RegistryError
from rendergate.plugin import check_modules
from rendergate.core.runstate import interrupt_on_sigterm


MAX_AGE_DAYS = 3650


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rendergate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images-dir", default="images")
    parser.add_argument("--reports-dir", default="reports", help="where the suites wrote verdicts/ (default reports)")
    parser.add_argument("--base-image", default=os.environ.get("BASE_IMAGE") or None)
    parser.add_argument("--extra-ca", default=os.environ.get("RENDERGATE_EXTRA_CA") or None)
    parser.add_argument("--checks", action="append", default=[], type=Path, metavar="DIR",
                        help="a folder of your own checks declaring requirements of their own (as the suites' "
                             "--checks); repeatable")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("requirements", help="the requirement keys a manifest may declare, as a Markdown table")
    command = sub.add_parser("init", help="probe an image and write a manifest proposing what it holds, for review")
    command.add_argument("--image", required=True, help="the image (pulled with the engine's stored login if not local)")
    command.add_argument("--name", help="the variant's name, its folder under --images-dir (default: from the image)")
    command.add_argument("--force", action="store_true", help="replace an existing manifest.toml")
    for name, text in (("build", "build variant images (default: every variant with a Dockerfile)"),
                       ("references", "make the reference images of fixtures/references/ (building images first)")):
        sub.add_parser(name, help=text).add_argument("variants", nargs="*")
    command = sub.add_parser("obtain", help="make IMAGE present: build it (the variant's own tag) or pull it")
    command.add_argument("variant")
    command.add_argument("image")
    command = sub.add_parser("gate", help="pass only when every declared requirement passed on a complete run")
    command.add_argument("variant")
    command.add_argument("--image", help="the image the verdict must be about (default: the variant's own, when present)")
    command.add_argument("--gpu", metavar="TYPES", help="a Modal GPU matrix (T4,L4,...): every cell's verdict must pass")
    command.add_argument("--sign-key", type=Path, metavar="PEM",
                         help=f"private key that signs the passing verdict as an attestation (or ${attestations.SIGNING_KEY_ENV})")
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
    command = sub.add_parser("verify", help="read the attestation next to an image in its registry and judge it")
    command.add_argument("image")
    command.add_argument("--key", type=Path, required=True, metavar="PUB", help="the trusted public key")
    command = sub.add_parser("merge", help="merge verdicts (files, or reports folders) of several hosts into one report")
    command.add_argument("paths", nargs="+")
    command.add_argument("--out", default="reports/merged.html")
    command = sub.add_parser("mutate", help="mutation testing: how many single-defect copies of the image the suites "
                                            "catch, and whether their line names the defect")
    command.add_argument("variant")
    command.add_argument("--n", type=positive(int), default=40, help="how many mutants (default 40)")
    command.add_argument("--seed", type=int, default=1, help="which ones: the same seed plants the same mutants (default 1)")
    command.add_argument("--allow-no-gpu", action="store_true", help="as for the suites: GPU checks not validated, not failed")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        check_modules.load(args.checks)
        if args.command == "requirements":
            print(requirements.docs_table(), end="")
            return 0
        if args.command == "merge":
            return _merge(args)
        if args.command == "verify":
            return _verify(args)
        if args.command == "mutate":
            return _mutate(args)
        if args.command == "init":
            folder = Path(args.images_dir) / (args.name or default_name(args.image))
            with BuildProgress(stream=sys.stdout) as progress:
                path, _ = init(Engine(), args.image, folder, Path(args.reports_dir) / "logs", args.force, progress)
            print(path.read_text(), end="")
            print(f"wrote {path}: review it, then validate with `pytest -n auto` (see README, \"Validate your own image\")")
            return 0
        variants = load_variants(Path(args.images_dir))
        names = getattr(args, "variants", None) or ([args.variant] if hasattr(args, "variant") else [])
        unknown = [n for n in names if n not in variants]
        if unknown:
            raise ManifestError(f"unknown variant {', '.join(unknown)} (known: {', '.join(variants)})")
        verdict_path = Path(args.reports_dir) / "verdicts" / f"{getattr(args, 'variant', '')}.json"
        if args.command == "gate" and args.gpu is not None:
            if args.image or args.sign_key:
                raise ManifestError(f"{'--image' if args.image else '--sign-key'} with --gpu: each cell of a Modal matrix "
                                    "ran the image Modal built from the variant's Dockerfile, which no registry holds: "
                                    "gate and sign an image with --image, on a local engine")
            gpu_types = [g.strip() for g in args.gpu.split(",") if g.strip()]
            _say(gate_matrix(Path(args.reports_dir) / "verdicts", variants[args.variant], gpu_types))
            return 0
        if args.command == "gate":
            variant = variants[args.variant]
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
            line, judged = gate(verdict_path, variant, digest)
            _say(line)
            if signer:
                path = Path(args.reports_dir) / "attestations" / f"{args.variant}.intoto.json"
                attestations.write(path, attestations.attest(judged, [(image, digest)], signer))
                _say(f"attestation about {image} ({digest}) signed by key {signer.public_key.keyid[:16]}: {path}")
            return 0
        engine = Engine()
        extra_ca = Path(args.extra_ca) if args.extra_ca else None
        progress = BuildProgress(stream=sys.stdout)  # each step as it starts; "built TAG in N s (SIZE GB)" at the end

        def built(variant):
            return engine.build(variant, Path(args.reports_dir) / "logs", args.base_image, extra_ca, progress=progress)

        if args.command == "build":
            with progress:
                for name in args.variants or [n for n, v in variants.items() if v.needs_image]:
                    built(variants[name])
        elif args.command == "references":
            chosen = {n: variants[n] for n in args.variants or [n for n, v in variants.items() if v.needs_image]}
            with progress:
                for path in make_references(engine, chosen, built, Path(args.reports_dir) / "logs"):
                    print(f"wrote {path}")
        elif args.command == "obtain":
            with progress:
                how = obtain(engine, variants[args.variant], args.image, built, progress)
            print(f"{args.image}: {how} ({engine.image_digest(args.image)})")
        elif args.command == "promote":
            if not IMAGE_REF.fullmatch(args.to):
                raise ManifestError(f"--to {args.to!r}: not an image reference ([registry/]path[:tag], lower case)")
            if args.max_age_days > MAX_AGE_DAYS:
                raise ManifestError(f"--max-age-days {args.max_age_days:g}: at most {MAX_AGE_DAYS} (ten years)")
            key = attestations.public_key(args.trusted_key) if args.trusted_key else None
            signer = attestations.private_key(args.sign_key) if key else None
            done = promote(engine, variants[args.variant], args.image, args.to, verdict_path, Path(args.promoted),
                           timedelta(days=args.max_age_days), key,
                           Path(args.reports_dir) / "attestations" / f"{args.variant}.intoto.json", signer)
            pushed = f", pushed as {done.pushed_digest}" if done.pushed_digest else " (local tag; no registry named)"
            attested = f"; its signed verdict pushed as {done.attestation}" if done.attestation else ""
            _say(f"PROMOTED {done.source} ({done.digest}) to {done.target}{pushed}{attested}; verdict kept in {args.promoted}")
    except Refused as e:
        _say(str(e), sys.stderr)
        return 1
    except (ManifestError, RegistryError, EngineError, verdicts.VerdictError, attestations.AttestationError) as e:
        _say(f"rendergate: {e}", sys.stderr)
        return 2
    except OSError as e:  # a file to write where a folder (or a file, for a folder) is in the way, a full disk
        _say(f"rendergate: {e.filename or ''}: cannot be written ({e.strerror or e})", sys.stderr)
        return 2
    return 0


def _say(text: str, stream=None) -> None:
    """Print rendergate's lines; whatever a verdict or an image put in them is shown inert (redact.printable)."""
    print("\n".join(printable(line) for line in text.split("\n")), file=stream or sys.stdout)


def _verify(args) -> int:
    """Exit 0 only when the image's attestation verifies with the key, is about the image the
    registry serves, and holds a complete, passing verdict."""
    try:
        where, statement = attestations.pull_and_verify(args.image, attestations.public_key(args.key))
        verdict = verdicts.checked(statement["predicate"], f"{where} (its verdict)")
    except (attestations.AttestationError, verdicts.VerdictError) as e:
        _say(f"VERIFY REFUSED {args.image}: {e}", sys.stderr)
        return 1
    problems = verdicts.judge(verdict)
    if problems:
        _say("\n".join([f"VERIFY REFUSED {args.image}: its signed verdict is {verdicts.state_of(problems).said}",
                        *(f"  - {line}" for line in verdicts.summary(problems))]), sys.stderr)
        return 1
    _say(f"VERIFIED {args.image}: signed rendergate verdict of {verdict['variant']} (run {verdict['run_id']}, "
         f"{verdict['finished']}, on {verdict['host']['gpu_type']}) in {where}")
    return 0


def _mutate(args) -> int:
    """reports/mutate/VARIANT.json and .html, rewritten after each mutant; the suites' own reports
    of each run under reports/mutate/VARIANT/."""
    variants = load_variants(Path(args.images_dir))
    variant = variants.get(args.variant)
    if variant is None:
        raise ManifestError(f"unknown variant {args.variant} (known: {', '.join(variants)})")
    if not variant.image_ref:
        raise ManifestError(f"{args.variant} is checked on the host itself: mutation testing needs an image")
    engine = Engine()
    with BuildProgress(stream=sys.stdout) as progress:
        obtain(engine, variant, variant.image_ref, lambda v: engine.build(
            v, Path(args.reports_dir) / "logs", args.base_image, Path(args.extra_ca) if args.extra_ca else None,
            progress=progress), progress)
    out = Path(args.reports_dir) / "mutate"

    def save(mutation: Mutation) -> None:
        """Each file replaced whole: an interrupt never leaves half a page."""
        for suffix, text in ((".json", json.dumps(mutation.to_json(), indent=1)), (".html", mutation_html(mutation))):
            write_whole(out / f"{variant.name}{suffix}", text)

    suite = Suite(Path(args.images_dir), variant, args.allow_no_gpu, args.base_image)
    interrupt_on_sigterm()  # CI cancelling the job: the suite run in flight is ended, the mutant image removed
    try:
        done = mutate(engine, suite, variant.image_ref, args.n, args.seed, out / variant.name, save,
                      say=lambda line: print(line, flush=True))
    except MutationError as e:
        print(f"rendergate mutate: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rendergate mutate: interrupted; {out / (variant.name + '.html')} holds the mutants judged so far (not complete)",
              file=sys.stderr)
        return 130
    scores = done.scores()
    print(f"{variant.name}: detected {scores['detected']}/{scores['judged']}, root-caused {scores['root_caused']}/"
          f"{scores['detected']} of those (the right file and kind of fault), the wrong kind for {scores['wrong_kind']}, "
          f"another cause named for {scores['another_cause']}, wrong advice for {scores['wrong_advice']}; "
          f"wrote {out / (variant.name + '.html')} and {out / (variant.name + '.json')}")
    return 0


def _merge(args) -> int:
    files = []
    for path in map(Path, args.paths):
        if path.is_dir():
            found = sorted((path / "verdicts").glob("*.json")) or sorted(path.glob("*.json"))
            if not found:
                raise verdicts.VerdictError(f"{path}: no verdicts in it (nor in {path / 'verdicts'})")
            files += found
        else:
            files.append(path)
    loaded, seen = [], {}
    for f in files:
        v = verdicts.settle(verdicts.load(f))  # judged again: never the state a verdict says of itself
        key = (v["variant"], v["host"].get("gpu_type"), v.get("platform", Platform.NATIVE))
        if key in seen:
            raise verdicts.VerdictError(f"{f} and {seen[key]} are both about {key[0]} on {key[1]} ({key[2]}): "
                                        "merge one verdict per GPU type and platform")
        seen[key] = f
        loaded.append(v)
    out = Path(args.out)
    if out.is_dir() or out.suffix != ".html":
        raise verdicts.VerdictError(f"--out {out}: name an .html file to write (its .json goes beside it)")
    try:
        write_whole(out, merged_html(loaded))
        write_whole(out.with_suffix(".json"), json.dumps({"merged": verdicts.now_iso(), "verdicts": loaded}, indent=1))
    except OSError as e:
        raise verdicts.VerdictError(f"--out {out}: cannot be written ({e.strerror})") from None
    _say(f"merged {len(loaded)} verdicts from {len(files)} files into {out} and {out.with_suffix('.json')}")
    for line in verdicts.platform_differences(loaded):
        _say(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
