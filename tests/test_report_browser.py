"""The HTML reports in a real headless browser (Debian's chromium): they load offline, the matrix
and the pictures render, videos have a source that plays, and a mismatch shows new / reference /
diff. The reports come from real runs of the suites on real images."""
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import BASE_IMAGE, ROOT, SUITE_TIMEOUT, bounded, read_verdicts, rendergate_cli
from rendergate.core.outcomes import State
from rendergate.pages import HOST_ROWS, LABELS, SUMMARY_LINES

PASS_COLOUR = (0xC8, 0xF0, 0xC8)  # rendergate.pages.CSS's .rg-passed


def run_with_report(reports: Path, *args: str) -> Path:
    bounded([sys.executable, "-m", "pytest", "suites", "-q", f"--reports-dir={reports}", f"--html={reports / 'report.html'}",
             "--self-contained-html", f"--base-image={BASE_IMAGE}", *args], SUITE_TIMEOUT, cwd=ROOT)
    return reports / "report.html"


def open_report(browser, path: Path) -> None:
    browser.get(path.resolve().as_uri())
    deadline = time.monotonic() + 30  # chromium renders a report of 400 rows in 0.41 s (README, "Measured here")
    while browser.execute_script("return document.querySelectorAll('#results-table tbody').length") == 0:
        assert time.monotonic() < deadline, f"{path}: the results table never rendered"
        time.sleep(0.2)
    browser.find_element("id", "show_all_details").click()


def loaded_pictures(browser, selector: str) -> list[int]:
    """Widths of the decoded pictures matching `selector`; a broken one has width 0."""
    return browser.execute_script(
        f"return [...document.querySelectorAll('{selector}')].map(i => i.complete ? i.naturalWidth : 0)")


@pytest.fixture(scope="module")
def good_report(good_images, tmp_path_factory):
    reports = tmp_path_factory.mktemp("good-report")
    path = run_with_report(reports, "--variant=xorg-glx", "--variant=manim", "--allow-no-gpu", "-n", "2",
                           "-k", "test_glx_answers or test_manim_scene_renders or test_mathtex_renders or test_nvidia_smi_and_nvml_agree")
    return path, read_verdicts(reports)


def test_matrix_shows_every_check_with_its_outcome(browser, good_report):
    path, verdicts = good_report
    open_report(browser, path)
    cells = browser.execute_script(
        "return [...document.querySelectorAll('#rg-matrix td.rg-cell a')].map(a => [a.getAttribute('href'), a.textContent])")
    expected = {f"#{c['anchor']}": LABELS[c["outcome"]] for v in verdicts.values() for c in v["checks"]
                if c["outcome"] != "not-declared"}
    assert dict(cells) == expected
    first_link = cells[0][0]
    browser.find_element("css selector", f'#rg-matrix a[href="{first_link}"]').click()
    assert browser.execute_script("return decodeURIComponent(location.hash)") == first_link
    assert browser.execute_script("return document.getElementById(arguments[0]) !== null", first_link[1:])
    matrix = browser.find_element("id", "rg-matrix")
    browser.execute_script("arguments[0].scrollIntoView()", matrix)  # the click scrolled it partly away
    shot = np.asarray(Image.open(io.BytesIO(matrix.screenshot_as_png)).convert("RGB"))
    assert (np.abs(shot.astype(int) - PASS_COLOUR).sum(axis=2) < 8).sum() > 100, "no pass cell was painted"


def shown_summary(browser) -> dict[str, dict]:
    """Per variant, what the report's summary block says, and where it sits on the page."""
    return {b["variant"]: b for b in browser.execute_script("""
        return [...document.querySelectorAll('#rg-summary .rg-verdict')].map(b => ({
            variant: b.dataset.variant, state: b.dataset.state, head: b.querySelector('b').textContent,
            lines: [...b.querySelectorAll('li')].map(l => l.textContent), top: b.getBoundingClientRect().top}))""")}


def test_the_first_screen_says_what_to_do(browser, good_report):
    """Before any detail: the banner, then per variant its state and at most a few lines, with
    the reasons grouped; here nothing failed, so the state is NOT VALIDATED and never FAIL. The
    checks of requirements a variant does not declare get no rows of their own."""
    path, verdicts = good_report
    open_report(browser, path)
    browser.execute_script("window.scrollTo(0, 0)")
    banner = browser.find_element("id", "rg-banner").text
    assert banner.startswith("Complete run: NOT VALIDATED") and "FAIL" not in banner, banner
    blocks = shown_summary(browser)
    assert set(blocks) == set(verdicts)
    matrix_top = browser.execute_script("return document.getElementById('rg-matrix').getBoundingClientRect().top")
    height = browser.execute_script("return window.innerHeight")
    for name, verdict in verdicts.items():
        block = blocks[name]
        assert block["state"] == verdict["state"] == "not-validated", block
        assert block["head"].endswith(f": {State.NOT_VALIDATED.label}") and block["top"] < min(matrix_top, height)
        assert block["lines"][:SUMMARY_LINES] == verdict["summary"][:SUMMARY_LINES] and len(block["lines"]) <= SUMMARY_LINES + 1
        assert not any(line.startswith("FAILED") for line in block["lines"])
    manim = " ".join(blocks["manim"]["lines"])
    assert "no NVIDIA GPU on the host it ran on: run it on a GPU host" in manim and manim.count("no NVIDIA GPU") == 1
    rows = browser.execute_script("return [...document.querySelectorAll('#results-table .col-testId')].map(c => c.textContent)")
    undeclared = {c["nodeid"] for v in verdicts.values() for c in v["checks"] if c["outcome"] == "not-declared"}
    assert undeclared and rows and not undeclared & {r.split("::setup")[0] for r in rows}


