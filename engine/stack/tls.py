"""Certificates of the secure local stack, made once with ``openssl``: a CA and a server cert.

The server certificate names ``127.0.0.1`` and ``localhost`` (subjectAltName), so clients verify
both the chain and the host name. Files under ``<dir>``: ``ca.pem`` (what clients trust),
``ca.key``, ``server.pem``, ``server.key`` (Redis) and ``server-keystore.pem`` (key + chain, Kafka's
PEM keystore). Private keys are readable by their owner only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.stack.processes import require_command, run_checked

DAYS = 825
CURVE = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")
SERVER_EXTENSIONS = (
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage=serverAuth,clientAuth\n"
    "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
)


@dataclass(frozen=True)
class TlsFiles:
    """Where the CA and server certificate files are."""

    home: Path

    @property
    def ca(self) -> Path:
        """The CA certificate clients trust (SEGFLOW_KAFKA_SSL_CAFILE, SEGFLOW_REDIS_SSL_CAFILE)."""
        return self.home / "ca.pem"

    @property
    def ca_key(self) -> Path:
        """The CA's private key."""
        return self.home / "ca.key"

    @property
    def cert(self) -> Path:
        """The server certificate (127.0.0.1, localhost)."""
        return self.home / "server.pem"

    @property
    def key(self) -> Path:
        """The server's private key."""
        return self.home / "server.key"

    @property
    def keystore(self) -> Path:
        """Server key followed by its chain: Kafka's ``ssl.keystore.type=PEM`` file."""
        return self.home / "server-keystore.pem"

    def complete(self) -> bool:
        """True when every file is there."""
        return all(p.exists() for p in (self.ca, self.ca_key, self.cert, self.key, self.keystore))


def ensure_certificates(home: Path) -> tuple[TlsFiles, bool]:
    """The stack's certificates, made unless all already exist; True when they were made."""
    files = TlsFiles(home)
    if files.complete():
        return files, False
    openssl = require_command("openssl", "openssl")
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    ca = [openssl, "req", "-x509", *CURVE, "-nodes", "-days", str(DAYS), "-subj", "/CN=segflow local CA"]
    ca += ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    run_checked([*ca, "-keyout", str(files.ca_key), "-out", str(files.ca)], "openssl req (CA)")
    csr = home / "server.csr"
    server = [openssl, "req", "-new", *CURVE, "-nodes", "-subj", "/CN=localhost"]
    run_checked([*server, "-keyout", str(files.key), "-out", str(csr)], "openssl req (server)")
    extensions = home / "server.ext"
    extensions.write_text(SERVER_EXTENSIONS)
    sign = [openssl, "x509", "-req", "-in", str(csr), "-CA", str(files.ca), "-CAkey", str(files.ca_key)]
    sign += ["-CAcreateserial", "-days", str(DAYS), "-extfile", str(extensions), "-out", str(files.cert)]
    run_checked(sign, "openssl x509 (sign the server certificate)")
    files.keystore.write_text(files.key.read_text() + files.cert.read_text() + files.ca.read_text())
    for private in (files.ca_key, files.key, files.keystore):
        private.chmod(0o600)
    csr.unlink(missing_ok=True)
    return files, True
