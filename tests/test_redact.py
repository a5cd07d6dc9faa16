"""Secrets are blanked by their value (secret-named variables seen in the environment or given
to containers) and by their shape (NAME=value, credentials in URLs, known token formats), while
the text around them, and ordinary text, stay readable."""
import pytest

from rendergate.core.redact import REDACTED, redact, remember_secrets

CASES = [
    ("HF_TOKEN=hf_aaaabbbbccccddddeeeeffffgggg1234 python render.py", "HF_TOKEN=", "hf_aaaabbbb"),
    ('{"api_key": "k-93jd8s7f6g5h", "queue": "farm-a"}', '"queue": "farm-a"', "k-93jd8s7f6g5h"),
    ("git clone https://render-bot:pw-7c1e55aa90@git.example.com/s/r.git", "https://render-bot:", "pw-7c1e55aa90"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "Authorization: Bearer", "eyJhbGci"),
    ("modal token set --token-id ak-3nd8FkD9sl2MzQ0aPq --token-secret as-Zq8Lp2Wn5Xr7Tb4Kc9", "modal token set",
     "as-Zq8Lp2Wn5Xr7Tb4Kc9"),
    ("docker login --password hunter2hunter2 registry.example.com", "registry.example.com", "hunter2hunter2"),
    ("AWS_SECRET_ACCESS_KEY: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "AWS_SECRET_ACCESS_KEY:", "wJalrXUtnFEMI"),
]
KEPT = [
    "libnvidia-encode.so.1 missing: the container lacks NVIDIA_DRIVER_CAPABILITIES=video [driver-capability-missing]",
    "Stream #0:0: Video: h264 (High), yuv420p, 1920x1080, 30 fps; tokens per frame: 12",
    "sha256:5b9ae0398676f94b0ec95d464e94b2b0eb913f6541bf638e450a36f97e6e942d",
]


@pytest.mark.parametrize("text, kept, secret", CASES)
def test_secret_shapes_are_blanked(text, kept, secret):
    out = redact(text)
    assert secret not in out and REDACTED in out
    assert kept in out


@pytest.mark.parametrize("text", KEPT)
def test_ordinary_text_is_left_alone(text):
    assert redact(text) == text


def test_a_remembered_value_is_blanked_wherever_it_appears():
    remember_secrets({"RENDER_FARM_PASSWORD": "plain words 42", "RENDER_QUEUE": "farm-a"})
    out = redact("connecting as plain words 42 to farm-a")
    assert "plain words 42" not in out and "farm-a" in out
