"""Reading a GPU host's readiness: why NVML could not start, Xid errors in the kernel log, and
failures in a DCGM diagnostic's JSON. The check itself is suites/test_readiness.py."""
from __future__ import annotations

import re

from rendergate.core.diagnosis import Cause, Diagnosis
from rendergate.core.driver_capabilities import file_serving

# What pynvml raises when NVML cannot start, and what it means on the host.
_NVML_START = {
    "NVMLError_LibraryNotFound": f"no NVIDIA driver on this host: NVML's library {file_serving('NVML')} is not installed "
                                 "(install the NVIDIA driver)",
    "NVMLError_DriverNotLoaded": "the NVIDIA kernel driver is not loaded (modprobe nvidia; check dmesg for NVRM errors)",
    "NVMLError_NoPermission": "NVML may not open the GPUs: no permission on /dev/nvidia* for this user",
}
_XID = re.compile(r"NVRM: Xid \((?P<device>[^)]*)\): (?P<xid>\d+)")


def driver_missing(nvml_stderr: str) -> Diagnosis:
    """Why the NVML probe could not start, from its last line (`NVMLError_X: text`)."""
    line = (nvml_stderr.strip().splitlines() or ["NVML did not start"])[-1]
    kind = line.split(":", 1)[0]
    return Diagnosis(Cause.NO_DRIVER, f"{_NVML_START.get(kind, 'NVML did not start')} [{line}]")


def kernel_xids(dmesg: str) -> list[str]:
    """`NVRM: Xid (PCI:0000:3b:00): 79, ...` kernel lines, as "Xid 79 on PCI:0000:3b:00"."""
    return [f"Xid {m['xid']} on {m['device']}" for m in _XID.finditer(dmesg)]


def dcgm_failures(report) -> list[str]:
    """Every test a `dcgmi diag -j` report marks failed, by name (the JSON's layout differs
    between DCGM versions: any object with a failing "status" counts, named by its nearest name)."""
    found = []

    def walk(node, name):
        if isinstance(node, dict):
            name = node.get("name") or node.get("test_name") or name
            if str(node.get("status", "")).lower() == "fail":
                found.append(f"{name}: {node.get('info') or node.get('warnings') or 'failed'}")
            for value in node.values():
                walk(value, name)
        elif isinstance(node, list):
            for value in node:
                walk(value, name)

    walk(report, "diagnostic")
    return found