def media_shown(browser, media) -> tuple[str, float]:
    """What a check's media viewer shows now, once loaded: ("image", its decoded width) or
    ("video", its duration); 0 when it did not load."""
    deadline = time.monotonic() + 20
    while True:
        kind, value = browser.execute_script("""
            const m = arguments[0], img = m.querySelector('img'), video = m.querySelector('video');
            if (!img.classList.contains('hidden')) return ['image', img.complete ? img.naturalWidth : 0];
            if (video.readyState === 0 && !video.dataset.rgLoading) { video.dataset.rgLoading = '1'; video.load(); }
            return ['video', video.readyState >= 1 ? video.duration : 0];""", media)
        if value or time.monotonic() > deadline:
            return kind, value
        time.sleep(0.2)


def test_every_picture_renders_and_the_video_plays(browser, good_report):
    """Each check's media viewer, stepped through: the Xorg screenshot, the Manim video (embedded,
    with its source) and the Manim last frame."""
    path, _ = good_report
    open_report(browser, path)
    shown = []
    for media in browser.find_elements("css selector", ".media"):
        count = media.find_element("css selector", ".media__counter").text
        total = int(count.split("/")[1]) if count else 0
        for _ in range(total):
            shown.append((media.find_element("css selector", ".media__name").text, *media_shown(browser, media)))
            if total > 1:
                media.find_element("css selector", ".media-container__nav--right").click()
    assert sorted(name for name, _, _ in shown) == ["manim-480p15-last-frame-new.png", "manim-480p15.mp4", "xorg-screenshot.png"]
    assert all(value > 0 for _, _, value in shown), shown
    sources = browser.execute_script("return [...document.querySelectorAll('video source')].map(s => s.getAttribute('src')).filter(s => s)")
    assert sources and all(s.startswith("data:video/mp4;base64,") for s in sources)


def test_a_mismatch_shows_new_reference_and_diff(browser, known_bad_image, tmp_path):
    path = run_with_report(tmp_path, "--variant=blender", f"--image={known_bad_image('cycles-render-tampered')}",
                           "-k", "test_cycles_frame_on_cpu")
    open_report(browser, path)
    captions = browser.execute_script(
        "return [...document.querySelectorAll('.rg-comparison figcaption')].map(f => f.textContent)")
    assert captions == ["new", "reference", "diff"]
    assert all(loaded_pictures(browser, ".rg-comparison img"))
    assert "differs from its reference" in browser.find_element("id", "rg-matrix").get_attribute("innerHTML")
    blender = shown_summary(browser)["blender"]
    assert blender["state"] == "failed" and blender["head"].endswith(": FAILED")
    assert blender["lines"][0].startswith("FAILED workloads.") and "differs from its reference" in blender["lines"][0]


def test_merged_report_of_two_hosts(browser, tmp_path):
    """A real verdict from the H100 (tests/data/verdicts) and one made here, on no GPU."""
    run_with_report(tmp_path / "here", "--variant=host", "--allow-no-gpu")
    h100 = ROOT / "tests" / "data" / "verdicts" / "h100-host.json"
    merged = tmp_path / "merged.html"
    done = rendergate_cli("merge", str(h100), str(tmp_path / "here"), f"--out={merged}")
    assert done.returncode == 0, done.stderr
    verdicts = json.loads(merged.with_suffix(".json").read_text())["verdicts"]
    browser.get(merged.as_uri())
    headers = browser.execute_script("return [...document.querySelectorAll('#rg-matrix thead tr:first-child th')].map(t => t.textContent)")
    assert sorted(headers[2:]) == sorted(f"host \u00b7 {v['host']['gpu_type']}" for v in verdicts)
    states = browser.execute_script("return [...document.querySelectorAll('#rg-matrix thead tr:nth-child(2) td')].map(t => t.textContent)")
    by_type = {v["host"]["gpu_type"]: v for v in verdicts}
    order = [h.split(" \u00b7 ")[1] for h in headers[2:]]
    # The H100's verdict predates `state`: the report judges its checks again, as for any verdict.
    assert states == [State(by_type[t].get("state", "passed" if by_type[t].get("passed") else "failed")).label
                      for t in order]
    column = [key for key, _ in HOST_ROWS].index("driver")
    drivers = browser.execute_script("return [...document.querySelectorAll('.rg-env tbody tr')].map(r => r.cells[arguments[0]].textContent)", column)
    assert sorted(drivers) == sorted(v["host"]["driver"] for v in verdicts)
