"""The promotion review, for real: two images of one variant (tests/promotion_review) that differ in
a package version, a removed package, an ENV and a layer, each validated by a run of the suites,
the first promoted; `rendergate diff` (its JSON), promotion's own output and the report (read in
chromium) list exactly those changes. The same for images a user brings, pulled from a registry
on loopback. And the SBOM of each shipped image: valid CycloneDX, listing what `dpkg-query -W` and
the image's own Python say it holds."""
import json
import shlex
import statistics
from copy import deepcopy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import (
    CLI_TIMEOUT,
    ROOT,
    SMALL_REPO,
    SMALL_RUN_TIMEOUT,
    loopback_registry,
    rendergate_cli,
    run_suite,
    written_verdict,
)
from rendergate.core import contents
from test_report_browser import open_report
from rendergate.core.contents import sbom_path
from rendergate.core.manifest import load_variant

REVIEW = ROOT / "tests" / "promotion_review"
VARIANT = (f"--images-dir={REVIEW / 'images'}", f"--checks={SMALL_REPO / 'checks'}")
# What tests/promotion_review's two Dockerfiles make differ, and nothing else.
PACKAGES = [{"kind": "deb", "name": "rg-review-demo", "old": "1.0", "new": "1.1", "change": "upgraded", "used": False},
            {"kind": "deb", "name": "rg-review-dropped", "old": "2.0", "new": None, "change": "removed", "used": False}]
CONFIG = [{"what": "ENV REVIEW_CHANNEL", "old": "stable", "new": "beta"}]
LAYER_STEPS = {("removed", "make-package rg-review-demo 1.0 && make-package rg-review-dropped 2.0"),
               ("added", "make-package rg-review-demo 1.1"),
               ("added", "head -c 3000000 /dev/zero > /opt/review-extra.bin")}


@pytest.fixture(scope="module")
def review_images(engine, base_image) -> dict[str, str]:
    """The two images of the review variant, built from the local base."""
    built = {}
    for name, dockerfile in (("promoted", "Dockerfile"), ("candidate", "../../candidate/Dockerfile")):
        built[name] = f"rendergate-test/review:{name}"
        engine.client.images.build(path=str(REVIEW / "images" / "review"), dockerfile=dockerfile, tag=built[name],
                                   buildargs={"BASE_IMAGE": base_image}, rm=True, forcerm=True)
    return built


def _validate(tmp_path, name: str, image: str, promoted_dir):
    run = run_suite(tmp_path / name, *VARIANT, "--variant=review", f"--image={image}", f"--promoted={promoted_dir}",
                    f"--html={tmp_path / name / 'reports' / 'report.html'}", "--self-contained-html", timeout=SMALL_RUN_TIMEOUT)
    assert run.returncode == 0 and run.verdicts["review"]["state"] == "passed", run.output
    return run


def _reviewed(tmp_path, promoted_dir, images: dict[str, str], to: str) -> tuple[dict, str, object]:
    """Validate the promoted image, promote it as `to`, validate the candidate: the review as
    `rendergate diff --json` prints it (and `merge` writes its page, merged.html in the run's
    reports), what the candidate's promotion then printed, and the candidate's run."""
    first = _validate(tmp_path, "first", images["promoted"], promoted_dir)
    promoted = rendergate_cli(*VARIANT, "promote", "review", f"--image={images['promoted']}", f"--to={to}",
                              f"--promoted={promoted_dir}", reports=first.reports, timeout=CLI_TIMEOUT)
    assert promoted.returncode == 0 and "verdict and SBOM kept in" in promoted.stdout, promoted.stdout + promoted.stderr
    second = _validate(tmp_path, "second", images["candidate"], promoted_dir)
    diff = rendergate_cli("diff", "review", "--json", f"--promoted-dir={promoted_dir}", reports=second.reports)
    assert diff.returncode == 0, diff.stderr
    merged = rendergate_cli("merge", str(second.reports), f"--promoted-dir={promoted_dir}",
                            f"--out={second.reports / 'merged.html'}", reports=second.reports)
    assert merged.returncode == 0, merged.stderr
    again = rendergate_cli(*VARIANT, "promote", "review", f"--image={images['candidate']}", f"--to={to}",
                           f"--promoted={promoted_dir}", reports=second.reports, timeout=CLI_TIMEOUT)
    assert again.returncode == 0, again.stdout + again.stderr
    return json.loads(diff.stdout), again.stdout, second


