"""The image's installed files are their packages' own: none missing, none changed (a damaged
layer, a bad COPY over a package's file, a library replaced by another), whether or not a
workload happens to read them tonight. Documentation an image leaves out is no fault."""
import pytest

from rendergate.core.diagnosis import CheckFailed
from rendergate.core.known_causes import not_their_own
from rendergate.core.packages import DOCUMENTATION
from rendergate.core.requirements import declare
from rendergate.core.schema import boolean
from rendergate.plugin import requires

FILES_INTACT = declare("files_intact", boolean, "true or false",
                       "every file of the image's Debian packages and Python distributions is its package's own "
                       "(dpkg's checksums, the wheels' RECORD): none missing, none changed")
pytestmark = [requires(FILES_INTACT), pytest.mark.container_only, pytest.mark.reads_every_file]


def test_installed_files_are_their_packages_own(target):
    found = target.probe("files_intact", "--missing-allowed", DOCUMENTATION.pattern, timeout=600)
    if found["count"]:
        raise CheckFailed.of(not_their_own(found["faults"], found["count"]))
