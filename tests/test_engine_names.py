"""Naming an engine as Docker does (--engine URL|CONTEXT, DOCKER_HOST with its TLS settings, the
docker context), and reading another host's GPUs from its /proc, without a second engine."""
from __future__ import annotations

import re
import subprocess

import pytest

from rendergate.engines import endpoint as endpoints
from rendergate.engines.endpoint import Endpoint, EndpointError, resolve, unreachable
from rendergate.engines.engine_host import parse_probe

from conftest import rendergate_cli, require_tool


@pytest.fixture(autouse=True)
def fresh(monkeypatch, tmp_path):
    """No engine named by this process's environment, a docker config of the test's own, and
    nothing resolved before."""
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    resolve.cache_clear()
    yield
    resolve.cache_clear()


def test_the_default_is_the_local_socket():
    found = resolve()
    assert (found.url, found.local, found.label) == (endpoints.DEFAULT_SOCKET, True, "local")


def test_docker_host_with_its_tls_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", "tcp://gpu-07.example:2376")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path))
    with pytest.raises(EndpointError, match=f"{tmp_path} must hold ca.pem, cert.pem and key.pem"):
        resolve()
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).touch()
    resolve.cache_clear()
    found = resolve()
    assert found.source == "DOCKER_HOST" and not found.local and found.label == "gpu-07.example-2376"
    assert found.tls == (str(tmp_path / "ca.pem"), str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"), True)
    assert found.place == "gpu-07.example:2376"


def test_an_engine_named_by_url():
    found = resolve("ssh://ci@gpu-07:2222")
    assert (found.scheme, found.label, found.place, found.tls) == ("ssh", "gpu-07-2222", "ci@gpu-07:2222", None)
    with pytest.raises(EndpointError, match="not an engine's URL"):
        resolve("ftp://gpu-07")


def test_a_docker_context_by_name_and_as_the_current_one(monkeypatch):
    """Real contexts, made by the docker CLI into this test's docker config."""
    require_tool("docker", "docker.io")
    subprocess.run(["docker", "context", "create", "gpu-box", "--docker", "host=ssh://ci@gpu-07"], check=True,
                   capture_output=True)
    found = resolve("gpu-box")
    assert (found.url, found.context, found.label, found.source) == ("ssh://ci@gpu-07", "gpu-box", "gpu-box",
                                                                     "docker context gpu-box")
    subprocess.run(["docker", "context", "use", "gpu-box"], check=True, capture_output=True)
    resolve.cache_clear()
    assert resolve().context == "gpu-box"
    monkeypatch.setenv("DOCKER_CONTEXT", "default")  # DOCKER_CONTEXT wins over the current context, as for the CLI
    resolve.cache_clear()
    assert resolve().url == endpoints.DEFAULT_SOCKET
    with pytest.raises(EndpointError, match=r"no such docker context \(known: default, gpu-box\)"):
        resolve("gpu-08")


def test_a_stopped_local_engine_says_how_to_start_it(tmp_path):
    line = unreachable(resolve(f"unix://{tmp_path}/docker.sock"), FileNotFoundError(2, "No such file or directory"))
    assert line.startswith(f"Docker engine not reachable at unix://{tmp_path}/docker.sock (no engine answers on")
    assert "dockerd" in line


# /proc/driver/nvidia as NVIDIA's driver writes it (its README, "Procfs interface"), with the PCI
# device id /sys gives: a stand-in, since no NVIDIA driver is loaded on this machine. The real path is
# the probe container of rendergate.engines.engine_host, run on a remote engine's host.
NVIDIA_PROC = """module: NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024
gpu: 0000:17:00.0
Model: \t\t NVIDIA H100 80GB HBM3
IRQ:   \t\t 0
GPU UUID: \t GPU-5f1b1b2c-8f3d-4c47-a1f5-2e1f0c1d2e3f
Video BIOS: \t 96.00.74.00.0d
Bus Type: \t PCIe
DMA Size: \t 52 bits
DMA Mask: \t 0xfffffffffffff
Bus Location: \t 0000:17:00.0
Device Minor: \t 0
GPU Excluded:\t No
PCI device: 0x2330
pci: 1
toolkit: NVIDIA Container Toolkit CLI version 1.14.6
"""


def test_another_hosts_gpus_from_its_proc():
    nvml, why, toolkit = parse_probe(NVIDIA_PROC)
    assert why == "" and toolkit == "NVIDIA Container Toolkit CLI version 1.14.6"
    assert nvml["driver_version"] == "550.54.15"
    [gpu] = nvml["gpus"]
    assert (gpu["name"], gpu["pci_bus_id"], gpu["pci_device_id"], gpu["uuid"]) == (
        "NVIDIA H100 80GB HBM3", "0000:17:00.0", "2330", "GPU-5f1b1b2c-8f3d-4c47-a1f5-2e1f0c1d2e3f")


def test_a_host_with_a_gpu_but_no_driver_says_so():
    assert parse_probe("module: \npci: 2\ntoolkit: \n") == (
        None, "2 NVIDIA GPU(s) on its PCI bus, but no NVIDIA kernel module loaded: install the driver there", "")
    assert parse_probe("module: \npci: 0\ntoolkit: \n")[1] == "no NVIDIA GPU on its PCI bus"


def test_an_endpoint_travels_as_its_name():
    """Workers resolve the engine from the name the run was given: the same engine in every process."""
    assert resolve("tcp://10.0.0.7:2375") == Endpoint("tcp://10.0.0.7:2375", "--engine", named="tcp://10.0.0.7:2375")


def test_the_open_kernel_modules_version_line_is_read_too():
    """R560 and later load NVIDIA's open kernel module by default: its version line differs."""
    nvml, why, _ = parse_probe(NVIDIA_PROC.replace("NVIDIA UNIX x86_64 Kernel Module  550.54.15",
                                                   "NVIDIA UNIX Open Kernel Module for x86_64  560.35.03"))
    assert why == "" and nvml["driver_version"] == "560.35.03"


@pytest.mark.parametrize("url, words", [
    ("ssh://gpu-07:notaport", "not an engine's URL (Port could not be cast to integer value"),
    ("tcp://127.0.0.1:99999", "not an engine's URL (Port out of range"),
    ("tcp://[::1", "not an engine's URL (Invalid IPv6 URL)"),
    ("tcp://gpu-07", "name the engine's port (tcp://HOST:2376 with TLS, :2375 without)"),
    ("ssh://", "not an engine's URL"),
])
def test_a_malformed_engine_url_is_one_line_naming_where_it_was_said(url, words, monkeypatch):
    with pytest.raises(EndpointError, match=re.escape(f"--engine {url}: {words}")):
        resolve(url)
    monkeypatch.setenv("DOCKER_HOST", url)
    with pytest.raises(EndpointError, match=re.escape(f"DOCKER_HOST {url}: {words}")):
        resolve()


@pytest.mark.parametrize("args, words", [
    (["--engine=tcp://a:2376", "--engine=tcp://a:2376"], "--engine: tcp://a:2376, tcp://a:2376 name one engine twice"),
    (["--engine=tcp://a:2376", "--gpu=T4"], "--engine with --gpu: a Modal matrix runs on Modal"),
])
def test_the_gate_refuses_engines_it_cannot_bind_in_one_line(args, words):
    done = rendergate_cli("gate", "xorg-glx", *args)
    assert done.returncode != 0 and words in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
