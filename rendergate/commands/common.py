"""What several commands share: how they print, the variants they name, how they build."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rendergate.core.manifest import ManifestError, Variant, load_variants
from rendergate.core.redact import printable

if TYPE_CHECKING:
    from rendergate.engines.docker_engine import Engine
    from rendergate.engines.progress import EngineProgress


def say(text: str, stream=None) -> None:
    """Print rendergate's lines; whatever a verdict or an image put in them is shown inert (redact.printable)."""
    print("\n".join(printable(line) for line in text.split("\n")), file=stream or sys.stdout)


def variants(args, names: list[str]) -> dict[str, Variant]:
    """Every variant of --images-dir; ManifestError naming any of `names` that is not one."""
    known = load_variants(Path(args.images_dir))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ManifestError(f"unknown variant {', '.join(unknown)} (known: {', '.join(known)})")
    return known


def builder(args, engine: Engine, progress: EngineProgress):
    """Build a variant's image as the command line says (base image, extra CA, logs under the reports)."""
    extra_ca = Path(args.extra_ca) if args.extra_ca else None

    def built(variant: Variant) -> str:
        return engine.build(variant, Path(args.reports_dir) / "logs", args.base_image, extra_ca, progress=progress)
    return built


def verdict_path(args, variant: str) -> Path:
    return Path(args.reports_dir) / "verdicts" / f"{variant}.json"
