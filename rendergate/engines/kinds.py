"""The kinds of target by name: one line each. A kind is one module implementing
rendergate.engines.kind.TargetKind; the plugin and the commands ask only this table."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from rendergate.core.manifest import Variant
from rendergate.engines.docker import DockerKind
from rendergate.engines.host import LocalKind
from rendergate.engines.kind import Cell, SetupError, TargetKind
from rendergate.engines.modal import ModalKind

KINDS: dict[str, TargetKind] = {kind.name: kind for kind in (DockerKind(), ModalKind(), LocalKind())}


def image_targets() -> tuple[str, ...]:
    """What --target chooses among: the kinds that run a variant's image (`host = true` is always local)."""
    return tuple(name for name, kind in KINDS.items() if kind.runs_images)


def cells(variants: list[Variant], target: str, options: Mapping[str, object], runtime: str,
          image: str | None) -> list[Cell]:
    """The run's cells: each variant on --target (a host variant on this host), with --image in
    place of the one variant's own image. `options`: every kind's own options, by their dest; one
    of another kind's set is refused. SetupError when the options do not fit the target."""
    kind = KINDS[target]
    if runtime not in kind.runtimes:
        raise SetupError(f"--runtime {runtime} is not available with --target {target}")
    for other in KINDS.values():
        for option in other.options if other is not kind else ():
            if options.get(option.dest, option.default) != option.default:
                raise SetupError(f"{option.flag} is {option.what}: it needs --target {other.name}")
    if image:
        if len(variants) != 1:
            raise SetupError("--image needs exactly one --variant: the manifest the image is checked against")
        if variants[0].host:
            raise SetupError(f"--image: {variants[0].name} is this machine itself (host = true in "
                             f"{variants[0].manifest}), not an image")
    on_images = [replace(v, image=image) if image else v for v in variants if not v.host]
    own = {option.dest: options.get(option.dest, option.default) for option in kind.options}
    return kind.cells(on_images, own, image) + KINDS["local"].cells([v for v in variants if v.host], {}, image)
