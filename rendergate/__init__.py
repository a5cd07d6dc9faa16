"""rendergate: validate GPU render container images before promotion.

The package's layers are its sub-packages (docs/architecture.md). Check modules written for
rendergate 0.2 import `rendergate.requirements`, `rendergate.diagnosis` and `rendergate.schema`:
those names still import the modules that moved to rendergate.core, with a DeprecationWarning
that says so.
"""
import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {"rendergate.requirements": "rendergate.core.requirements", "rendergate.diagnosis": "rendergate.core.diagnosis",
         "rendergate.schema": "rendergate.core.schema"}


class _Moved(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """An old module name imports its new module (the very same object), saying where it went."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        warnings.warn(f"{spec.name} is now {MOVED[spec.name]}: import it from there", DeprecationWarning, stacklevel=2)
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        """Nothing: the new module is executed already."""


sys.meta_path.append(_Moved())