def _assert_exactly_the_four_changes(review: dict, engine, images: dict[str, str]) -> None:
    assert review["packages"] == PACKAGES
    assert review["config"] == CONFIG
    steps = {(layer["change"], layer["created_by"].removeprefix("/bin/sh -c ")) for layer in review["layers"]}
    assert steps == LAYER_STEPS and len(review["layers"]) == 3, review["layers"]
    sizes = {name: engine.client.images.get(ref).attrs["Size"] for name, ref in images.items()}
    assert review["size_change"] == sizes["candidate"] - sizes["promoted"]
    assert (review["outcomes"], review["figures"], review["unread"]) == ([], [], [])
    assert review["candidate"]["digest"] == engine.client.images.get(images["candidate"]).id
    assert review["promoted"]["digest"] == engine.client.images.get(images["promoted"]).id


def _report_review(browser, report, settle: bool = True) -> tuple[str, list[str]]:
    """The review under the variant's state in a report (`settle`: pytest-html's, which renders its
    table by script first; else merge's plain page), as chromium shows it: its line, and the whole
    review's items once opened."""
    if settle:
        open_report(browser, report)
    else:
        browser.get(report.resolve().as_uri())
    block = browser.find_element("css selector", '#rg-summary .rg-review[data-variant="review"]')
    block.find_element("tag name", "summary").click()
    items = [li.text for li in block.find_elements("css selector", "details li")]
    return block.text.splitlines()[0], items


def test_the_review_lists_exactly_what_changed_since_the_promoted_image(review_images, engine, browser, tmp_path):
    promoted_dir = tmp_path / "promoted"
    review, promotion, second = _reviewed(tmp_path, promoted_dir, review_images, "rendergate-test/review:released")
    _assert_exactly_the_four_changes(review, engine, review_images)
    assert review["promoted"]["to"] == "rendergate-test/review:released"
    # The same review, said before the candidate was tagged, and in the report under the variant's state.
    assert review["headline"] in promotion and promotion.index(review["headline"]) < promotion.index("PROMOTED")
    headline, items = _report_review(browser, second.reports / "report.html")
    assert headline == review["headline"]
    assert "1 Debian package upgraded (rg-review-demo 1.0 -> 1.1), 1 Debian package removed (rg-review-dropped)" in headline
    assert "layers: 2 added, 1 removed" in headline
    listed = [i for i in items if not i.startswith(("size:", "no mutation trace"))]
    assert len(listed) == len(PACKAGES) + len(CONFIG) + len(LAYER_STEPS), items
    assert "packages: upgraded deb rg-review-demo 1.0 -> 1.1" in listed and "config: ENV REVIEW_CHANNEL: stable -> beta" in listed
    assert review["headline"] in second.output  # and in the terminal summary of the run
    assert _report_review(browser, second.reports / "merged.html", settle=False)[0] == review["headline"]  # merge's page
    # Promotion kept the candidate's verdict and its SBOM for the next review.
    kept = contents.read(sbom_path(promoted_dir / "review.json"), review["candidate"]["digest"])
    assert {p.name: p.version for p in kept.packages}["rg-review-demo"] == "1.1"


def test_the_review_of_images_pulled_from_a_registry(review_images, engine, browser, tmp_path):
    """A user's own images, as CI gets them: pulled from a registry (on loopback), the promoted one pushed there."""
    (tmp_path / "registry").mkdir()
    with loopback_registry(tmp_path / "registry") as registry:
        pulled = {name: f"{registry}/studio/render:{name}" for name in review_images}
        try:
            for name, ref in review_images.items():
                engine.client.images.get(ref).tag(f"{registry}/studio/render", name)
                engine.client.images.push(f"{registry}/studio/render", name)
                engine.client.images.remove(pulled[name])  # only the registry has it under that name
            review, _, second = _reviewed(tmp_path, tmp_path / "promoted", pulled, f"{registry}/studio/render:released")
            assert f"pulled {pulled['candidate']} in " in second.output
            _assert_exactly_the_four_changes(review, engine, pulled)
            assert _report_review(browser, second.reports / "report.html")[0] == review["headline"]
        finally:  # the registry's names, pulled back or tagged: never left in the engine, whatever failed
            for ref in [*pulled.values(), f"{registry}/studio/render:released"]:
                if engine.image_exists(ref):
                    engine.client.images.remove(ref)


