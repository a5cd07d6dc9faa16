"""Checks of one requirement in every shape pytest multiplies a test into runs: parametrize with a
generator and with keyword arguments, a fixture's params, a module's own pytest_generate_tests,
inherited and nested test classes, and a fixture that takes `requirement` (one run per item).
tests/test_gate_attacks.py trims one run of each and the gate must say which did not run."""
import pytest

from rendergate.core.requirements import declare
from rendergate.core.schema import list_of, word
from rendergate.plugin import requires

SHAPES = declare("shapes", list_of(word), 'a list of words, e.g. ["a"]', "each shape of check runs, every run of it")
pytestmark = requires(SHAPES)


@pytest.mark.parametrize("case", (name for name in ("gen_one", "gen_two")))
def test_generated(target, case):
    target.check("true", case)


@pytest.mark.parametrize(argnames="case", argvalues=["kw_one", "kw_two"])
def test_keyword(target, case):
    target.check("true", case)


@pytest.fixture(params=["fix_one", "fix_two"])
def flavour(request):
    return request.param


def test_fixture_params(target, flavour):
    target.check("true", flavour)


def pytest_generate_tests(metafunc):
    if "hook_case" in metafunc.fixturenames:
        metafunc.parametrize("hook_case", ["hook_one", "hook_two"])


def test_hooked(target, hook_case):
    target.check("true", hook_case)


class TestBase:
    def test_inherited(self, target):
        target.check("true", "inherited")


class TestChild(TestBase):
    pass


class TestOuter:
    class TestNested:
        def test_nested(self, target):
            target.check("true", "nested")


@pytest.fixture
def shape(requirement):
    return requirement


def test_through_a_fixture(target, shape):
    target.check("true", shape)
