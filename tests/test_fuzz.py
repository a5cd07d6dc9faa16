"""What users type, fuzzed: hypothesis writes hundreds of malformed manifests (random structures,
our own manifests with one value replaced, raw bytes) and tampered verdicts, and rendergate must
answer each with a result or one line naming the file: never a traceback, never a hang (each
case runs under an alarm). New examples every run; a failure prints the example to replay."""
import base64
import json
import tempfile
from copy import deepcopy
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import ROOT, at_most, written_verdict
from rendergate.__main__ import main as rendergate_main
from rendergate.core import judging
from rendergate.core import verdict as verdicts
from rendergate.core.driver_capabilities import needed
from rendergate.core.environment import suite_version
from rendergate.core.manifest import RUN, TOP_LEVEL, ManifestError, load_variant, sections
from rendergate.engines.modal import plan
from rendergate.release.promotion import Refused, gate

CASES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])
SECONDS = 10  # no single case may take longer
SECTIONS = sections()
KEYS = sorted({*TOP_LEVEL, *SECTIONS, *(k for table in SECTIONS.values() for k in table), "gpus", "Smoke", ""})
MANIFESTS = [(ROOT / "images" / name / "manifest.toml").read_text() for name in ("manim", "blender", "xorg-glx", "host")]


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
scalars = (st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True) | texts
           | st.sampled_from(["480p15", "1080p60", "320x180", "1g", "all", "none", "nvidia", "h264_nvenc", "CUDA",
                              "OPTIX", "video", "sleep", "infinity", "python3", "\x00", "a\nb", "١٢٣x٤٥٦"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                      | st.dictionaries(st.sampled_from(KEYS) | texts, inner, max_size=4), max_leaves=12)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {float("inf"): "inf", float("-inf"): "-inf"}.get(value, "nan" if value != value else repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(top: dict, sections: dict) -> str:
    lines = [f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}" for k, v in top.items()]
    for name, table in sections.items():
        lines.append(f"[{json.dumps(name)}]")
        lines += [f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


@st.composite
def random_manifests(draw) -> bytes:
    top = draw(st.dictionaries(st.sampled_from(sorted(TOP_LEVEL)) | texts, values, max_size=3))
    sections = draw(st.dictionaries(st.sampled_from(sorted(SECTIONS)), st.dictionaries(st.sampled_from(KEYS), values,
                                                                                         max_size=5), max_size=4))
    return toml_document({k: v for k, v in top.items() if k not in sections}, sections).encode()


@st.composite
def one_value_replaced(draw) -> bytes:
    """One of our own manifests, one key of it given another value (or a new key)."""
    import tomllib

    data = tomllib.loads(draw(st.sampled_from(MANIFESTS)))
    section = draw(st.sampled_from(sorted(SECTIONS)))
    table = data.setdefault(section, {})
    table[draw(st.sampled_from(sorted(SECTIONS[section])) if section != "run" else st.sampled_from(sorted(RUN)))] = draw(values)
    top = {k: v for k, v in data.items() if k not in SECTIONS}
    return toml_document(top, {k: v for k, v in data.items() if k in SECTIONS}).encode()


manifests = random_manifests() | one_value_replaced() | st.binary(max_size=300) | st.sampled_from([
    b"x = " + b"[" * 3000 + b"]" * 3000, b"\xff\xfe[\x00r\x00", "description = \"\u00e9\"".encode("latin-1")])


@CASES
@given(text=manifests)
def test_any_manifest_loads_or_is_refused_in_one_line_naming_its_file(tmp_path, text):
    folder = tmp_path / "fuzzed"
    folder.mkdir(exist_ok=True)
    (folder / "manifest.toml").write_bytes(text)
    with at_most(SECONDS):
        try:
            variant = load_variant(folder)
        except ManifestError as e:
            assert str(folder) in str(e) and "\n" not in str(e)
            event("refused: " + str(e).removeprefix(str(folder)).split(":")[1][:40])
            return
        event("loaded")
        # What loads, the rest of rendergate can use without a KeyError in the middle of a run.
        judging.declared_requirements(variant), needed(variant), variant.image_ref, variant.build_tag
        judging.manifest_digest(variant), plan(variant, "T4", None, 60, "run")


BASE = None


def base_verdict() -> dict:
    global BASE
    if BASE is None:  # written once, through our own code: one check per requirement of manim's manifest
        BASE = written_verdict(load_variant(ROOT / "images" / "manim"), {"gpu_type": "no GPU"},
                               image={"ref": "rendergate/manim:dev", "digest": "sha256:" + "a" * 64, "repo_digests": []})
    return deepcopy(BASE)


def _paths(node, prefix=()):
    yield prefix
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield from _paths(child, (*prefix, key))


@st.composite
def tampered_verdicts(draw) -> str:
    v = base_verdict()
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(v) if p]
        path = draw(st.sampled_from(paths))
        parent = v
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(values)
    return json.dumps(v, ensure_ascii=False)


OUTCOMES = ["passed", "failed", "error", "skipped", "no-gpu", "undecided", "unsupported", "not-declared", "not-applicable"]


@st.composite
def plausible_tampering(draw) -> str:
    """Edits that keep the verdict valid by its schema, so that the gate's own judgement is what
    is tried: outcomes changed, checks dropped, what it says it declared, proved or is about."""
    v = base_verdict()
    for _ in range(draw(st.integers(1, 5))):
        edit = draw(st.sampled_from(["outcome", "drop", "declared", "requirements", "summary", "about"]))
        if edit == "outcome" and v["checks"]:
            draw(st.sampled_from(v["checks"]))["outcome"] = draw(st.sampled_from(OUTCOMES))
        elif edit == "drop" and v["checks"]:
            v["checks"].remove(draw(st.sampled_from(v["checks"])))
        elif edit == "declared":
            v["declared"] = draw(st.lists(st.sampled_from(["gpu", "nvenc", "latex", "manimpango", "xorg"]), unique=True))
        elif edit == "requirements":
            v["requirements"] = {n: {"outcome": "passed", "checks": 1} for n in draw(st.lists(st.sampled_from(KEYS[:9])))}
        elif edit == "summary":
            v["state"], v["problems"], v["summary"], v["complete"] = "passed", [], [], draw(st.booleans())
        else:
            key, value = draw(st.sampled_from([("variant", "text-only"), ("manifest", "sha256:" + "0" * 64),
                                               ("run_id", "another"), ("finished", None)]))
            v[key] = value
    return json.dumps(v)


verdict_texts = plausible_tampering() | tampered_verdicts() | st.text(max_size=200) | st.sampled_from(
    ["[]", "{}", "null", '{"schema": 1}', '{"schema": 1, "checks": "all"}', "[" * 5000 + "]" * 5000, "NaN"])


@CASES
@given(text=verdict_texts)
def test_any_verdict_is_judged_or_refused_in_one_line_naming_its_file(tmp_path, text, capsys):
    path = tmp_path / "verdicts" / "manim.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    manim = load_variant(ROOT / "images" / "manim")
    with at_most(SECONDS):
        try:
            gate(path, manim, "sha256:" + "a" * 64)
            event("passed the gate")
            proven(json.loads(text), manim)
        except Refused:
            event("refused by the gate")
        except verdicts.VerdictError as e:
            assert str(path) in str(e) and "\n" not in str(e)
            event("not a valid verdict")
        if _loads(path):  # what promotion judges besides, on a verdict that loads
            judging.promotion_problems(verdicts.load(path), manim, "sha256:" + "a" * 64, suite_version(), timedelta(days=7))
        status = rendergate_main(["merge", str(path), f"--out={tmp_path / 'merged.html'}"])
    assert status in (0, 2)
    err = capsys.readouterr().err
    assert "Traceback" not in err and (status == 0 or str(path) in err)


def _loads(path) -> bool:
    try:
        verdicts.load(path)
        return True
    except verdicts.VerdictError:
        return False


def proven(v: dict, variant) -> None:
    """What a pass must mean, said independently of the gate's code: a complete run about this
    variant, manifest and image, and every check run of the untampered verdict (a complete run of
    the manifest) there again and passed (on "no GPU", no check may say unsupported)."""
    assert v["complete"] and v["variant"] == variant.name and v["manifest"] == judging.manifest_digest(variant)
    assert v["image"]["digest"] == "sha256:" + "a" * 64
    passed = {(c["requirement"], c["check"], c["item"], c["nodeid"]) for c in v["checks"] if c["outcome"] == "passed"}
    for c in base_verdict()["checks"]:
        assert (c["requirement"], c["check"], c["item"], c["nodeid"]) in passed, c


def test_the_untampered_base_verdict_passes(tmp_path):
    """The base the verdicts are tampered from is a verdict the gate passes (else the fuzz proves little)."""
    path = tmp_path / "manim.json"
    path.write_text(json.dumps(base_verdict()))
    assert gate(path, load_variant(ROOT / "images" / "manim"), "sha256:" + "a" * 64)[0].startswith("GATE PASSED manim")


@st.composite
def trimmed_runs(draw) -> tuple[dict, list[dict]]:
    """A complete run of manim's manifest with some of its check runs left out, as -k, -m,
    --deselect, a crashed worker or a module that did not import leave a run, its summary said to
    pass; and the runs left out."""
    v = base_verdict()
    gone = draw(st.lists(st.sampled_from(range(len(v["checks"]))), min_size=1, unique=True))
    left_out = [v["checks"][i] for i in gone]
    v["checks"] = [c for i, c in enumerate(v["checks"]) if i not in gone]
    v["selection"] = draw(st.sampled_from([{}, {"keyword": "not hevc"}, {"markexpr": "not needs_gpu"},
                                           {"deselect": ["suites/test_nvenc.py::test_encoder_listed"]},
                                           {"collection_errors": ["suites/test_latex.py: ImportError: nope"]}]))
    if draw(st.booleans()):  # what a tamperer adds: the run's own account of what it expected, emptied
        v["expected"] = []
    v["requirements"] = {n: {"outcome": "passed", "checks": 1} for n in v["declared"]}
    v["state"], v["problems"], v["summary"] = "passed", [], []
    return v, left_out


@CASES
@given(trimmed=trimmed_runs())
def test_a_trimmed_run_never_passes_and_the_gate_names_what_did_not_run(tmp_path, trimmed):
    verdict, left_out = trimmed
    path = tmp_path / "manim.json"
    path.write_text(json.dumps(verdict))
    manim = load_variant(ROOT / "images" / "manim")
    with at_most(SECONDS), pytest.raises(Refused) as refused:
        gate(path, manim, "sha256:" + "a" * 64)
    text = str(refused.value)
    assert "NOT VALIDATED" in text.splitlines()[0]
    named = [c for c in left_out if (c["check"] + (f"[{c['item']}]" if c["item"] else "")) in text]
    assert named or "failed to collect" in text, text
    event(f"{len(left_out)} runs left out")


@st.composite
def envelopes(draw) -> bytes:
    """What promotion and verify may be handed as an attestation: a real envelope whose statement
    was changed and signed again with the trusted key (its verdict tampered with, nested deep,
    given duplicate keys; its subject or predicate type replaced), or changed without signing;
    JSON of any shape, deep nesting, duplicate keys, bytes that are not UTF-8."""
    from securesystemslib.dsse import Envelope

    from rendergate.release import attestation

    envelope, _, signer = signed_once()
    envelope = json.loads(json.dumps(envelope))
    kind = draw(st.sampled_from(["signed", "signed", "field", "shape", "raw"]))
    if kind == "signed":
        statement = json.loads(base64.b64decode(envelope["payload"]))
        change = draw(st.sampled_from(["verdict", "deep", "subject", "type", "duplicate", "none"]))
        if change == "verdict":
            text = draw(verdict_texts)
            try:
                statement["predicate"] = json.loads(text)
            except (ValueError, RecursionError):
                statement["predicate"] = text
        elif change == "deep":
            statement["predicate"]["options"] = json.loads('{"a":' * 200 + "1" + "}" * 200)
        elif change == "subject":
            statement["subject"] = draw(st.sampled_from([[], [{"digest": {}}], "x", [{"digest": {"sha256": "cd" * 32}}]]))
        elif change == "type":
            statement["predicateType"] = draw(texts)
        payload = json.dumps(statement).encode()
        if change == "duplicate":  # the signed bytes say "complete" twice: which counts is a guess, so neither does
            payload = payload.replace(b'"complete": true', b'"complete": false, "complete": true', 1)
        resigned = Envelope(payload, attestation.PAYLOAD_TYPE, {})
        resigned.sign(signer)
        return json.dumps(resigned.to_dict()).encode()
    if kind == "field":
        key = draw(st.sampled_from(["payload", "payloadType", "signatures"]))
        if draw(st.booleans()):
            envelope.pop(key)
        else:
            envelope[key] = draw(values)
        return json.dumps(envelope).encode()
    if kind == "shape":
        return json.dumps(draw(values)).encode()
    return draw(st.sampled_from([b'{"payload": "a", "payload": "b"}', b"[" * 100000 + b"]" * 100000,
                                 b'{"a":' * 2000 + b"1" + b"}" * 2000, b"\xff\xfe{}", b"", b"NaN"]))


SIGNED = []


def signed_once() -> tuple[dict, Path, object]:
    """A real envelope of the base verdict, signed with a key made once per run; the public key; the signer."""
    from test_attestation import key_pair

    from rendergate.release import attestation

    if not SIGNED:
        private, public = key_pair(Path(tempfile.mkdtemp(prefix="rendergate-fuzz-keys-")), "ed25519")
        signer = attestation.private_key(private)
        SIGNED.extend([attestation.attest(base_verdict(), [("rendergate/manim:dev", DIGEST)], signer), public, signer])
    return tuple(SIGNED)


DIGEST = "sha256:" + "ab" * 32


@CASES
@given(data=envelopes())
def test_any_envelope_is_verified_or_refused_in_one_line(tmp_path, data):
    """What promotion does with the gate's attestation before it touches any image: read it, verify
    it with the trusted key, validate and judge the verdict it holds."""
    from rendergate.release import attestation

    path = tmp_path / "manim.intoto.json"
    path.write_bytes(data)
    with at_most(SECONDS):
        try:
            envelope = attestation.read(path)
            statement = attestation.verify(envelope, attestation.public_key(signed_once()[1]), DIGEST, str(path))
            judging.judge(verdicts.checked(statement["predicate"], f"{path} (its verdict)"))
            event("verified")
        except (attestation.AttestationError, verdicts.VerdictError) as e:
            assert str(path) in str(e) and "\n" not in str(e)
            event("refused: " + str(e).removeprefix(str(path)).split("(")[0][:40])


@pytest.mark.parametrize("out", ["folder", "/proc/no/such/place.html", "merged.txt"])
def test_merge_into_a_folder_or_an_impossible_path_is_one_line(tmp_path, out, capsys):
    path = tmp_path / "manim.json"
    path.write_text(json.dumps(base_verdict()))
    (tmp_path / "folder").mkdir()
    target = str(tmp_path / out) if not out.startswith("/") else out
    assert rendergate_main(["merge", str(path), f"--out={target}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rendergate: --out {target}") and err.count("\n") == 1


