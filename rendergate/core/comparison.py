"""What several verdicts say together (a merged report, a Modal matrix): checks that fail only
under gVisor where the same image passes on a native kernel, and the GPU-seconds used."""
from __future__ import annotations

from rendergate.core.outcomes import FAULTS, Outcome
from rendergate.core.platforms import Platform
from rendergate.core.verdict import Verdict


def platform_differences(verdicts: list[Verdict]) -> list[str]:
    """Checks that fail under gVisor but pass on a native kernel, for the same variant, GPU type
    and image: the platform's doing, not the image's (run a variant under both, `--runtime`, and
    merge the two verdicts to see it)."""
    lines = []
    native = {(v.variant, v.host.get("gpu_type"), (v.image or {}).get("digest")): v
              for v in verdicts if (v.platform or Platform.NATIVE) == Platform.NATIVE}
    for sandboxed in (v for v in verdicts if v.platform == Platform.GVISOR):
        key = (sandboxed.variant, sandboxed.host.get("gpu_type"), (sandboxed.image or {}).get("digest"))
        control = native.get(key)
        if not control:
            continue
        passed = {(c.check, c.item) for c in control.checks if c.outcome == Outcome.PASSED}
        for c in sandboxed.checks:
            if c.outcome in FAULTS and (c.check, c.item) in passed:
                name = f"{c.check}[{c.item}]" if c.item else c.check
                lines.append(f"{key[0]} on {key[1]}: {name} fails only under gVisor ({c.message}); with the same "
                             "image on a native kernel it passes: the platform, not the image [platform]")
    return lines


def gpu_seconds(verdicts: list[Verdict]) -> dict[str, int]:
    """GPU-seconds used per GPU type, from the verdicts of a Modal GPU matrix."""
    used: dict[str, int] = {}
    for v in verdicts:
        if v.gpu_seconds:
            used[v.host["gpu_type"]] = used.get(v.host["gpu_type"], 0) + v.gpu_seconds
    return used
