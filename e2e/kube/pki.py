"""Certificates and kubeconfigs for a one-node test cluster, made with openssl at start.

One CA signs everything: the API server's serving certificate, the client
certificates of the admin, the controller manager, the scheduler and the
kubelet (whose identity the Node authorizer reads from CN and O), and the API
server's client certificate for the kubelet. The kubelet makes its own serving
certificate. ECDSA P-256 keys: fast to make, accepted by every component.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = "7"
OPENSSL_TIMEOUT_S = 60


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=OPENSSL_TIMEOUT_S)


def _key(path: Path) -> None:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(path))
    path.chmod(0o600)


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


class PKI:
    def __init__(self, d: Path) -> None:
        self.dir = d
        d.mkdir(parents=True, exist_ok=True)
        self.ca = Pair(d / "ca.crt", d / "ca.key")
        if not self.ca.cert.exists():
            _key(self.ca.key)
            _openssl(
                "req", "-x509", "-new", "-key", str(self.ca.key), "-out", str(self.ca.cert),
                "-days", DAYS, "-subj", "/CN=crib-kube-ca",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            )  # fmt: skip

    def issue(
        self, name: str, cn: str, orgs: tuple[str, ...] = (), server_sans: tuple[str, ...] = ()
    ) -> Pair:
        """A certificate for `cn` (and groups `orgs`); with SANs it also serves TLS."""
        pair = Pair(self.dir / f"{name}.crt", self.dir / f"{name}.key")
        csr = self.dir / f"{name}.csr"
        ext = self.dir / f"{name}.ext"
        usages = "clientAuth,serverAuth" if server_sans else "clientAuth"
        lines = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={usages}",
        ]
        if server_sans:
            lines.append("subjectAltName=" + ",".join(server_sans))
        ext.write_text("\n".join(lines) + "\n")
        _key(pair.key)
        subject = "".join(f"/O={o}" for o in orgs) + f"/CN={cn}"
        _openssl("req", "-new", "-key", str(pair.key), "-out", str(csr), "-subj", subject)
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.ca.cert), "-CAkey", str(self.ca.key),
            "-CAcreateserial", "-out", str(pair.cert), "-days", DAYS, "-extfile", str(ext),
        )  # fmt: skip
        csr.unlink()
        ext.unlink()
        return pair

    def service_account_keys(self) -> Pair:
        """The key pair the API server signs service-account tokens with (public half in `cert`)."""
        pair = Pair(self.dir / "sa.pub", self.dir / "sa.key")
        _key(pair.key)
        _openssl("ec", "-in", str(pair.key), "-pubout", "-out", str(pair.cert))
        return pair


def write_kubeconfig(path: Path, server: str, ca: Path, client: Pair, user: str) -> Path:
    path.write_text(
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        "- name: crib\n"
        f"  cluster:\n    server: {server}\n    certificate-authority: {ca}\n"
        "users:\n"
        f"- name: {user}\n"
        f"  user:\n    client-certificate: {client.cert}\n    client-key: {client.key}\n"
        "contexts:\n"
        f"- name: crib\n  context:\n    cluster: crib\n    user: {user}\n"
        "current-context: crib\n"
    )
    path.chmod(0o600)
    return path
