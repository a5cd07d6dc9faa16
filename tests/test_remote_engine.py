"""Validating on another machine's Docker engine, for real: a second engine on this machine
(Debian's docker.io in a container with its own hostname, storage and ssh host key:
tests/second_engine), reached over ssh and over tcp with TLS, as a CI runner reaches a GPU box.
What it cannot show is a GPU on that host: no GPU is here (the /proc reading of one is
tests/test_engine_names.py's)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from contextlib import closing

import pytest

from conftest import (
    BASE_IMAGE,
    INTERRUPTED_RUN_TIMEOUT,
    ROOT,
    SMALL_REPO,
    SUITE_TIMEOUT,
    WITH_SIGINT,
    busy_loop,
    end_tree,
    process_tree,
    read_verdicts,
    rendergate_cli,
    run_suite,
)
from rendergate.core.manifest import load_variant
from rendergate.engines.docker import DockerTarget
from rendergate.engines.docker_engine import LABEL_OWNER, Engine, EngineError, owner_label
from rendergate.engines.endpoint import resolve
from rendergate.engines.hostload import HostLoad, TargetLoad
from second_engine.engine import build_image, launch, make_pki, write_cert_path, write_ssh_home, write_ssh_key

HOSTNAME = "gpu-box-test"
LOCAL = "unix:///var/run/docker.sock"
SMALL = (f"--images-dir={SMALL_REPO / 'images'}", f"--checks={SMALL_REPO / 'checks'}", "--variant=small")


@pytest.fixture(scope="module")
def second_engine(engine, tmp_path_factory):
    """A second engine, with the base image moved in (its builds start FROM it, as a GPU box's pull
    theirs from a registry)."""
    build_image(engine.client, base_image=BASE_IMAGE)
    with launch(HOSTNAME, client=engine.client, parent=tmp_path_factory.mktemp("second-engine")) as remote:
        remote.load(BASE_IMAGE)
        with closing(remote.client()) as client:
            remote.engine_id = client.info()["ID"]
        yield remote


def _outcomes(verdict: dict) -> dict:
    return {(c["check"], c["item"]): c["outcome"] for c in verdict["checks"]}


def _containers_of(engine: Engine, pid: int) -> list[dict]:
    """The containers a run whose controller is `pid` owns on that engine."""
    return [c for c in engine.containers() if c["labels"].get(LABEL_OWNER) == owner_label(pid)]


def test_a_run_through_ssh_checks_what_a_local_run_checks_and_names_the_engines_host(second_engine, engine, tmp_path):
    """The image is built there (through ssh), its checks run there, and the verdict, the terminal
    and the report name that host and its engine: not this machine."""
    local = run_suite(tmp_path / "local", "--variant=xorg-glx", "--allow-no-gpu")
    reports = tmp_path / "ssh" / "reports"
    remote = run_suite(tmp_path / "ssh", "--variant=xorg-glx", "--allow-no-gpu", "-n", "2",
                       f"--html={reports / 'report.html'}", env=second_engine.ssh_env())
    there, here = remote.verdicts["xorg-glx"], local.verdicts["xorg-glx"]
    assert remote.complete and _outcomes(there) == _outcomes(here), remote.output
    assert "passed" in _outcomes(there).values()
    assert (there["host"]["host"], there["host"]["engine_id"]) == (HOSTNAME, second_engine.engine_id), there["host"]
    assert here["host"]["host"] == socket.gethostname() and here["host"]["engine_id"] != second_engine.engine_id
    assert there["host"]["docker_engine"].endswith(f"at {second_engine.ssh_url}")
    assert there["host"]["gpus"] == "none (no NVIDIA GPU on its PCI bus)"  # read on that host, by its own tools
    assert f"verdict xorg-glx on {HOSTNAME}: NOT VALIDATED" in remote.output
    assert f"no GPU ({HOSTNAME})" in (reports / "report.html").read_text()
    with closing(second_engine.client("tls")) as client:
        assert not client.containers.list(all=True, filters={"label": f"rendergate.run={there['run_id']}"})
    assert not remote.leftover and not local.leftover


def test_two_engines_are_two_cells_gated_and_merged_and_a_verdict_is_bound_to_its_engine(second_engine, tmp_path):
    """`--engine A --engine B`: a cell per engine (the second over tcp with TLS), each verdict about
    its engine's host; the matrix gate passes both, merge shows both, and a verdict of one engine
    is refused on the other."""
    tls = second_engine.tls_env()
    env = {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": tls["DOCKER_CERT_PATH"]}
    run = run_suite(tmp_path, *SMALL, "-n", "2", f"--engine={LOCAL}", f"--engine={second_engine.tcp_url}", env=env)
    label = f"127.0.0.1-{second_engine.tls_port}"
    assert sorted(run.verdicts) == sorted(["small@local", f"small@{label}"]), run.output
    hosts = {name: v["host"]["host"] for name, v in run.verdicts.items()}
    assert hosts == {"small@local": socket.gethostname(), f"small@{label}": HOSTNAME}
    assert all(v["state"] == "passed" for v in run.verdicts.values()), run.output
    reports = tmp_path / "reports"
    small = ("--images-dir", str(SMALL_REPO / "images"), "--checks", str(SMALL_REPO / "checks"))
    gated = rendergate_cli(*small, "gate", "small", f"--engine={LOCAL}", f"--engine={second_engine.tcp_url}",
                           reports=reports, env=env)
    assert gated.returncode == 0 and gated.stdout.count("GATE PASSED small") == 2, gated.stdout + gated.stderr
    assert f"({HOSTNAME})" in gated.stdout and f"({socket.gethostname()})" in gated.stdout
    merged = rendergate_cli("merge", str(reports), f"--out={tmp_path / 'merged.html'}", env=env)
    assert merged.returncode == 0, merged.stderr
    page = (tmp_path / "merged.html").read_text()
    assert "2 verdicts from 2 hosts" in page and f"on {HOSTNAME}" in page and f"on {socket.gethostname()}" in page
    # The remote verdict, handed to the gate of the local engine (where the same Dockerfile built the same image):
    (tmp_path / "alone" / "verdicts").mkdir(parents=True)
    shutil.copy(reports / "verdicts" / f"small@{label}.json", tmp_path / "alone" / "verdicts" / "small.json")
    refused = rendergate_cli(*small, "gate", "small", reports=tmp_path / "alone", env=env)
    assert refused.returncode == 1 and f"it ran on the engine of {HOSTNAME} ({second_engine.engine_id}), not on " \
        f"{LOCAL}" in refused.stderr, refused.stdout + refused.stderr
    there = rendergate_cli(*small, "gate", "small", f"--engine={second_engine.tcp_url}", reports=tmp_path / "alone",
                           env=env)
    assert there.returncode == 0 and "GATE PASSED small (" in there.stdout and f"({HOSTNAME})" in there.stdout, \
        there.stdout + there.stderr


def _line(url: str, monkeypatch, **env: str) -> str:
    """What rendergate says when it cannot reach the engine at `url` with this environment."""
    for name in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    resolve.cache_clear()
    try:
        with pytest.raises(EngineError) as refused:
            Engine(endpoint=resolve(url))
    finally:
        resolve.cache_clear()
    return str(refused.value)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_engine_that_cannot_be_reached_is_one_line_saying_why(second_engine, tmp_path, monkeypatch):
    """Each way an engine over ssh or tcp+TLS is out of reach, as rendergate says it: the line
    names the engine and the cause, and its advice fits that cause."""
    remote = second_engine
    known = (remote.home / ".ssh" / "known_hosts").read_text().splitlines()
    stranger = write_ssh_home(tmp_path / "stranger", port=remote.ssh_port, identity=remote.identity)
    assert "the ssh host key of 127.0.0.1 is not in ~/.ssh/known_hosts" in _line(remote.ssh_url, monkeypatch,
                                                                                   HOME=str(stranger))
    write_ssh_key(tmp_path / "other_key")
    impostor = write_ssh_home(tmp_path / "impostor", port=remote.ssh_port, identity=tmp_path / "other_key",
                              known_hosts=known)
    assert f"ssh refused the login to root@127.0.0.1:{remote.ssh_port} (wrong key or password)" in _line(
        remote.ssh_url, monkeypatch, HOME=str(impostor))
    closed = _free_port()
    assert f"nothing listens at root@127.0.0.1:{closed} (connection refused): is sshd running there" in _line(
        f"ssh://root@127.0.0.1:{closed}", monkeypatch, HOME=str(remote.home))
    other_ca = write_cert_path(tmp_path / "other-ca", remote.pki, ca=make_pki())
    assert "certificate is not signed by the CA in DOCKER_CERT_PATH's ca.pem" in _line(
        remote.tcp_url, monkeypatch, DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(other_ca))
    foreign_client = write_cert_path(tmp_path / "foreign-client", make_pki(), ca=remote.pki)
    assert "the engine refused this client's TLS certificate" in _line(
        remote.tcp_url, monkeypatch, DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(foreign_client))
    assert f"the engine at 127.0.0.1:{remote.tls_port} speaks TLS: set DOCKER_TLS_VERIFY=1" in _line(
        remote.tcp_url, monkeypatch)
    assert f"127.0.0.1:{remote.ssh_port} does not speak TLS: is it the engine's TLS port" in _line(
        f"tcp://127.0.0.1:{remote.ssh_port}", monkeypatch, DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(remote.cert_path))
    remote.set_docker_cli(False)
    try:
        assert "its shell has no `docker` command" in _line(remote.ssh_url, monkeypatch, HOME=str(remote.home))
    finally:
        remote.set_docker_cli(True)
    remote.stop_engine()
    try:
        assert "no engine answers there: start dockerd on it" in _line(remote.ssh_url, monkeypatch, HOME=str(remote.home))
        assert "closed the connection at once: is dockerd running there" in _line(
            remote.tcp_url, monkeypatch, **{k: v for k, v in remote.tls_env().items() if k != "DOCKER_HOST"})
    finally:
        remote.start_engine()
    # As a user meets it: the run stops before anything starts, with that one line and no traceback.
    refused = run_suite(tmp_path / "run", *SMALL, env={"HOME": str(impostor), "DOCKER_HOST": remote.ssh_url})
    said = refused.output.strip().splitlines()
    assert refused.returncode == 4 and len(said) == 1 and said[0].startswith(
        f"ERROR: Docker engine not reachable at {remote.ssh_url}: ssh refused the login"), refused.output


SLOW_CHECK = '''\
"""A check that takes a minute: the test interrupts the run inside it."""
from rendergate.core.requirements import declare
from rendergate.core.schema import boolean
from rendergate.plugin import requires

LINGERS = declare("lingers", boolean, "true or false", "a command that takes a minute runs in the image")
pytestmark = requires(LINGERS)


def test_lingers(target):
    target.run("sleep 60")
'''


def test_ctrl_c_leaves_no_container_on_either_engine(second_engine, engine, tmp_path):
    """Ctrl-C (SIGINT to the run's processes, as a terminal sends it) while a check runs on each
    engine: the run ends PARTIAL, and neither engine keeps a container of it."""
    images, checks = tmp_path / "images", tmp_path / "checks"
    shutil.copytree(SMALL_REPO / "images" / "small", images / "slow")
    (images / "slow" / "manifest.toml").write_text('[requirements]\nlingers = true\n\n[run]\ngpus = "none"\n'
                                                   'command = ["sleep", "infinity"]\n')
    checks.mkdir()
    (checks / "test_slow.py").write_text(SLOW_CHECK)
    reports = tmp_path / "reports"
    proc = subprocess.Popen(
        [*WITH_SIGINT, "-m", "pytest", "suites", "-q", "-n", "2", f"--images-dir={images}", f"--checks={checks}",
         f"--reports-dir={reports}", f"--base-image={BASE_IMAGE}", f"--engine={LOCAL}",
         f"--engine={second_engine.ssh_url}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "HOME": str(second_engine.home)})
    try:
        with closing(second_engine.client("tls")) as there:
            deadline = time.monotonic() + SUITE_TIMEOUT
            while not (_containers_of(engine, proc.pid) and there.containers.list(
                    filters={"label": f"{LABEL_OWNER}={owner_label(proc.pid)}"})):
                assert proc.poll() is None and time.monotonic() < deadline, "the run never started on both engines"
                time.sleep(0.5)
            time.sleep(3)  # each worker inside its check's minute
            for process in process_tree(proc.pid):
                process.send_signal(signal.SIGINT)
            output, _ = proc.communicate(timeout=INTERRUPTED_RUN_TIMEOUT)
            assert not _containers_of(engine, proc.pid), output
            assert not there.containers.list(all=True, filters={"label": f"{LABEL_OWNER}={owner_label(proc.pid)}"})
    finally:
        end_tree(proc)
    verdicts = read_verdicts(reports)
    assert len(verdicts) == 2 and not any(v["complete"] for v in verdicts.values()), output


@pytest.mark.serial  # alone among the tests: any other of them would count as outside load
def test_the_load_of_the_engines_host_is_read_in_the_container_there(second_engine, small_image, monkeypatch, tmp_path):
    """The host-load meter of a remote engine (TargetLoad: /proc/stat and the container's cgroup,
    read in the run's container there): a busy loop in that container is the run's own work, a busy
    loop elsewhere on that host (here: this machine, whose kernel the second engine shares) is
    outside load. Each is measured beside a meter that counts nothing as the run's, over the same
    seconds, so whatever else the machine runs counts alike in both."""
    second_engine.load(small_image)
    for name, value in second_engine.tls_env().items():
        monkeypatch.setenv(name, value)
    resolve.cache_clear()
    remote = Engine(endpoint=resolve())
    resolve.cache_clear()
    variant = load_variant(ROOT / "images" / "xorg-glx")  # its run settings (sleep infinity) suit the small image
    target = DockerTarget.start(remote, variant, small_image, f"load-{os.getpid()}", "meter:1", tmp_path, 60)
    bystander = subprocess.Popen(["sleep", "60"])  # a run that does nothing: everything is outside load to it
    try:
        cpus = remote.client.info()["NCPU"]
        with TargetLoad(target, cpus).sample() as outside, HostLoad(bystander.pid).sample() as everything:
            target.run("i=0; while [ $i -lt 3000000 ]; do i=$((i+1)); done")
        assert everything[0] - outside[0] > 0.5 / cpus, (everything, outside)
        with TargetLoad(target, cpus).sample() as outside:
            busy_loop(3).wait()
        assert outside[0] > 0.8 / cpus, outside
    finally:
        bystander.kill()
        remote.remove(target.container.id)
