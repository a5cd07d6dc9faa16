"""The kernel a target's processes talk to: the host's own (native), or gVisor's user-space
kernel (Modal's default runtime; Debian's runsc with --runtime gvisor), which proxies only part
of the NVIDIA driver. Probed once per target; failures, verdicts and reports name it."""
from __future__ import annotations

from enum import StrEnum


class Platform(StrEnum):
    NATIVE = "native"
    GVISOR = "gVisor"


def platform_of(kernel_log: str) -> Platform:
    """GVISOR when the target's kernel log is gVisor's (it fakes one that starts "Starting gVisor...")."""
    return Platform.GVISOR if "Starting gVisor" in kernel_log else Platform.NATIVE