def test_an_sbom_of_another_image_or_none_is_said_not_compared(review_images, tmp_path):
    """An SBOM left by a run of another image (or none at all) is never taken for the verdict's own."""
    promoted_dir = tmp_path / "promoted"
    first = _validate(tmp_path, "first", review_images["promoted"], promoted_dir)
    assert rendergate_cli(*VARIANT, "promote", "review", f"--image={review_images['promoted']}",
                          "--to=rendergate-test/review:released", f"--promoted={promoted_dir}", reports=first.reports,
                          timeout=CLI_TIMEOUT).returncode == 0
    second = _validate(tmp_path, "second", review_images["candidate"], promoted_dir)
    mine = sbom_path(second.reports / "verdicts" / "review.json")
    mine.write_bytes(sbom_path(first.reports / "verdicts" / "review.json").read_bytes())  # the other image's
    said = json.loads(rendergate_cli("diff", "review", "--json", f"--promoted-dir={promoted_dir}", reports=second.reports).stdout)
    assert said["packages"] == said["config"] == said["layers"] == [] and said["size_change"] is None
    assert [u for u in said["unread"] if "an SBOM of image " + said["promoted"]["digest"] in u], said["unread"]
    assert "not compared: packages, config and layers" in said["headline"]
    mine.unlink()
    said = json.loads(rendergate_cli("diff", "review", "--json", f"--promoted-dir={promoted_dir}", reports=second.reports).stdout)
    assert said["packages"] == [] and any("no SBOM" in u for u in said["unread"]), said["unread"]


@pytest.mark.parametrize("name", ["manim", "xorg-glx", "blender"])
def test_the_sbom_of_each_shipped_image_is_valid_cyclonedx_and_lists_its_packages(name, container_target):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    target = container_target(name)
    found = contents.record(target)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(contents.bom_json(found)) is None
    assert found.unread == {} and found.image_digest == target.container.image.id
    listed = target.run("dpkg-query -W -f='${db:Status-Status} ${Package} ${Version} ${Architecture}\\n'").stdout
    installed = {tuple(line.split()[1:]) for line in listed.splitlines() if line.startswith("installed ")}
    assert {(p.name, p.version, p.arch) for p in found.packages} == installed and installed
    # The image's Python, asked from / as a user would (importlib.metadata; the first of a name wins, as imports do).
    report = target.run(f"cd / && {shlex.quote(target.python)} -c \"import importlib.metadata as m, json; seen = {{}}; "
                        "[seen.setdefault(d.metadata['Name'].lower(), d.version) for d in m.distributions()]; "
                        "print(json.dumps(seen))\"")
    assert report.rc == 0, report.stderr
    assert {d.name.lower(): d.version for d in found.distributions} == json.loads(report.stdout)
    env = target.container.image.attrs["Config"]["Env"]
    assert found.config.env == dict(e.split("=", 1) for e in env) and found.config.size > 0
    assert found.capabilities == found.config.env.get("NVIDIA_DRIVER_CAPABILITIES", "")


@pytest.fixture
def base_verdict() -> dict:
    """A complete, passing verdict of the manim variant, written through the code a run writes them with."""
    return written_verdict(load_variant(ROOT / "images" / "manim"), {"gpu_type": "no GPU"},
                           image={"ref": "rendergate/manim:dev", "digest": "sha256:" + "a" * 64, "repo_digests": []})


def _contents(packages=(), wheels=(), env=None, layers=(), size=100, python="/usr/bin/python3", unread=None) -> contents.Contents:
    """What an image is made of, as record() finds it (an input of the review's own logic)."""
    return contents.Contents("some/image:tag", "sha256:" + "a" * 64, python=python,
                             packages=[contents.Package(*p) if len(p) == 3 else contents.Package(*p, "amd64") for p in packages],
                             distributions=[contents.Distribution(n, v, "/usr/lib/python3/dist-packages") for n, v in wheels],
                             config=contents.ImageConfig(env=dict(env or {}), size=size,
                                                         layers=[contents.Layer(c, s, d) for c, s, d in layers]),
                             unread=dict(unread or {}))


