"""The plugin's command-line and ini options: which variants, where they run (--target and each
kind's own options, --runtime, --image), what a run may skip (--allow-no-gpu), where its inputs and outputs are."""
from __future__ import annotations

import os

from rendergate.core.manifest import positive
from rendergate.engines.kinds import KINDS, image_targets

# --runtime: the sandbox containers run in. gVisor is what Modal runs containers under by default;
# with the docker target it is Debian's runsc, registered by scripts/ensure-gvisor.
RUNTIMES = tuple(dict.fromkeys(r for kind in KINDS.values() for r in kind.runtimes))


def _options() -> list[tuple[str, dict, str]]:
    """The plugin's own options, each as (flag, what argparse is told of it, its help)."""
    return [
        ("--variant", dict(action="append", default=[], metavar="NAME"),
         "variant to validate (a folder of --images-dir); repeatable; default: all"),
        ("--target", dict(choices=image_targets(), default="docker"),
         "where a variant's image runs: docker (a container of the image in the local engine) or modal (a Modal "
         "Sandbox per GPU type of --gpu); a variant whose manifest says `host = true` is this machine itself, checked in place"),
        ("--runtime", dict(choices=RUNTIMES, default="default"),
         "sandbox runtime of the containers: default (the engine's, runc; Modal's, gVisor today), gvisor (docker: the "
         "engine's runsc runtime), or vm (modal only): run a variant under both to tell a platform failure from an image failure"),
        ("--image", dict(metavar="REF"), "check this image (pulled if it is not local) against the manifest of the one "
         "--variant, instead of its Dockerfile's build or its manifest's `image`"),
        ("--allow-no-gpu", dict(action="store_true"),
         "on a host with no NVIDIA GPU, skip GPU checks (counted apart) instead of failing them"),
        ("--checks", dict(action="append", default=[], metavar="DIR"),
         "a folder of your own checks (test_*.py modules declaring their requirements with "
         "rendergate.core.requirements.declare), collected beside rendergate's suites; repeatable; default: the ini "
         "option rendergate_checks"),
        ("--images-dir", dict(metavar="DIR"), "folder of variants, one folder each with a manifest.toml (default: the ini "
         "option rendergate_images, else images/ at the root)"),
        ("--base-image", dict(metavar="REF"), "BASE_IMAGE build argument (default: each Dockerfile's own, an NVIDIA CUDA image)"),
        ("--extra-ca", dict(metavar="PEM", default=os.environ.get("RENDERGATE_EXTRA_CA") or None),
         "extra CA bundle trusted inside builds (TLS-intercepting proxies); env RENDERGATE_EXTRA_CA"),
        ("--check-timeout", dict(type=positive(float), default=180, metavar="SECONDS"),
         "a command in a target running longer is killed and its check fails (default 180)"),
        ("--tier", dict(choices=("smoke", "full"), default="smoke"),
         "size of the render workloads: smoke (CI, minutes) or full (production sizes)"),
        ("--reports-dir", dict(metavar="DIR"), "where verdicts/, artifacts/ and logs/ go (default: reports/ at the root)"),
        ("--no-sbom", dict(action="store_true"), "record no SBOM of the images (reports/verdicts/sbom/<variant>.cdx.json, "
         "what the promotion review compares): mutation testing's traced run, where listing every package would count "
         "as files the checks use"),
        ("--promoted", dict(metavar="DIR"), "folder of the last promoted verdicts (`make promote` keeps them): timed "
         "workloads that regressed against them beyond thresholds.max_regression fail"),
    ]


def pytest_addoption(parser):
    group = parser.getgroup("rendergate", "rendergate: validate GPU render images")
    for flag, settings, text in _options():
        group.addoption(flag, help=text, **settings)
    for kind in KINDS.values():  # each kind's own options (rendergate.engines.kind.Option)
        for option in kind.options:
            group.addoption(option.flag, default=option.default, metavar=option.metavar,
                            help=f"with --target {kind.name}: {option.help}", **({"type": option.type} if option.type else {}),
                            **({"action": option.action} if option.action else {}))
    parser.addini("rendergate_images", "folder of rendergate variants (default: images/ at the root)")
    parser.addini("rendergate_checks", "folders of your own checks, relative to the root (see --checks)", type="paths")
