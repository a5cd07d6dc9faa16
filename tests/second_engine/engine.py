"""A second Docker engine on this machine, for testing rendergate against remote engines for real.

Debian's docker.io runs inside a near-privileged container (see CAPABILITIES) with its own hostname,
its own storage (a labelled volume on /var/lib/docker) and its own ssh host key. It is reached from
here the two ways a user reaches a remote engine: over ssh (``ssh://root@127.0.0.1:PORT``, docker-py's paramiko
transport running ``docker system dial-stdio`` remotely) and over tcp with TLS
(``tcp://127.0.0.1:PORT``, ``DOCKER_TLS_VERIFY=1``, ``DOCKER_CERT_PATH``). Ports are published on
127.0.0.1 only. Plain functions and one class, so a pytest fixture can wrap them::

    build_image()
    with launch("gpu-box-test") as engine:
        engine.load("rendergate/xorg-glx:dev")
        subprocess.run([...], env={**os.environ, **engine.ssh_env()})
"""
from __future__ import annotations

import datetime
import io
import ipaddress
import os
import shutil
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

import docker
import paramiko
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from docker.models.containers import Container
from docker.models.volumes import Volume

HERE = Path(__file__).resolve().parent
IMAGE = "rendergate-test/second-engine:dev"
BASE_IMAGE = "rendergate/debian:bookworm"
# On the container and its volume, valued with the hostname: leftovers of killed runs are found by it.
LABEL = "rendergate-test.second-engine"
# On the container: its client files, removed with it by remove_leftovers.
FOLDER_LABEL = "rendergate-test.second-engine.folder"
SSH_PORT, TLS_PORT = 22, 2376
# The server's certificate names what clients dial here; the hostname is added per engine.
SERVER_NAMES = ("127.0.0.1", "localhost")

# Every capability docker 20.10 knows (up to CAP_AUDIT_READ) except CAP_SYS_RESOURCE. Not --privileged:
# docker 20.10 then asks runc for all capabilities, and where the engine's own bounding set lacks one
# (CAP_SYS_RESOURCE on this machine kind) the start fails with "unable to apply caps: operation not
# permitted". The rest of what --privileged gives comes from SECURITY_OPT, the device rule and the
# entrypoint remounting /sys and the cgroup hierarchies writable.
CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
                "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK",
                "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN",
                "SYS_BOOT", "SYS_NICE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
                "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND",
                "AUDIT_READ")
SECURITY_OPT = ("seccomp=unconfined", "apparmor=unconfined")

# The API of Debian bookworm's docker.io 20.10, the engine inside.
API_VERSION = "1.41"

Transport = Literal["ssh", "tls"]
# What a client raises while the engine is still coming up (refused, reset, sshd or dockerd not ready).
NOT_YET = (docker.errors.DockerException, requests.exceptions.RequestException, paramiko.SSHException, OSError)


class SecondEngineError(RuntimeError):
    """The second engine could not be built, started or used; the message says which step failed."""


def build_image(client: docker.DockerClient | None = None, *, tag: str = IMAGE, base_image: str = BASE_IMAGE,
                extra_ca: Path | None = None) -> str:
    """Build the engine image from this folder (seconds when cached) and return its id. The extra CA
    (default: RENDERGATE_EXTRA_CA) is trusted inside, as rendergate's own images do behind TLS proxies."""
    client = client or docker.from_env()
    if extra_ca is None and os.environ.get("RENDERGATE_EXTRA_CA"):
        extra_ca = Path(os.environ["RENDERGATE_EXTRA_CA"])
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name in ("Dockerfile", "entrypoint.sh"):
            tar.add(HERE / name, arcname=name)
        if extra_ca:
            tar.add(extra_ca, arcname="extra-ca.crt")
    context.seek(0)
    stream = client.api.build(fileobj=context, custom_context=True, tag=tag, buildargs={"BASE_IMAGE": base_image},
                              rm=True, forcerm=True, decode=True)
    log = []
    for chunk in stream:
        log.append(chunk.get("stream", ""))
        if "error" in chunk:
            tail = "".join(log).strip().splitlines()[-5:]
            raise SecondEngineError(f"building {tag} failed: {chunk['error'].strip()}\n" + "\n".join(tail))
    return client.images.get(tag).id