def test_versions_are_ordered_as_debian_and_python_order_them_and_used_packages_are_marked(tmp_path):
    from rendergate.release.review import package_changes, used_packages

    old = _contents([("ffmpeg", "7:5.1.6-0+deb12u1"), ("libx", "1.0~rc1"), ("gone", "1")], [("numpy", "1.26.4"), ("odd", "x")])
    new = _contents([("ffmpeg", "7:5.1.7-0+deb12u1"), ("libx", "0.9"), ("fresh", "2")], [("numpy", "1.26.10"), ("odd", "y")])
    (tmp_path / "review.json").write_text(json.dumps({"used_owners": ["ffmpeg"], "image_id": "sha256:" + "b" * 64}))
    used, said = used_packages(tmp_path / "review.json")
    found = {(c.kind, c.name): (c.change, c.used) for c in package_changes(old, new, used)}
    assert found == {("deb", "ffmpeg"): ("upgraded", True), ("deb", "libx"): ("downgraded", False),
                     ("deb", "gone"): ("removed", False), ("deb", "fresh"): ("added", False),
                     ("python", "numpy"): ("upgraded", False),  # 1.26.10 after 1.26.4: not the order of the strings
                     ("python", "odd"): ("changed", False)}  # versions that do not order are not called an upgrade
    assert str(tmp_path / "review.json") in said
    assert used_packages(tmp_path / "none.json") == (set(), None)


def test_timed_figures_are_shown_beside_the_promoted_ones_with_their_spreads(base_verdict):
    from rendergate.core.verdict import Verdict
    from rendergate.release.review import figure_changes

    def timed(speedups, median, cause=None):
        v = Verdict.from_json(deepcopy(base_verdict))
        c = v.checks[0]
        c.cause = cause
        c.figures = {"encode.mp4": {"speedup": statistics.median(speedups), "paired_speedups": speedups,
                                    "candidate": {"median_s": median}}}
        return v

    found, unread = figure_changes(timed([2.0, 2.2, 2.1], 1.25), timed([2.1, 2.2, 2.3], 1.20, "regressed"))
    assert unread == [] and len(found) == 1
    f = found[0]
    assert (f.old_speedup, f.new_speedup, f.regressed) == (2.1, 2.2, True)
    assert f.old_spread == pytest.approx(0.2 / 2.1) and f.new_spread == pytest.approx(0.2 / 2.2)
    assert f.short() == "encode.mp4 4% faster"
    elsewhere = timed([2.0], 1.0)
    elsewhere.host = {**elsewhere.host, "gpu_type": "another GPU"}
    found, unread = figure_changes(elsewhere, timed([2.0], 1.0))
    assert found == [] and "the promoted image was timed on another GPU" in unread[0]


def test_outcomes_that_changed_are_listed_and_nothing_else(base_verdict):
    from rendergate.core.outcomes import Outcome
    from rendergate.core.verdict import Verdict
    from rendergate.release.review import outcome_changes

    old, new = Verdict.from_json(deepcopy(base_verdict)), Verdict.from_json(deepcopy(base_verdict))
    assert outcome_changes(old, new) == []
    broken = new.checks[0]
    broken.outcome, broken.cause = Outcome.FAILED, "command-failed"
    said = [c.line() for c in outcome_changes(old, new)]
    assert said == [f"requirement {broken.requirement}: passed -> failed",
                    f"check {broken.check}{f'[{broken.item}]' if broken.item else ''}: passed -> failed [command-failed]"]


def test_a_secret_in_the_images_config_never_reaches_the_sbom():
    """In its ENV (however short), its history (build arguments too), its CMD and ENTRYPOINT (an
    option at the end of one, its value in the other; shell form), its labels; and recording an
    image teaches the redaction of everything else nothing (its TOKENIZERS_PARALLELISM=false)."""
    from rendergate.core.redact import redact

    secret = "hunter2-not-for-reports"
    config = contents.image_config(
        {"Config": {"Env": [f"RENDER_API_TOKEN={secret}", "SHORT_TOKEN=ab1", "PATH=/bin", "TOKENIZERS_PARALLELISM=false"],
                    "Entrypoint": ["run", "--password"],
                    "Cmd": ["entrysecret-6", "--api-token=x9", "--token=cm1", "sh -c 'serve --password sh2'",
                            "--password-file", "/run/secrets/db"],
                    "Labels": {"com.example.api_token": "labelsecret-2"}}, "Size": 5, "RootFS": {"Layers": ["sha256:l"]}},
        [{"CreatedBy": f"/bin/sh -c #(nop) ENV RENDER_API_TOKEN={secret}", "Size": 0},
         {"CreatedBy": "|1 API_TOKEN=ab3 /bin/sh -c echo run", "Size": 5}])
    text = contents.bom_json(contents.Contents("x:1", "sha256:" + "c" * 64, config=config))
    for shown in (secret, "ab1", "entrysecret-6", "x9", "cm1", "sh2", "ab3", "labelsecret-2"):
        assert shown not in text, shown
    assert "RENDER_API_TOKEN" in text and "/bin" in text and "echo run" in text and "/run/secrets/db" in text
    assert redact("render is false") == "render is false"


