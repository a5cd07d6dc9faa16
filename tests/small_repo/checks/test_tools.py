"""A check of the repo's own, as a user writes one (README "Adding a check"), for its small image:
each program the manifest names is on the image's PATH. It lets the gate and promotion run for
real on an image of a few MB."""
from rendergate.core.diagnosis import Cause, CheckFailed
from rendergate.core.requirements import declare
from rendergate.core.schema import list_of, word
from rendergate.plugin import requires

TOOLS = declare("tools", list_of(word), 'a list of programs, e.g. ["sh"]', "each program named is on the image's PATH")
pytestmark = requires(TOOLS)


def test_tool_on_path(target, requirement):
    if target.run(f"command -v {requirement}").rc != 0:
        raise CheckFailed(Cause.TOOL_MISSING, f"{requirement} is not on the image's PATH: install it")
