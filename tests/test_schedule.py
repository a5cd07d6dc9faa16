"""The order checks run in (rendergate.plugin.schedule): the longest first by what they took last
time, never-timed checks early with their variants interleaved, host readiness first, timed
workloads together, checks that do not apply (or skip at once: no GPU here) last, the first pair of each xdist worker about as
long as the others'; a history file in any state orders, never breaks."""
import json

import pytest
from conftest import SMALL_REPO, SMALL_RUN_TIMEOUT, run_suite

from rendergate.plugin.notes import NOTES_KEY, PROPERTY, CheckNotes
from rendergate.plugin.run import RUN_KEY
from rendergate.plugin.schedule import DURATIONS_KEY, History, _durations, check_key, order


class Item:
    """As much of a pytest item as the order reads: its stash (the check's notes) and its marks."""

    def __init__(self, cell, check, requirement="x", skip=None, timed=False, needs_gpu=False):
        self.stash = pytest.Stash()
        self.stash[NOTES_KEY] = CheckNotes(cell=cell, target="docker", check=check, requirement=requirement, skip=skip)
        self.marks = {"timed"} if timed else set()
        self.marks |= {"needs_gpu"} if needs_gpu else set()
        self.name = f"{check}[{cell}]"
        self.callspec = type("CallSpec", (), {"params": {"cell": cell}})()

    def get_closest_marker(self, name):
        return object() if name in self.marks else None


def ordered(items, durations, workers=None, gpus=()):
    """The order of `items` in a run whose cells have `gpus`."""
    config = type("Config", (), {"stash": pytest.Stash()})()
    if workers is not None:  # an xdist worker's config
        config.workerinput = {"workercount": workers}
    config.stash[DURATIONS_KEY] = durations
    config.stash[RUN_KEY] = type("Run", (), {"gpus_of": lambda self, cell: list(gpus)})()
    order(config, items)
    return [item.name for item in items]


def test_the_longest_first_host_readiness_before_all_and_checks_that_do_not_apply_last():
    items = [Item("manim", "test_short"), Item("manim", "test_skipped", skip="not-declared"),
             Item("blender", "test_long"), Item("host", "test_host_ready", requirement="host_ready"),
             Item("xorg", "test_middle")]
    durations = {check_key("manim", "test_short", None): 0.1, check_key("blender", "test_long", None): 3.0,
                 check_key("xorg", "test_middle", None): 1.0, check_key("host", "test_host_ready", None): 0.1}
    assert ordered(items, durations) == ["test_host_ready[host]", "test_long[blender]", "test_middle[xorg]",
                                         "test_short[manim]", "test_skipped[manim]"]


def test_checks_never_timed_come_early_their_variants_interleaved_and_a_new_cell_learns_from_others():
    items = [Item("a", "test_one"), Item("a", "test_two"), Item("b", "test_one"), Item("b", "test_two"),
             Item("c", "test_known")]
    durations = {check_key("z", "test_known", None): 5.0}  # another cell's figure: this check is long anywhere
    assert ordered(items, {}) == ["test_one[a]", "test_one[b]", "test_known[c]", "test_two[a]", "test_two[b]"]
    assert ordered(items, durations)[-1] == "test_known[c]"  # known, so after the unknown ones
    assert ordered([Item("c", "test_known"), Item("a", "test_short")],
                   {**durations, check_key("a", "test_short", None): 0.2}) == ["test_known[c]", "test_short[a]"]


def test_timed_workloads_run_together_before_the_rest():
    items = [Item("a", "test_long"), Item("a", "test_timed", timed=True), Item("b", "test_timed", timed=True)]
    durations = {check_key("a", "test_long", None): 9.0, check_key("a", "test_timed", None): 1.0}
    assert ordered(items, durations)[2] == "test_long[a]"


def test_each_worker_starts_on_a_pair_of_checks_as_long_as_the_others_pair():
    """xdist hands worker i the checks at positions 2i and 2i+1 to start with (maxschedchunk 1)."""
    seconds = [8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.5]
    items = [Item(f"v{n}", "test_check") for n in range(len(seconds))]
    durations = {check_key(f"v{n}", "test_check", None): s for n, s in enumerate(seconds)}
    names = [f"test_check[v{n}]" for n in range(len(seconds))]
    assert ordered(items, durations) == names  # one process: longest first
    assert ordered(items, durations, workers=1) == names
    assert ordered(items, durations, workers=2)[:4] == [names[0], names[3], names[1], names[2]]
    three = ordered(items, durations, workers=3)
    of = dict(zip(names, seconds))
    assert [of[first] + of[second] for first, second in zip(three[0:6:2], three[1:6:2])] == [11.0, 11.0, 11.0]
    assert three[6:] == names[6:]
    three_checks = [Item(f"v{n}", "test_check") for n in (2, 0, 1)]
    assert ordered(three_checks, durations, workers=2) == names[:3]  # fewer than two each: xdist deals them one by one