def test_a_layer_is_credited_to_a_step_only_where_that_is_certain():
    """A WORKDIR that made its folder made a layer, a RUN that changed nothing made none: where the
    history cannot tell which of two such steps made a layer, the layers between are credited to
    no step (a reviewer is never told a false maker), and the certain ones still are."""
    steps = [("", 100), ("RUN test -d /usr", 0), ("RUN make libdep", 500), ("RUN echo model", 9),
             ("/bin/sh -c #(nop) WORKDIR /app", 0), ("/bin/sh -c #(nop)  ENV A=1", 0), ("RUN echo app", 3)]
    history = [{"CreatedBy": c, "Size": n} for c, n in reversed(steps)]  # the engine's order: newest first
    layers = contents.image_config({"RootFS": {"Layers": ["base", "libdep", "model", "app-dir", "app"]}}, history).layers
    assert [(layer.digest, layer.created_by, layer.size) for layer in layers] == [
        ("base", "", 100), ("libdep", "", None), ("model", "", None), ("app-dir", "", None), ("app", "RUN echo app", 3)]
    certain = contents.image_config({"RootFS": {"Layers": ["base", "libdep", "app"]}},
                                    [{"CreatedBy": c, "Size": n} for c, n in reversed([steps[0], steps[2], steps[5], steps[6]])]).layers
    assert [layer.created_by for layer in certain] == ["", "RUN make libdep", "RUN echo app"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["cuda_runtime", "driver_files", "config:entrypoint", "config:cmd", "config:size", "layer:000",
                            "python", "env:PATH"]),
       value=st.one_of(st.text(max_size=30), st.recursive(st.none() | st.integers() | st.text(max_size=5),
                                                          lambda c: st.lists(c, max_size=3) | st.dictionaries(
                                                              st.sampled_from(["digest", "created_by", "size"]), c, max_size=3),
                                                          max_leaves=8).map(json.dumps)))
def test_an_sbom_with_any_property_changed_is_read_or_refused_in_one_line(tmp_path, key, value):
    """A kept SBOM someone (or a bug) changed never stops a run, a review or a promotion with a traceback."""
    good = _contents([("apt", "2.6")], [("numpy", "1.0")], layers=[("RUN x", 1, "sha256:x")])
    document = json.loads(contents.bom_json(good))
    properties = document["metadata"]["component"]["properties"]
    for prop in properties:
        if prop["name"] == f"rendergate:{key}":
            prop["value"] = value
    path = tmp_path / "sbom" / "x.cdx.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(document))
    try:
        read = contents.read(path, None)
    except contents.SbomError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e)
    else:
        from rendergate.release.review import config_changes, layer_changes
        config_changes(good, read), layer_changes(good, read)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                             lambda children: st.lists(children, max_size=4) | st.dictionaries(
                                 st.sampled_from(["metadata", "component", "properties", "name", "value", "components",
                                                  "purl", "version", "rendergate:config:size", "x"]), children, max_size=4),
                             max_leaves=20))
def test_any_sbom_is_read_or_refused_in_one_line_naming_its_file(tmp_path, document):
    path = tmp_path / "sbom" / "x.cdx.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(document))
    try:
        contents.read(path, None)
    except contents.SbomError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e)