@dataclass(frozen=True)
class Pki:
    """PEM bytes of a throwaway CA, a server certificate for the engine and a client certificate."""
    ca_cert: bytes
    server_cert: bytes
    server_key: bytes
    client_cert: bytes
    client_key: bytes


def make_pki(server_names: Sequence[str] = SERVER_NAMES, *, days: int = 2) -> Pki:
    """A fresh CA with one server and one client certificate: dockerd's --tlsverify needs all three,
    and a second call gives the "wrong CA" a test needs."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"rendergate test CA {uuid.uuid4().hex[:8]}")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())

    def signed(builder: x509.CertificateBuilder, key: ec.EllipticCurvePrivateKey | None = None) -> x509.Certificate:
        public = (key or ca_key).public_key()
        builder = (builder.issuer_name(ca_name).public_key(public).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False))
        return builder.sign(ca_key, hashes.SHA256())

    def usage(*, sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=not sign, key_cert_sign=sign, crl_sign=sign, content_commitment=False,
                             key_encipherment=False, data_encipherment=False, key_agreement=False,
                             encipher_only=False, decipher_only=False)

    ca = signed(x509.CertificateBuilder().subject_name(ca_name)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(usage(sign=True), critical=True))

    def leaf(name: str, purpose: x509.ObjectIdentifier, sans: list[x509.GeneralName]) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(usage(sign=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = signed(builder, key)
        return (cert.public_bytes(serialization.Encoding.PEM),
                key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))

    sans: list[x509.GeneralName] = []
    for name in server_names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    server_cert, server_key = leaf("second engine", ExtendedKeyUsageOID.SERVER_AUTH, sans)
    client_cert, client_key = leaf("rendergate tests", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    return Pki(ca.public_bytes(serialization.Encoding.PEM), server_cert, server_key, client_cert, client_key)


def write_cert_path(folder: Path, pki: Pki, *, ca: Pki | None = None, client_cert: bool = True) -> Path:
    """Write a DOCKER_CERT_PATH folder (ca.pem, cert.pem, key.pem) and return it. ``ca`` trusts another
    CA's certificate instead; ``client_cert=False`` leaves cert.pem/key.pem out (the client sends none)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.pem").write_bytes((ca or pki).ca_cert)
    if client_cert:
        (folder / "cert.pem").write_bytes(pki.client_cert)
        (folder / "key.pem").write_bytes(pki.client_key)
        (folder / "key.pem").chmod(0o600)
    return folder


def write_ssh_key(path: Path) -> str:
    """Write an unencrypted ed25519 private key in OpenSSH format (what ssh-keygen writes; paramiko and
    ssh read it) and return its public line for authorized_keys."""
    key = ed25519.Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    public_line = public.decode() + " rendergate-second-engine"
    path.with_name(path.name + ".pub").write_text(public_line + "\n")
    return public_line


