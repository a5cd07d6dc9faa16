"""Signed attestations, in-process: the verdict as an in-toto Statement in a DSSE envelope,
signed with ed25519 and ECDSA keys made here; a changed envelope, another key and an attestation
about another image are each refused in one line. (Through the gate, promotion and a real
registry on loopback: tests/test_gate.py.)"""
import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from conftest import ROOT, rendergate_cli, written_verdict
from rendergate.core.manifest import load_variant
from rendergate.release import attestation

DIGEST = "sha256:" + "ab" * 32


def key_pair(tmp_path, kind: str):
    private = ed25519.Ed25519PrivateKey.generate() if kind == "ed25519" else ec.generate_private_key(ec.SECP256R1())
    (tmp_path / f"{kind}.pem").write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                                 serialization.NoEncryption()))
    (tmp_path / f"{kind}.pub").write_bytes(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                                             serialization.PublicFormat.SubjectPublicKeyInfo))
    return tmp_path / f"{kind}.pem", tmp_path / f"{kind}.pub"


def signed(tmp_path, kind="ed25519", digest=DIGEST):
    private, public = key_pair(tmp_path, kind)
    verdict = written_verdict(load_variant(ROOT / "images" / "manim"), {"gpu_type": "no GPU"})
    return attestation.attest(verdict, [("rendergate/manim:dev", digest)], attestation.private_key(private)), public


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa"])
def test_a_signed_verdict_verifies_with_its_key_and_says_what_it_is_about(tmp_path, kind):
    envelope, public = signed(tmp_path, kind)
    statement = attestation.verify(envelope, attestation.public_key(public), DIGEST, "here")
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"] == [{"name": "rendergate/manim:dev", "digest": {"sha256": DIGEST[7:]}}]
    assert statement["predicateType"] == attestation.PREDICATE_TYPE and statement["predicate"]["variant"] == "manim"
    assert envelope["payloadType"] == "application/vnd.in-toto+json" and len(envelope["signatures"]) == 1


def _changed(envelope):
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["state"] = "passed"
    statement["predicate"]["checks"] = []
    return {**envelope, "payload": base64.b64encode(json.dumps(statement).encode()).decode()}


def test_a_changed_envelope_is_refused(tmp_path):
    envelope, public = signed(tmp_path)
    with pytest.raises(attestation.AttestationError) as e:
        attestation.verify(_changed(envelope), attestation.public_key(public), DIGEST, "here")
    assert str(e.value) == ("here: the signature does not verify with the trusted key (another key signed it, or the "
                            "envelope was changed after signing)")


def test_another_key_is_refused(tmp_path):
    envelope, _ = signed(tmp_path)
    _, other = key_pair(tmp_path, "ecdsa")
    with pytest.raises(attestation.AttestationError) as e:
        attestation.verify(envelope, attestation.public_key(other), DIGEST, "here")
    assert "the signature does not verify with the trusted key" in str(e.value)


def test_an_attestation_of_another_image_is_refused(tmp_path):
    envelope, public = signed(tmp_path, digest="sha256:" + "cd" * 32)
    with pytest.raises(attestation.AttestationError) as e:
        attestation.verify(envelope, attestation.public_key(public), DIGEST, "here")
    assert f"here: the attestation is about sha256:{'cd' * 32}, not this image ({DIGEST})" == str(e.value)


@pytest.mark.parametrize("text, words", [
    ("not a key", "not an unencrypted PEM private key"),
    (None, "no such file"),
])
def test_a_bad_signing_key_is_one_line(tmp_path, text, words):
    path = tmp_path / "key.pem"
    if text is not None:
        path.write_text(text)
    with pytest.raises(attestation.AttestationError) as e:
        attestation.private_key(path)
    assert str(e.value).startswith(f"signing key {path}: {words}")


def test_the_signing_key_may_come_from_the_environment_and_is_never_shown(tmp_path, monkeypatch):
    from rendergate.core.redact import redact

    private, public = key_pair(tmp_path, "ed25519")
    monkeypatch.setenv(attestation.SIGNING_KEY_ENV, private.read_text())
    signer = attestation.private_key(None)
    assert signer is not None
    assert private.read_text().strip() not in redact(f"key: {private.read_text()}")


def test_verify_against_a_registry_that_is_not_there_is_one_line_at_once(tmp_path):
    import time

    _, public = key_pair(tmp_path, "ed25519")
    started = time.monotonic()
    done = rendergate_cli("verify", "127.0.0.1:9/studio/render:1.0", f"--key={public}")
    assert done.returncode == 1 and "its registry cannot be reached" in done.stderr and "Traceback" not in done.stderr
    assert time.monotonic() - started < 20  # at once: 0.9 s measured (a client retrying a dead address takes minutes)
