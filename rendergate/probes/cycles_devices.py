"""Cycles under bpy.

  cycles_devices.py list               the devices Cycles offers for each GPU backend
  cycles_devices.py render TYPE OUT    a small frame on TYPE's GPU devices only, watched through NVML

bpy accepts any compute_device_type and silently renders on the CPU when no GPU device is
usable, so `render` reports what NVML saw on the GPUs while the frame rendered: the suite
decides from that evidence, never from the settings.
"""
import json
import os
import sys
import time

import bpy
from gpuwatch import GpuWatch

BACKENDS = ("CUDA", "OPTIX", "HIP", "ONEAPI")


def cycles_preferences():
    """Cycles' add-on preferences; where the add-on itself is gone (a slimmed bpy), a line saying
    so, not the AttributeError bpy would give."""
    addon = bpy.context.preferences.addons.get("cycles")
    if addon is None or addon.preferences is None:
        folder = os.path.join(bpy.utils.system_resource("SCRIPTS"), "addons_core", "cycles")
        state = "is missing" if not os.path.isdir(folder) else "is there but did not load"
        sys.exit(f"rendergate: the Cycles add-on is not loaded in bpy: {folder} {state}")
    return addon.preferences


def list_devices():
    prefs = cycles_preferences()
    devices = {}
    for backend in BACKENDS:
        try:
            prefs.compute_device_type = backend
        except TypeError:  # backend not compiled into this build
            continue
        prefs.refresh_devices()
        devices[backend] = [{"name": d.name, "type": d.type, "id": d.id, "use": bool(d.use)}
                            for d in prefs.devices if d.type in (backend, "CPU")]
    return devices


def render(backend, out):
    prefs = cycles_preferences()
    prefs.compute_device_type = backend
    prefs.refresh_devices()
    enabled = []
    for device in prefs.devices:
        device.use = device.type == backend
        if device.use:
            enabled.append(device.name)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "GPU"
    scene.cycles.samples = 16
    scene.render.resolution_x, scene.render.resolution_y = 128, 96
    scene.render.resolution_percentage = 100
    scene.render.filepath = out
    try:
        watch = GpuWatch()
    except Exception as e:  # NVML unusable: no evidence can be gathered, the suite fails closed
        watch, nvml_error = None, f"{type(e).__name__}: {e}"
    if watch:
        watch.start()
    started = time.monotonic()
    bpy.ops.render.render(write_still=True)
    seconds = time.monotonic() - started
    evidence = watch.evidence() if watch else {"error": nvml_error}
    return {"backend": backend, "enabled_devices": enabled, "render_seconds": round(seconds, 3),
            "output": out, "gpu_evidence": evidence}


if __name__ == "__main__":
    if sys.argv[1] == "list":
        result = {"blender": bpy.app.version_string, "devices": list_devices()}
    else:
        result = render(sys.argv[2], sys.argv[3])
    print(json.dumps(result))