def write_ssh_home(home: Path, *, port: int, identity: Path, known_hosts: Sequence[str] = ()) -> Path:
    """Write HOME/.ssh/config and HOME/.ssh/known_hosts for 127.0.0.1:port and return HOME. Paramiko
    (docker-py's default) reads both through $HOME; OpenSSH's ssh ignores $HOME, so ``ssh_env`` points
    it at this config with a wrapper instead. No known_hosts lines gives the "unknown host key" case."""
    dot_ssh = home / ".ssh"
    dot_ssh.mkdir(parents=True, exist_ok=True, mode=0o700)
    (dot_ssh / "config").write_text(
        f"Host 127.0.0.1\n    Port {port}\n    User root\n    IdentityFile {identity}\n    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {dot_ssh / 'known_hosts'}\n    StrictHostKeyChecking yes\n    BatchMode yes\n")
    (dot_ssh / "known_hosts").write_text("".join(line + "\n" for line in known_hosts))
    # For use_ssh_client=True: an `ssh` first on PATH that reads this config, not the user's own.
    bin_dir = home / "bin"
    bin_dir.mkdir(exist_ok=True)
    real_ssh = shutil.which("ssh") or "/usr/bin/ssh"
    (bin_dir / "ssh").write_text(f'#!/bin/sh\nexec {real_ssh} -F {dot_ssh / "config"} "$@"\n')
    (bin_dir / "ssh").chmod(0o755)
    return home


_HOME_LOCK = threading.Lock()


@contextmanager
def _home(home: Path) -> Iterator[None]:
    """$HOME swapped for this process while paramiko reads ~/.ssh (docker-py has no other way in)."""
    with _HOME_LOCK:
        saved = os.environ.get("HOME")
        os.environ["HOME"] = str(home)
        try:
            yield
        finally:
            if saved is None:
                del os.environ["HOME"]
            else:
                os.environ["HOME"] = saved


