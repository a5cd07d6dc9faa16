"""What this Python has of what rendergate checks: Manim, ManimPango, and bpy with the Cycles GPU
backends compiled into it (`rendergate init` proposes requirements from it). A module that is
absent is null; one that fails to import says why. Any Python 3 an image has (json_out)."""
import importlib
import os
import sys

from json_out import dumps

os.environ.setdefault("COLUMNS", "250")


def version_of(name):
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    except Exception as e:  # present but broken: what the check would then report
        return {"error": f"{type(e).__name__}: {e}"}
    return getattr(module, "__version__", None) or getattr(getattr(module, "app", None), "version_string", "") or "?"


found = {"python": sys.executable, "version": sys.version.split()[0],
         "manim": version_of("manim"), "manimpango": version_of("manimpango"), "bpy": version_of("bpy"),
         "cycles_backends": []}
if isinstance(found["bpy"], str):
    from cycles_devices import list_devices

    found["cycles_backends"] = sorted(list_devices())
print(dumps(found))
