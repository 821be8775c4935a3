"""A real OCI registry for the tests: Debian's docker-registry on 127.0.0.1.

Storage lives in a temp dir; with `users`, the registry requires htpasswd
basic auth; with `tls`, it serves HTTPS with a certificate of its own test CA
(`ca_file`), and with `client_cas` too, it requires a client certificate one of
them signed (mutual TLS). Each start picks a free port; if another process
wins the race for it, the start is retried on a new one.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import bcrypt

REGISTRY_BIN = "/usr/bin/docker-registry"
START_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            return False
        return True


def make_tls(d: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1 it signed: (ca, cert, key)."""
    ca_key, ca, key, csr, cert = (
        d / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )
    ext = d / "san.cnf"
    ext.write_text("subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "2",
        "-subj",
        "/CN=crib-e2e-ca",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/CN=127.0.0.1",
    )
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    return ca, cert, key


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA: (certificate, key)."""
    cert, key = d / f"{name}.pem", d / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
        "-days", "2", "-subj", f"/CN={name}",
    )  # fmt: skip
    return cert, key


def make_client_cert(d: Path, name: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A client certificate `ca` signed: (certificate, key), named as Docker's drop-ins are."""
    cert, key, csr, ext = d / f"{name}.cert", d / f"{name}.key", d / f"{name}.csr", d / f"{name}.cnf"
    ext.write_text("basicConstraints = CA:FALSE\nextendedKeyUsage = clientAuth\n")
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}"
    )
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
        "-out", str(cert), "-days", "2", "-extfile", str(ext),
    )  # fmt: skip
    return cert, key


class Registry:
    def __init__(
        self,
        users: dict[str, str] | None = None,
        tls: bool = False,
        workdir: Path | None = None,
        client_cas: list[Path] | None = None,
    ) -> None:
        self.users = users or {}
        self.tls = tls
        self.client_cas = client_cas or []
        self.ca_file: Path | None = None
        if workdir is not None:
            workdir.mkdir(parents=True, exist_ok=True)
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="crib-e2e-registry-"))
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "registry.log"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def _write_config(self) -> Path:
        auth = ""
        if self.users:
            htpasswd = self.dir / "htpasswd"
            htpasswd.write_text(
                "".join(
                    f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
                    for u, p in self.users.items()
                )
            )
            auth = f"auth:\n  htpasswd:\n    realm: crib-e2e\n    path: {htpasswd}\n"
        tls = ""
        if self.tls:
            if self.ca_file is None:
                self.ca_file, self._cert, self._key = make_tls(self.dir)
            tls = f"  tls:\n    certificate: {self._cert}\n    key: {self._key}\n"
            if self.client_cas:
                tls += "    clientcas:\n" + "".join(f"      - {ca}\n" for ca in self.client_cas)
        config = self.dir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.dir / 'data'}\n"
            "  delete:\n    enabled: true\n"
            "  maintenance:\n    uploadpurging:\n      enabled: false\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
            f"{tls}"
            f"{auth}"
        )
        return config

    def start(self) -> Registry:
        for _ in range(3):
            self.port = free_port()
            config = self._write_config()
            log = self.log_path.open("ab")
            self.proc = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
            deadline = time.monotonic() + START_TIMEOUT_S
            # Bounded readiness poll: the registry has no readiness signal but its port.
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if _accepts(self.port):
                    return self
                time.sleep(0.01)
            self.kill()
        raise RuntimeError(f"docker-registry did not start; its log:\n{self.log_path.read_text()[-4000:]}")

    def kill(self) -> None:
        """Stop the registry at once (tests use it to break a pull midway)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