class SecondEngine:
    """One running second engine: its container, the client files made for it, and helpers to move
    images in and to stop/start its dockerd while sshd stays up."""

    def __init__(self, host_client: docker.DockerClient, container: Container, volume: Volume, hostname: str,
                 folder: Path, pki: Pki):
        self.host_client = host_client
        self.container = container
        self.volume = volume
        self.hostname = hostname
        self.folder = folder
        self.pki = pki
        container.reload()
        ports = container.attrs["NetworkSettings"]["Ports"]
        self.ssh_port = int(ports[f"{SSH_PORT}/tcp"][0]["HostPort"])
        self.tls_port = int(ports[f"{TLS_PORT}/tcp"][0]["HostPort"])
        self.identity = folder / "id_ed25519"
        self.cert_path = folder / "certs"
        self.home = folder / "home"

    @property
    def ssh_url(self) -> str:
        return f"ssh://root@127.0.0.1:{self.ssh_port}"

    @property
    def tcp_url(self) -> str:
        return f"tcp://127.0.0.1:{self.tls_port}"

    def ssh_env(self) -> dict[str, str]:
        """Environment for a process reaching the engine over ssh: HOME with the key, config and
        known host key; PATH led by an ``ssh`` that uses them (for use_ssh_client=True); the TLS
        variables emptied so that merged over os.environ none is inherited."""
        return {"HOME": str(self.home), "DOCKER_HOST": self.ssh_url,
                "PATH": f"{self.home / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
                "DOCKER_TLS_VERIFY": "", "DOCKER_CERT_PATH": ""}

    def tls_env(self) -> dict[str, str]:
        """Environment for a process reaching the engine over tcp with TLS, as docker.from_env reads it.
        REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, if the process also has them, make docker-py ignore ca.pem
        (see client()); they are left as the caller has them, as a user would."""
        return {"DOCKER_HOST": self.tcp_url, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(self.cert_path)}

    def tls_config(self) -> docker.tls.TLSConfig:
        """The client side of tls_env, for docker.DockerClient(tls=...)."""
        return docker.tls.TLSConfig(client_cert=(str(self.cert_path / "cert.pem"), str(self.cert_path / "key.pem")),
                                    ca_cert=str(self.cert_path / "ca.pem"), verify=True)

    def client(self, transport: Transport = "tls", *, timeout: int = 60) -> docker.DockerClient:
        """A client in this process. Over ssh, $HOME is swapped while paramiko reads ~/.ssh (process-wide
        for a moment: do not build ssh clients in threads that read HOME meanwhile)."""
        if transport == "tls":
            # The API version given, so nothing is asked before trust_env is off: requests otherwise lets
            # REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (set behind TLS proxies, as here) replace the TLSConfig's
            # CA (docker-py issues #2433, #2598) and the engine's certificate fails to verify.
            client = docker.DockerClient(base_url=self.tcp_url, tls=self.tls_config(), timeout=timeout,
                                         version=API_VERSION)
            client.api.trust_env = False
            return client
        with _home(self.home):
            return docker.DockerClient(base_url=self.ssh_url, timeout=timeout)

    def wait_ready(self, timeout: float = 120, transports: Sequence[Transport] = ("tls", "ssh")) -> None:
        """Return once the engine answers a ping over each transport; raise with the last error and
        dockerd's log tail if it does not in time."""
        deadline = time.monotonic() + timeout
        for transport in transports:
            while True:
                try:
                    with closing(self.client(transport, timeout=5)) as client:
                        client.ping()
                    break
                except NOT_YET as error:
                    if time.monotonic() > deadline:
                        raise SecondEngineError(f"{self.hostname}: no answer over {transport} after {timeout:.0f} s: "
                                                f"{type(error).__name__}: {error}\n{self.dockerd_log()}") from error
                    self._check_running()
                    time.sleep(0.2)

    def load(self, image_ref: str, *, timeout: int = 900) -> str:
        """Move a local image in (``docker save | docker load``, streamed through the SDK over TLS, no
        temporary file) and return its id in the second engine."""
        stream = self.host_client.api.get_image(image_ref, chunk_size=1 << 20)
        with closing(self.client("tls", timeout=timeout)) as client:
            for status in client.api.load_image(stream):
                if "error" in status:
                    raise SecondEngineError(f"loading {image_ref} into {self.hostname}: {status['error']}")
            return client.images.get(image_ref).id

    def stop_engine(self) -> None:
        """Stop dockerd (and its containerd) inside; sshd stays up, so ssh reaches a host whose engine is down."""
        self._exec("second-engine", "stop")

    def start_engine(self, timeout: float = 60) -> None:
        """Start dockerd again after stop_engine and wait until both transports answer."""
        self._exec("second-engine", "start")
        self.wait_ready(timeout)

    def set_docker_cli(self, available: bool) -> None:
        """Move /usr/bin/docker aside (or back): ssh then reaches a host with no `docker` on PATH."""
        hidden, cli = "/usr/bin/docker.hidden", "/usr/bin/docker"
        source, target = (hidden, cli) if available else (cli, hidden)
        self._exec("sh", "-c", f"[ ! -e {source} ] || mv {source} {target}")

    def host_key(self, timeout: float = 30) -> str:
        """The container's ed25519 host key ("ssh-ed25519 AAAA..."), read from inside rather than by
        ssh-keyscan, so known_hosts holds what the engine really has; made at start, hence the wait."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_running()
            result = self.container.exec_run(["cat", "/etc/ssh/ssh_host_ed25519_key.pub"])
            if result.exit_code == 0 and result.output.strip():
                return result.output.decode().strip()
            if time.monotonic() > deadline:
                raise SecondEngineError(f"{self.hostname}: no ssh host key after {timeout:.0f} s")
            time.sleep(0.1)

    def dockerd_log(self, lines: int = 20) -> str:
        """The inner dockerd's last lines, for failure messages."""
        return self._exec("tail", "-n", str(lines), "/var/log/dockerd.log", check=False)

    def remove(self) -> None:
        """Remove the container, its volume (the inner engine's images) and the client files."""
        remove_container_and_volume(self.container, self.volume)
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _exec(self, *command: str, check: bool = True) -> str:
        result = self.container.exec_run(list(command))
        output = result.output.decode(errors="replace")
        if check and result.exit_code != 0:
            raise SecondEngineError(f"{self.hostname}: {' '.join(command)} exited {result.exit_code}: {output.strip()}")
        return output

    def _check_running(self) -> None:
        self.container.reload()
        if self.container.status != "running":
            logs = self.container.logs(tail=20).decode(errors="replace")
            raise SecondEngineError(f"{self.hostname}: the engine container is {self.container.status}:\n{logs}")


