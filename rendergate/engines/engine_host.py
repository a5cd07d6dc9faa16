"""The machine a Docker engine runs on: what a cell's verdict says of where its image ran.

An engine may be on another machine (DOCKER_HOST=ssh://ci@gpu-07): its host's GPUs, driver and
CPUs are then not this machine's. The engine's own info names its host, OS, kernel, CPUs,
version and runtimes; the GPUs come from NVML here when the engine's host is this machine (a
local socket, and the engine calls its host by this machine's name), else from a probe
container run on that host: an empty image (imported once, no registry needed) with the host's
own /usr, /bin and /lib mounted read-only, whose shell reads the NVIDIA kernel module's
/proc/driver/nvidia (the driver version, each GPU's model, UUID and PCI address: procfs is the
host's in every container) and the PCI device ids in /sys, with no access to the GPUs
themselves. What that cannot read (CUDA's version, compute capability, memory, MIG) is said so.
"""
from __future__ import annotations

import io
import re
import socket
import tarfile
from dataclasses import asdict, dataclass

from rendergate.core.environment import describe_gpus, local_toolkit
from rendergate.core.host_gpus import host_nvml
from rendergate.engines.docker_engine import LABEL_OWNER, LABEL_RUN, Engine, EngineError, docker_sdk

PROBE_IMAGE = "rendergate/host-probe:empty"  # no files at all: the host's own tools are mounted in
HOST_TOOLS = ("/usr", "/bin", "/lib", "/lib64", "/sbin")  # mounted where they exist on the engine's host
NOT_READ_REMOTELY = "not read (the engine's host is another machine: its /proc does not say)"

# What the probe prints: the kernel module's version line, each GPU's /proc information with its
# PCI device id, how many NVIDIA display devices the PCI bus has, and the container toolkit's version.
PROBE_SCRIPT = r"""
echo "module: $(head -n 1 /proc/driver/nvidia/version 2>/dev/null)"
for d in /proc/driver/nvidia/gpus/*; do
  [ -d "$d" ] || continue
  echo "gpu: ${d##*/}"; cat "$d/information"; echo "PCI device: $(cat /sys/bus/pci/devices/${d##*/}/device 2>/dev/null)"
done
n=0
for f in /sys/bus/pci/devices/*; do
  [ "$(cat "$f/vendor" 2>/dev/null)" = 0x10de ] && case "$(cat "$f/class" 2>/dev/null)" in 0x03*) n=$((n+1));; esac
done
echo "pci: $n"
echo "toolkit: $( (nvidia-ctk --version || nvidia-container-cli --version) 2>/dev/null | head -n 1)"
"""


@dataclass(frozen=True)
class EngineHost:
    """An engine's host as its verdicts state it. `nvml`: the GPUs in the JSON shape of
    probes/nvml.py (None: none known, `gpus_unread` says why)."""
    name: str
    engine: str  # the engine as the run named it
    engine_id: str
    engine_version: str
    os: str
    cpus: int
    runtimes: tuple[str, ...]
    toolkit: str
    here: bool  # the engine's host is the machine running pytest
    nvml: dict | None
    gpus_unread: str
    gpus_read: bool = True  # False: the probe did not run; whether the host has GPUs is not known

    def as_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "EngineHost":
        return cls(**{**data, "runtimes": tuple(data["runtimes"])})

    def describe(self, run_host: dict) -> dict:
        """The cell's host description: the run's (suite version, start) with this host's rows."""
        if self.here:
            return {**run_host, **self._engine_rows()}
        gpus = describe_gpus(self.nvml, self.gpus_unread)
        unread = {} if self.gpus_read else {"gpus_unread": self.gpus_unread}
        return {**run_host, "host": self.name, "os": self.os, **gpus, "container_toolkit": self.toolkit,
                **self._engine_rows(), **unread}

    def _engine_rows(self) -> dict:
        return {"docker_engine": f"{self.engine_version} at {self.engine}", "engine_id": self.engine_id,
                "cpus": str(self.cpus)}


def learn(engine: Engine, run_id: str, owner: str) -> EngineHost:
    """What the engine says of its host, and of its GPUs what NVML (this host) or the probe
    container (another) reads."""
    info = engine.client.info()
    here = engine.endpoint.local and info.get("Name") == socket.gethostname()
    runtimes = tuple(sorted(info.get("Runtimes") or {}))
    common = dict(name=info.get("Name") or "unknown", engine=str(engine.endpoint), engine_id=info.get("ID") or "",
                  engine_version=info.get("ServerVersion") or "unknown",
                  os=f"{info.get('OperatingSystem', '?')}, kernel {info.get('KernelVersion', '?')} "
                     f"({info.get('Architecture', '?')})",
                  cpus=int(info.get("NCPU") or 0), runtimes=runtimes, here=here)
    if here:
        nvml, why = host_nvml()
        return EngineHost(**common, toolkit=local_toolkit(), nvml=nvml, gpus_unread=why or "NVML lists no GPU")
    try:
        output = _probe(engine, run_id, owner)
    except EngineError as e:
        return EngineHost(**common, toolkit="not read", nvml=None, gpus_unread=f"its probe container did not run: {e}",
                          gpus_read=False)
    nvml, why, toolkit = parse_probe(output)
    registered = "registered as a runtime" if "nvidia" in runtimes else "not registered as a runtime"
    return EngineHost(**common, toolkit=f"{toolkit or 'not found'} ({registered})", nvml=nvml, gpus_unread=why)