def test_a_part_one_image_could_not_list_is_not_compared_and_a_rebuilt_layer_is_one_change():
    """A listing that failed is never read as "everything removed"; a step whose layer came out
    different is that step rebuilt; a package of two architectures is two packages."""
    from rendergate.release.review import layer_changes, package_changes

    old = _contents([("apt", "2.6"), ("libc6", "2.36", "amd64")], [("numpy", "1.0")],
                    layers=[("", 80, "sha256:base"), ("RUN make", 10, "sha256:made-1"), ("RUN gone", 5, "sha256:gone")])
    new = _contents([("libc6", "2.36", "amd64"), ("libc6", "2.36", "i386")], [("numpy", "1.0")],
                    layers=[("", 80, "sha256:base"), ("RUN make", 12, "sha256:made-2"), ("RUN more", 3, "sha256:more")])
    found = {(c.name, c.change) for c in package_changes(old, new, set())}
    assert found == {("apt", "removed"), ("libc6:i386", "added")}
    assert package_changes(old, new, set(), debs=False) == []
    said = [(c.change, c.created_by) for c in layer_changes(old, new)]
    assert sorted(said) == [("added", "RUN more"), ("rebuilt", "RUN make"), ("removed", "RUN gone")]


def test_the_review_says_what_it_could_not_compare(base_verdict):
    from rendergate.core.contents import SbomError
    from rendergate.core.verdict import Verdict
    from rendergate.release.review import review

    verdict = Verdict.from_json(deepcopy(base_verdict))
    failed = _contents(unread={"packages": "dpkg-query failed: no"})
    said = review(verdict, failed, verdict, _contents([("apt", "2.6")]))
    assert said.packages == [] and said.unread == ["packages of the candidate image: dpkg-query failed: no"]
    said = review(verdict, _contents(wheels=[("x", "1")], python="/opt/venv/bin/python"), verdict, _contents())
    assert [c.line() for c in said.config] == ["Python interpreter: /usr/bin/python3 -> /opt/venv/bin/python"]
    assert said.packages == [] and "listed for /usr/bin/python3 in the promoted image" in said.unread[0]
    secret = review(verdict, _contents(env={"API_TOKEN": "[redacted]"}), verdict, _contents(env={"API_TOKEN": "[redacted]"}))
    assert secret.config == secret.unread == [] and "ENV API_TOKEN: a secret's value, redacted in both" in secret.hidden[0]
    assert "API_TOKEN" not in secret.headline() and "not shown: ENV API_TOKEN" in "\n".join(secret.lines())
    cuda_unlisted = _contents(unread={"cuda_runtime": "ldconfig -p did not finish within 5 s"})
    listed = _contents()
    listed.cuda_runtime = ["libcudart.so.12"]
    said = review(verdict, cuda_unlisted, verdict, listed)
    assert said.config == [] and said.unread == ["cuda_runtime of the candidate image: ldconfig -p did not finish within 5 s"]
    hostless = Verdict.from_json(deepcopy(base_verdict))
    hostless.image = None
    nothing = review(hostless, SbomError("x: a verdict about no image"), hostless, SbomError("y: a verdict about no image"))
    assert nothing.headline().startswith("Changes since promoted image (none named): not compared: packages")


def test_an_image_whose_dpkg_query_is_broken_has_its_packages_not_compared(review_images, engine, tmp_path):
    """A damaged image (its dpkg-query exits 2): the review never reads that as "every package
    removed"; it says the packages were not compared, and why, and still shows the rest."""
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "Dockerfile").write_text(f"FROM {review_images['candidate']}\n"
                                       "RUN printf '#!/bin/sh\\nexit 2\\n' > /usr/local/bin/dpkg-query && chmod +x /usr/local/bin/dpkg-query\n")
    broken = "rendergate-test/review:broken-dpkg"
    engine.client.images.build(path=str(folder), tag=broken, rm=True, forcerm=True)
    try:
        promoted_dir = tmp_path / "promoted"
        first = _validate(tmp_path, "first", review_images["promoted"], promoted_dir)
        assert rendergate_cli(*VARIANT, "promote", "review", f"--image={review_images['promoted']}",
                              "--to=rendergate-test/review:released", f"--promoted={promoted_dir}", reports=first.reports,
                              timeout=CLI_TIMEOUT).returncode == 0
        second = _validate(tmp_path, "second", broken, promoted_dir)
        said = json.loads(rendergate_cli("diff", "review", "--json", f"--promoted-dir={promoted_dir}",
                                         reports=second.reports).stdout)
        assert said["packages"] == [] and said["unread"] == ["packages of the candidate image: dpkg-query failed (exit 2)"]
        assert said["config"] == CONFIG and "not compared: packages of the candidate image" in said["headline"]
    finally:
        engine.client.images.remove(broken)