def launch(hostname: str, *, client: docker.DockerClient | None = None, image: str = IMAGE,
           parent: Path | None = None, timeout: float = 120) -> SecondEngine:
    """Start a second engine with this hostname and wait until it answers over ssh and over tcp+TLS.
    Client files (certs, key, HOME) go to a new folder under ``parent`` (default: the temp dir). The
    image must be built (build_image). On failure nothing is left behind."""
    client = client or docker.from_env()
    token = uuid.uuid4().hex[:10]
    name = f"rendergate-second-engine-{token}"
    folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))
    pki = make_pki((*SERVER_NAMES, hostname))
    public_key = write_ssh_key(folder / "id_ed25519")
    write_cert_path(folder / "certs", pki)
    volume = client.volumes.create(name=name, labels={LABEL: hostname})
    container = None
    try:
        host_config = client.api.create_host_config(
            binds={volume.name: {"bind": "/var/lib/docker", "mode": "rw"}},
            port_bindings={SSH_PORT: ("127.0.0.1", None), TLS_PORT: ("127.0.0.1", None)},
            cap_add=list(CAPABILITIES), security_opt=list(SECURITY_OPT), device_cgroup_rules=["a *:* rwm"])
        # The CLI's `--security-opt systempaths=unconfined` (writable /proc/sys for dockerd); docker-py has no keyword.
        host_config.update(MaskedPaths=[], ReadonlyPaths=[])
        created = client.api.create_container(image, name=name, hostname=hostname,
                                              labels={LABEL: hostname, FOLDER_LABEL: str(folder)},
                                              ports=[SSH_PORT, TLS_PORT], host_config=host_config)
        container = client.containers.get(created["Id"])
        container.put_archive("/etc", _tar({"second-engine/ca.pem": pki.ca_cert,
                                            "second-engine/server-cert.pem": pki.server_cert,
                                            "second-engine/server-key.pem": pki.server_key,
                                            "second-engine/authorized_keys": public_key.encode() + b"\n"}))
        container.start()
        engine = SecondEngine(client, container, volume, hostname, folder, pki)
        key_type, key_data = engine.host_key(timeout).split()[:2]
        write_ssh_home(engine.home, port=engine.ssh_port, identity=engine.identity,
                       known_hosts=[f"[127.0.0.1]:{engine.ssh_port} {key_type} {key_data}"])
        engine.wait_ready(timeout)
        return engine
    except BaseException:
        remove_container_and_volume(container, volume)
        shutil.rmtree(folder, ignore_errors=True)
        raise


def remove_container_and_volume(container: Container | None, volume: Volume) -> None:
    """Remove both, ignoring what is already gone (a fixture's teardown after a failed start)."""
    if container is not None:
        with suppress(docker.errors.NotFound):
            container.remove(force=True, v=True)
    with suppress(docker.errors.NotFound):
        volume.remove(force=True)


def remove_leftovers(client: docker.DockerClient | None = None) -> int:
    """Remove every second-engine container, volume and client folder (found by LABEL), e.g. left by
    a killed run; return how many containers were removed."""
    client = client or docker.from_env()
    containers = client.containers.list(all=True, filters={"label": LABEL})
    for container in containers:
        container.remove(force=True, v=True)
        if folder := container.labels.get(FOLDER_LABEL):
            shutil.rmtree(folder, ignore_errors=True)
    for volume in client.volumes.list(filters={"label": LABEL}):
        volume.remove(force=True)
    return len(containers)


def _tar(files: dict[str, bytes]) -> bytes:
    """A tar of these files (mode 0600, root-owned), for put_archive."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for folder in sorted({os.path.dirname(name) for name in files} - {""}):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o600
            tar.addfile(info, io.BytesIO(content))
    return data.getvalue()

