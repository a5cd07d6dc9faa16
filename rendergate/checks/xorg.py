"""Start an X server inside a target: NVIDIA's driver where hardware GL is required and a GPU
is visible, the dummy driver otherwise. Started once per target in each worker, on a display of
its own (workers share the container); that worker's checks share the display."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from rendergate.core.diagnosis import CheckFailed
from rendergate.core.grammars import diagnose
from rendergate.core.parsers import parse_nvidia_smi_csv

FIRST_DISPLAY = 42  # worker N of a run uses display :42+N
SCREEN = "1280x720"

_DUMMY_CONF = """\
Section "Device"
  Identifier "dummy"
  Driver "dummy"
  VideoRam 256000
EndSection
Section "Monitor"
  Identifier "monitor"
  HorizSync 5.0-1000.0
  VertRefresh 5.0-200.0
  Modeline "{screen}" 74.25 1280 1390 1430 1650 720 725 730 750 +hsync +vsync
EndSection
Section "Screen"
  Identifier "screen"
  Device "dummy"
  Monitor "monitor"
  DefaultDepth 24
  SubSection "Display"
    Depth 24
    Modes "{screen}"
  EndSubSection
EndSection
"""

_NVIDIA_CONF = """\
Section "Device"
  Identifier "nvidia"
  Driver "nvidia"
  BusID "{bus_id}"
  Option "AllowEmptyInitialConfiguration" "true"
EndSection
Section "Screen"
  Identifier "screen"
  Device "nvidia"
  DefaultDepth 24
  Option "UseDisplayDevice" "none"
  SubSection "Display"
    Depth 24
    Virtual {width} {height}
  EndSubSection
EndSection
"""


@dataclass(frozen=True)
class XServer:
    display: str
    driver: str
    log_path: str

    @property
    def vnc_port(self) -> int:
        """The port a VNC server of this display listens on, by the VNC convention 5900 + display."""
        return 5900 + int(self.display.lstrip(":"))


def xorg_bus_id(nvidia_smi_bus_id: str) -> str:
    """nvidia-smi's '00000000:17:00.0' (hex domain:bus:device.function) as Xorg's 'PCI:23:0:0' (decimal)."""
    match = re.fullmatch(r"(?:[0-9a-fA-F]+:)?([0-9a-fA-F]+):([0-9a-fA-F]+)\.([0-9a-fA-F]+)", nvidia_smi_bus_id.strip())
    if not match:
        raise ValueError(f"not a PCI bus id: {nvidia_smi_bus_id!r}")
    return "PCI:" + ":".join(str(int(part, 16)) for part in match.groups())


def xorg_conf(driver: str, bus_id: str = "") -> str:
    width, height = SCREEN.split("x")
    if driver == "nvidia":
        return _NVIDIA_CONF.format(bus_id=bus_id, width=width, height=height)
    return _DUMMY_CONF.format(screen=SCREEN)


def start_x(target, want_nvidia: bool) -> XServer:
    """The target's X server, started on first use; raises CheckFailed with the cause."""
    if "xserver" in target.memo:
        found = target.memo["xserver"]
        if isinstance(found, CheckFailed):
            raise found
        return found
    try:
        target.memo["xserver"] = _start(target, want_nvidia)
    except CheckFailed as failure:
        target.memo["xserver"] = failure
        raise
    return target.memo["xserver"]


def _start(target, want_nvidia: bool) -> XServer:
    driver, bus_id = "dummy", ""
    if want_nvidia and target.facts().nvidia_devices_visible:
        driver = "nvidia"
        bus = target.check("nvidia-smi --query-gpu=pci.bus_id --format=csv,noheader", "nvidia-smi")
        bus_id = xorg_bus_id(parse_nvidia_smi_csv(bus.stdout, ["pci.bus_id"])[0]["pci.bus_id"])
    display = f":{FIRST_DISPLAY + target.slot}"
    work = f"{target.workdir}/x"
    conf, log, said = f"{work}/xorg.conf", f"{work}/Xorg.log", f"{work}/Xorg.out"
    # Xorg stays in the background; wait until a client can connect or it dies. xdpyinfo is how
    # the start knows the server is up (x11-utils).
    started, _ = target.run_after(
        f"setsid Xorg {display} -config {conf} -logfile {log} -noreset -nolisten tcp "
        f"</dev/null >{said} 2>&1 & pid=$!; "
        f"for i in $(seq 100); do DISPLAY={display} xdpyinfo >/dev/null 2>{work}/xdpyinfo.err && exit 0; "
        f"kill -0 $pid 2>/dev/null || break; sleep 0.1; done; "
        # Its log's errors; then what it said that its log does not (a library it could not load
        # before the log existed; not its log's other lines); then the client's (an xdpyinfo that
        # cannot run is no server that is down).
        f"echo 'Xorg did not come up'; grep -E '\\(EE\\)|Fatal' {log} 2>/dev/null; "
        f"grep -v -E '\\((EE|WW|II|==|--|\\*\\*|\\+\\+|!!|NI|\\?\\?)\\)' {said}; "
        f"grep -v 'unable to open display' {work}/xdpyinfo.err; exit 1", tools=("Xorg", "xdpyinfo"),
        steps=(("printf (writing xorg.conf)", f"mkdir -p {work} && printf '%s' {shlex.quote(xorg_conf(driver, bus_id))} > {conf}"),),
        timeout=30)
    if started.rc != 0:
        raise CheckFailed.of(diagnose(started.output, started.rc, f"Xorg with the {driver} driver", target.facts()))
    return XServer(display, driver, log)