def test_the_checks_workers_start_on_at_once_are_of_different_variants():
    """Their containers start side by side, and two checks never begin at once on one container's
    first warm-up (the first import of Manim compiles it)."""
    items = [Item("manim", "test_mathtex"), Item("manim", "test_manimpango"), Item("blender", "test_files"),
             Item("manim", "test_files"), Item("xorg", "test_glx")]
    durations = {check_key("manim", "test_mathtex", None): 3.6, check_key("manim", "test_manimpango", None): 3.5,
                 check_key("blender", "test_files", None): 2.7, check_key("manim", "test_files", None): 2.4,
                 check_key("xorg", "test_glx", None): 1.2}
    first_two = ordered(items, durations, workers=2)[:4]
    assert [first_two[0], first_two[2]] == ["test_mathtex[manim]", "test_files[blender]"]  # each worker's first
    assert first_two[1::2] == ["test_files[manim]", "test_manimpango[manim]"]  # the longest with the shortest
    one_variant = [Item("manim", f"test_{n}") for n in range(4)]
    assert len(ordered(one_variant, {}, workers=2)) == 4  # no second variant to start on: as they come


def test_a_gpu_check_on_a_host_without_a_gpu_counts_as_nothing_and_its_skip_is_not_history():
    """It skips at once here, so it goes after what runs; where GPUs are, it is what it took there,
    and a skip writes nothing to the history (which a GPU host may share, a CI cache say)."""
    items = [Item("a", "test_gpu", needs_gpu=True), Item("a", "test_cpu")]
    durations = {check_key("a", "test_gpu", None): 9.0, check_key("a", "test_cpu", None): 1.0}
    assert ordered(items, durations) == ["test_cpu[a]", "test_gpu[a]"]
    assert ordered([Item("a", "test_gpu", needs_gpu=True), Item("a", "test_new")], {}) == ["test_new[a]", "test_gpu[a]"]
    assert ordered(items, durations, gpus=["an NVIDIA GPU"]) == ["test_gpu[a]", "test_cpu[a]"]

    class Cache(dict):
        def set(self, key, value):
            self[key] = value

    class Report:
        def __init__(self, skipped, duration, check):
            notes = CheckNotes(cell="a", target="docker", check=check, requirement="x", skip="no-gpu" if skipped else None)
            self.when, self.skipped, self.duration = "call", skipped, duration
            self.user_properties = [(PROPERTY, notes.to_json())]

    cache = Cache()
    history = History(cache, {})
    for report in (Report(True, 0.01, "test_gpu"), Report(False, 2.0, "test_cpu")):
        history.pytest_runtest_logreport(report)
    history.pytest_sessionfinish()
    assert cache["rendergate/durations"] == {check_key("a", "test_cpu", None): 2.0}


@pytest.mark.parametrize("found", [
    [1, 2], "text", None, {"a::b::": "3"}, {"a::b::": float("nan")}, {"a::b::": -1}, {"a::b::": True},
    {"no separators": 1.0}, {"a::b::": 1e400}, {"a::b::": {"nested": 1}}])
def test_a_history_in_any_state_orders_without_breaking(found):
    durations = _durations(found)
    assert all(isinstance(s, float) and 0 <= s < float("inf") for s in durations.values())
    ordered([Item("a", "b"), Item("a", "c")], durations)


def test_a_run_writes_the_history_that_its_workers_share(tmp_path, small_image):
    """A real run of tests/small_repo's variant (busybox, its own check) under -n 2: the history is
    written, and a second run with a hostile history in its place runs every check alike."""
    cache = tmp_path / "cache"
    args = (f"--images-dir={SMALL_REPO / 'images'}", f"--checks={SMALL_REPO / 'checks'}", "-n", "2",
            "--allow-no-gpu", "-o", f"cache_dir={cache}")
    first = run_suite(tmp_path / "first", *args, timeout=SMALL_RUN_TIMEOUT)
    history = cache / "v" / "rendergate" / "durations"
    written = json.loads(history.read_text())
    assert first.complete and written and all(key.count("::") == 2 for key in written)
    history.write_text(json.dumps({"x::y::": "hostile", **{f"v{n}::c::": n for n in range(20000)}}))
    second = run_suite(tmp_path / "second", *args, timeout=SMALL_RUN_TIMEOUT)
    assert second.complete, second.output[-2000:]
    assert {n: (v["state"], len(v["checks"])) for n, v in second.verdicts.items()} == \
        {n: (v["state"], len(v["checks"])) for n, v in first.verdicts.items()}
    assert len(json.loads(history.read_text())) <= 5000