def _probe_image(engine: Engine) -> str:
    """The empty image, imported from a tar archive with no file when the engine lacks it."""
    docker = docker_sdk()
    try:
        engine.client.images.get(PROBE_IMAGE)
    except docker.errors.ImageNotFound:
        empty = io.BytesIO()
        tarfile.open(fileobj=empty, mode="w").close()
        repository, tag = PROBE_IMAGE.split(":")
        engine.client.api.import_image_from_data(empty.getvalue(), repository=repository, tag=tag)
    return PROBE_IMAGE


def _probe(engine: Engine, run_id: str, owner: str) -> str:
    """Run PROBE_SCRIPT on the engine's host, with its own tools; its output."""
    docker = docker_sdk()
    mounts = list(HOST_TOOLS)
    while True:
        try:
            container = engine.client.containers.run(  # Mounts, not Binds: a missing source is refused, never made
                _probe_image(engine), ["/bin/sh", "-c", PROBE_SCRIPT], detach=True, network_disabled=True,
                mounts=[docker.types.Mount(path, path, type="bind", read_only=True) for path in mounts],
                labels={LABEL_RUN: run_id, LABEL_OWNER: owner})
            break
        except docker.errors.APIError as e:  # a host without /lib64 (arm64) or /sbin: mount the others
            missing = re.search(r"bind source path does not exist: (\S+)", str(e.explanation or e))
            if not missing or missing[1] not in mounts or len(mounts) == 1:
                raise EngineError(f"the engine would not start it: {e.explanation or e}") from None
            mounts.remove(missing[1])
        except docker.errors.DockerException as e:
            raise EngineError(f"{type(e).__name__}: {e}") from None
    try:
        status = container.wait(timeout=60)
        output = container.logs().decode(errors="replace")
    except Exception as e:  # a hung probe: its host is unread, nothing more
        raise EngineError(f"it did not finish within 60 s ({type(e).__name__})") from None
    finally:
        engine.remove(container.id)
    if status.get("StatusCode") != 0 or "pci:" not in output:
        raise EngineError(f"the host's shell failed (exit {status.get('StatusCode')}): "
                          f"{(output.strip().splitlines() or ['no output'])[-1]}")
    return output


def parse_probe(output: str) -> tuple[dict | None, str, str]:
    """The probe's output as (GPUs in probes/nvml.py's shape or None, why none, toolkit version)."""
    # "NVIDIA UNIX x86_64 Kernel Module  550.54.15", or the open module's "NVIDIA UNIX Open Kernel Module for x86_64  560.35.03"
    module = re.search(r"^module: .*?Kernel Module(?: for \S+)?\s+([0-9][0-9.]*)", output, re.M)
    toolkit = re.search(r"^toolkit: (.*)$", output, re.M)
    pci = re.search(r"^pci: ([0-9]+)", output, re.M)
    gpus = []
    for index, block in enumerate(re.split(r"^gpu: ", output, flags=re.M)[1:]):
        field = {m[1].strip(): m[2].strip() for m in re.finditer(r"^([^:\n]+):\s*(.*)$", block, re.M)}
        bus = block.split("\n", 1)[0].strip()
        device = field.get("PCI device", "").removeprefix("0x").lower()
        gpus.append({"index": index, "name": field.get("Model", "unknown"), "uuid": field.get("GPU UUID", ""),
                     "pci_bus_id": bus, "pci_device_id": device, "brand": None, "architecture": "unknown",
                     "compute_capability": None, "memory_total": 0, "mig_mode": None, "persistence_mode": None,
                     "encoder_capacity": {}, "encoder_sessions": None})
    found = int(pci[1]) if pci else 0
    if not module:
        why = (f"{found} NVIDIA GPU(s) on its PCI bus, but no NVIDIA kernel module loaded: install the driver there"
               if found else "no NVIDIA GPU on its PCI bus")
        return None, why, toolkit[1].strip() if toolkit else ""
    if not gpus:
        return None, f"the NVIDIA kernel module {module[1]} lists no GPU", toolkit[1].strip() if toolkit else ""
    return ({"driver_version": module[1], "cuda_driver_version": NOT_READ_REMOTELY, "gpus": gpus}, "",
            toolkit[1].strip() if toolkit else "")

