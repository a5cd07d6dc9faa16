"""Which Docker engine a run talks to, named as Docker names it, and why one cannot be reached.

An engine is named by `--engine URL|CONTEXT`, else by DOCKER_HOST (with DOCKER_TLS_VERIFY and
DOCKER_CERT_PATH, as the docker CLI reads them), else by the current docker context (DOCKER_CONTEXT,
or `docker context use`), else it is the local socket. The docker SDK reads the URLs and the TLS
settings of the environment; a context is read from the docker CLI's store. ssh:// goes through
the SDK's paramiko transport, which rendergate installs (docker[ssh]): it logs in with keys
(ssh-agent, ~/.ssh/id_*, IdentityFile of ~/.ssh/config), refuses a host key that
~/.ssh/known_hosts does not hold, and runs `docker system dial-stdio` on the remote host.

The SDK is imported where a client is made, not with this module (see docker_engine).
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import queue
import re
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

SCHEMES = ("unix", "tcp", "ssh", "npipe", "http", "https")
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
CONNECT_DEADLINE = 30  # seconds for an engine to answer: an ssh login to a host that drops packets took 134 s
START_HINT = "start it with `dockerd &` (Debian: apt-get install docker.io) or `systemctl start docker`"


class EndpointError(Exception):
    """An engine cannot be named or reached as asked; the message is one actionable line."""


@dataclass(frozen=True)
class Endpoint:
    """One Docker engine: its URL, how the run came to it, and its TLS settings (paths only)."""
    url: str
    source: str  # "--engine", "DOCKER_HOST", "docker context NAME", "the default socket"
    tls: tuple[str, str, str, bool] | None = None  # ca, cert, key, verify: as the SDK's TLSConfig takes them
    context: str | None = None  # the docker context it came from
    named: str | None = None  # as the user named it (--engine); None: the environment's, resolved alike in every process

    @property
    def scheme(self) -> str:
        return urlparse(self.url).scheme

    @property
    def local(self) -> bool:
        """Reached through a socket of this machine (its engine's host is this one, unless the
        socket is a forwarded one: EngineHost compares the engine's own name too)."""
        return self.scheme in ("unix", "npipe")

    @property
    def label(self) -> str:
        """A name for the engine in a cell's key and a file name: the context's, `local` for the
        default socket, else its host and port."""
        if self.context:
            return _safe(self.context)
        if self.local:
            return "local" if self.url == DEFAULT_SOCKET else _safe(os.path.basename(urlparse(self.url).path))
        parts = urlparse(self.url)
        return _safe(f"{parts.hostname}-{parts.port}" if parts.port else str(parts.hostname))

    @property
    def place(self) -> str:
        """Where the engine listens, as the user can check it: host and port, or the socket."""
        parts = urlparse(self.url)
        if self.local:
            return parts.path
        user = f"{parts.username}@" if parts.username else ""
        return f"{user}{parts.hostname}:{parts.port or (22 if self.scheme == 'ssh' else 2376)}"

    def __str__(self) -> str:
        return self.url if self.source in ("--engine", "DOCKER_HOST") else f"{self.url} ({self.source})"

    def client(self, timeout: float | None):
        """A client of the docker SDK for this engine (EndpointError, one line, when it does not
        answer within CONNECT_DEADLINE: the SDK sets no limit on an ssh login)."""
        answer: queue.Queue = queue.Queue(1)

        def connect() -> None:
            try:
                answer.put((True, self._connected(timeout)))
            except Exception as e:  # the SDK, paramiko, ssl and requests raise many types for "not there"
                answer.put((False, e))

        threading.Thread(target=connect, name="rendergate-connect", daemon=True).start()
        try:
            ok, made = answer.get(timeout=CONNECT_DEADLINE)
        except queue.Empty:
            raise EndpointError(unreachable(self, TimeoutError(f"no answer within {CONNECT_DEADLINE} s"))) from None
        if not ok:
            raise EndpointError(unreachable(self, made)) from None
        return made

    def _connected(self, timeout: float | None):
        import docker
        from docker.constants import MINIMUM_DOCKER_API_VERSION
        from docker.tls import TLSConfig

        quiet = logging.getLogger("paramiko")  # its transport thread logs a failed login with a traceback
        quiet.propagate = False
        quiet.handlers[:] = [logging.NullHandler()]

        if not self.tls:
            client = docker.DockerClient(base_url=self.url, timeout=timeout, max_pool_size=10)
            client.ping()
            return client
        ca, cert, key, verify = self.tls
        tls = TLSConfig(client_cert=(cert, key) if cert else None, ca_cert=ca or None, verify=verify)
        # requests would let REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (set where a TLS proxy is trusted)
        # replace the engine's CA (docker-py issues 2433, 2598): the client reads no environment,
        # and learns the engine's API version once that is so.
        probe = docker.DockerClient(base_url=self.url, tls=tls, timeout=timeout, version=MINIMUM_DOCKER_API_VERSION)
        probe.api.trust_env = False
        version = probe.version()["ApiVersion"]
        probe.close()
        client = docker.DockerClient(base_url=self.url, tls=tls, timeout=timeout, max_pool_size=10, version=version)
        client.api.trust_env = False
        return client


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "engine"


def _tls_of(settings) -> tuple[str, str, str, bool] | None:
    """The SDK's TLSConfig as plain paths: an Endpoint is a value, engines are told apart by it."""
    if settings is None:
        return None
    cert, key = settings.cert if settings.cert else ("", "")
    return settings.ca_cert or "", cert, key, bool(settings.verify)


@functools.lru_cache(maxsize=None)
def resolve(named: str | None = None) -> Endpoint:
    """The engine `named` (a URL or a docker context's name; None: the environment's), as the
    docker CLI would pick it. EndpointError when the name fits nothing."""
    from docker.errors import DockerException
    from docker.utils import kwargs_from_env

    def from_env() -> dict:
        try:
            return kwargs_from_env()
        except DockerException as e:  # DOCKER_TLS_VERIFY or DOCKER_CERT_PATH without the files
            folder = os.environ.get("DOCKER_CERT_PATH") or "~/.docker"
            raise EndpointError(f"DOCKER_TLS_VERIFY/DOCKER_CERT_PATH: {folder} must hold ca.pem, cert.pem and key.pem "
                                f"(the engine's CA, a client certificate and its key): {str(e).split('. ')[0]}") from None

    if named is None and os.environ.get("DOCKER_HOST"):
        _checked_url(os.environ["DOCKER_HOST"], "DOCKER_HOST")
        env = from_env()
        return Endpoint(env["base_url"], "DOCKER_HOST", _tls_of(env.get("tls")), named=named)
    if named and "://" in named:
        scheme = _checked_url(named, "--engine")
        tls = _tls_of(from_env().get("tls")) if scheme in ("tcp", "https") else None
        return Endpoint(named, "--engine", tls, named=named)
    name = named or os.environ.get("DOCKER_CONTEXT") or _current_context()
    if name == "default":
        return Endpoint(DEFAULT_SOCKET, "the default socket", named=named)
    return _context(name, named)


def _checked_url(url: str, said: str) -> str:
    """The URL's scheme, once it is one an engine has, with a host (or socket path) and a port that
    is a port; EndpointError, naming where it was said, when it is not."""
    form = "unix:///PATH, tcp://HOST:PORT, ssh://USER@HOST[:PORT]"
    try:
        parts = urlparse(url)
        port = parts.port
    except ValueError as e:
        raise EndpointError(f"{said} {url}: not an engine's URL ({e}): {form}") from None
    if parts.scheme not in SCHEMES or not (parts.hostname if parts.scheme != "unix" else parts.path):
        raise EndpointError(f"{said} {url}: not an engine's URL ({form}) nor a docker context's name")
    if parts.scheme == "tcp" and port is None:
        raise EndpointError(f"{said} {url}: name the engine's port (tcp://HOST:2376 with TLS, :2375 without)")
    return parts.scheme


def _config_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def _current_context() -> str:
    """The context `docker context use` chose (config.json's currentContext), else "default"."""
    try:
        return json.loads((_config_dir() / "config.json").read_text()).get("currentContext") or "default"
    except (OSError, ValueError, AttributeError):
        return "default"


def _context(name: str, named: str | None) -> Endpoint:
    """A context of the docker CLI's store: contexts/meta/<sha256 of its name>/meta.json names its
    engine, contexts/tls/<same>/docker/ holds its TLS files (read here: the SDK's ContextAPI finds
    no context when the docker config has no config.json yet, as after a first `docker context create`)."""
    store = _config_dir() / "contexts"
    key = hashlib.sha256(name.encode()).hexdigest()
    try:
        meta = json.loads((store / "meta" / key / "meta.json").read_text())
        docker = meta["Endpoints"]["docker"]
    except FileNotFoundError:
        known = sorted(["default", *(json.loads(p.read_text()).get("Name", "?") for p in store.glob("meta/*/meta.json"))])
        raise EndpointError(f"{'--engine' if named else 'DOCKER_CONTEXT'} {name}: no such docker context (known: "
                            f"{', '.join(known)}); name an engine by URL (ssh://USER@HOST, tcp://HOST:2376) or "
                            "`docker context create` it") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EndpointError(f"docker context {name}: {store / 'meta' / key / 'meta.json'} cannot be read "
                            f"({type(e).__name__}): recreate it with `docker context create`") from None
    if docker.get("Host"):
        _checked_url(docker["Host"], f"docker context {name}:")
    tls_dir = store / "tls" / key / "docker"
    files = [str(tls_dir / f) if (tls_dir / f).is_file() else "" for f in ("ca.pem", "cert.pem", "key.pem")]
    tls = (*files, not docker.get("SkipTLSVerify", False)) if any(files) else None
    return Endpoint(docker.get("Host") or DEFAULT_SOCKET, f"docker context {name}", tls, name, named)


def _chain(error: BaseException) -> list[BaseException]:
    """The error and those it was raised from, outermost first."""
    found: list[BaseException] = []
    while error is not None and error not in found:
        found.append(error)
        error = error.__cause__ or error.__context__
    return found


def unreachable(endpoint: Endpoint, error: BaseException) -> str:
    """Why the engine does not answer, as one line naming it, what failed and what to do (each case
    as docker-py 7, paramiko and ssl raise it: tests/second_engine/FINDINGS.md)."""
    chain = _chain(error)
    text = " | ".join(str(e) for e in chain)
    names = {type(e).__name__ for e in chain}
    head = f"Docker engine not reachable at {endpoint}"
    where = endpoint.place
    login = where.rsplit(":", 1)[0]
    if "Install paramiko" in text:
        return (f"{head}: the docker SDK's ssh transport (paramiko) is not installed: reinstall rendergate "
                "(it brings docker[ssh]), or `pip install paramiko`")
    if endpoint.scheme == "ssh":
        host = urlparse(endpoint.url).hostname
        if "not found in known_hosts" in text:
            port = where.rsplit(":", 1)[1]
            return (f"{head}: the ssh host key of {host} is not in ~/.ssh/known_hosts (the only file the docker SDK "
                    f"reads: not UserKnownHostsFile, not /etc/ssh/ssh_known_hosts): check its fingerprint, then add it "
                    f"(`ssh-keyscan -p {port} {host} >> ~/.ssh/known_hosts`)")
        if "BadHostKeyException" in names:
            return (f"{head}: the ssh host key of {host} is not the one ~/.ssh/known_hosts holds: the host was "
                    "reinstalled, or this is not the host you meant; check before replacing the key")
        if names & {"AuthenticationException", "BadAuthenticationType", "PasswordRequiredException"} or \
                "No authentication methods available" in text:
            return (f"{head}: ssh refused the login to {where} (wrong key or password): rendergate logs in with a key "
                    "(ssh-agent, ~/.ssh/id_*, IdentityFile in ~/.ssh/config), never a password prompt; "
                    f"`ssh {login} docker version` must work without one")
        if "Error reading SSH protocol banner" in text:
            return f"{head}: {where} accepted the connection but no ssh server answered: is that sshd's port?"
        if "RemoteDisconnected" in names or "Connection aborted" in text:
            return f"{head}: ssh reached {where}, but {_dial_stdio_failure(endpoint)}"
    if names & {"SSLCertVerificationError"}:
        return (f"{head}: the engine's TLS certificate is not signed by the CA in DOCKER_CERT_PATH's ca.pem "
                f"({_reason(chain)}): use the ca.pem of the CA that signed the engine's certificate")
    if "BAD_CERTIFICATE" in text or "CERTIFICATE_REQUIRED" in text:
        return (f"{head}: the engine refused this client's TLS certificate: DOCKER_CERT_PATH needs cert.pem and "
                "key.pem signed by the CA the engine trusts (dockerd --tlscacert)")
    if names & {"SSLEOFError", "ConnectionResetError"} or "UNEXPECTED_EOF" in text or "reset by peer" in text:
        # A published port whose engine is stopped: accepted, then closed or reset, as the proxy finds no one
        return f"{head}: {where} closed the connection at once: is dockerd running there, on that port?"
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
        return f"{head}: {where} does not speak TLS: is it the engine's TLS port (2376)?"
    if names & {"SSLError"}:
        return f"{head}: TLS with {where} failed ({_reason(chain)}): check DOCKER_CERT_PATH (ca.pem, cert.pem, key.pem)"
    if "Client sent an HTTP request to an HTTPS server" in text:
        return (f"{head}: the engine at {where} speaks TLS: set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH (a folder "
                "with ca.pem, cert.pem, key.pem)")
    if endpoint.local:
        if names & {"PermissionError"} or "Permission denied" in text:
            return (f"{head}: permission denied on {where}: add this user to the `docker` group (then log in again), "
                    "or run as root")
        return f"{head} (no engine answers on {where}): {START_HINT}"
    if names & {"NoValidConnectionsError", "ConnectionRefusedError"} or "Connection refused" in text or \
            "Unable to connect to port" in text:
        what = "sshd" if endpoint.scheme == "ssh" else "dockerd"
        return f"{head}: nothing listens at {where} (connection refused): is {what} running there, on that port?"
    if re.search(r"40[0-9] Client Error", text):
        return f"{head}: {where} answers HTTP, but not as a Docker engine ({_short(str(chain[-1]))}): is it the engine's port?"
    if names & {"gaierror"} or "Name or service not known" in text:
        return f"{head}: no such host {urlparse(endpoint.url).hostname} (its name does not resolve): check the name"
    if names & {"timeout", "TimeoutError", "ConnectTimeoutError", "ConnectTimeout", "ReadTimeout", "ReadTimeoutError"}:
        return f"{head}: {where} did not answer in time: is the host up, and does a firewall let this machine in?"
    return f"{head}: {type(chain[-1]).__name__}: {_short(str(chain[-1]) or str(error))}"


def _reason(chain: list[BaseException]) -> str:
    return next((str(e.reason) for e in chain if isinstance(e, ssl.SSLError) and getattr(e, "reason", None)),
                "handshake failed")


def _dial_stdio_failure(endpoint: Endpoint) -> str:
    """What `docker system dial-stdio` (how the SDK reaches an engine over ssh) says on the remote
    host: the engine stopped and a host without the docker CLI look alike to the SDK."""
    try:
        from docker.transport.sshconn import SSHHTTPAdapter

        adapter = SSHHTTPAdapter(endpoint.url)  # the SDK's own login: its ~/.ssh/config and known_hosts
        try:
            _, _, stderr = adapter.ssh_client.exec_command("docker system dial-stdio < /dev/null", timeout=20)
            said, code = stderr.read().decode(errors="replace"), stderr.channel.recv_exit_status()
        finally:
            adapter.close()
    except Exception as e:  # it went away meanwhile: say what is known
        return f"no engine answered through it (asking why failed too: {type(e).__name__})"
    if code == 127 or re.search(r"docker: (command )?not found", said):
        return ("its shell has no `docker` command, through which the SDK reaches the engine over ssh "
                "(`docker system dial-stdio`): install the docker CLI there, or put it on that login's PATH")
    if "permission denied" in said.lower():
        user = urlparse(endpoint.url).username or "that login"
        return (f"its login cannot use the engine's socket (permission denied): add {user} to the `docker` group "
                "there, or log in as a user who is in it")
    if "docker.sock" in said or "Cannot connect to the Docker daemon" in said or "raw stream" in said:
        return f"no engine answers there: start dockerd on it (`{_short(said)}`)"
    return f"no engine answered through it (`docker system dial-stdio`: {_short(said) if said.strip() else f'exit {code}'})"


def _short(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "no message"
    return line[:200]
