"""The three SMTP URL forms deliver for real: `smtp+starttls://user:pass@...` upgrades the
connection and signs in, `smtps://` speaks TLS from the first byte. The test server has a
certificate from a CA made here, trusted through SSL_CERT_FILE as an operator would."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.accounts.conftest import Inbox
from tests.conftest import ClientFactory
from tests.helpers import free_port

USER, SECRET = "mailer", "s3cret-pass"

# aiosmtpd warns that AUTH is offered without STARTTLS: on the smtps server it is inside TLS.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


def _certificates(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for 127.0.0.1 that it signed: (ca, cert, key) files."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Watchword test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def _authenticate(
    server: SMTP, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USER.encode()
        and auth_data.password == SECRET.encode()
    )
    return AuthResult(success=ok)


class TlsSmtp:
    def __init__(self, tmp: Path, *, implicit: bool) -> None:
        ca, cert, key = _certificates(tmp)
        self.ca_file = ca
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.inbox = Inbox()
        self.port = free_port()
        self.implicit = implicit
        options: dict[str, Any] = {"authenticator": _authenticate, "auth_required": True}
        if implicit:
            # aiosmtpd only counts STARTTLS as TLS when it decides to offer AUTH; here the
            # whole connection is TLS already.
            options.update(ssl_context=context, auth_require_tls=False)
        else:
            options.update(tls_context=context, require_starttls=True)
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port, **options)

    @property
    def url(self) -> str:
        scheme = "smtps" if self.implicit else "smtp+starttls"
        return f"{scheme}://{USER}:{SECRET}@127.0.0.1:{self.port}"

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


@pytest.fixture(params=["starttls", "implicit"])
def tls_smtp(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TlsSmtp]:
    server = TlsSmtp(tmp_path, implicit=request.param == "implicit")
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))  # the operator trusts this CA
    server.start()
    yield server
    server.stop()


async def test_mail_goes_out_over_tls_with_a_login(
    client_factory: ClientFactory, tls_smtp: TlsSmtp
) -> None:
    client = await client_factory(smtp_url=tls_smtp.url, mail_poll_interval=0.05)
    await client.register("tls@example.com")
    mail = await tls_smtp.inbox.wait_for("tls@example.com")
    assert "/verify-email?token=" in mail.text


async def test_a_wrong_smtp_password_keeps_the_mail_queued(
    client_factory: ClientFactory, tls_smtp: TlsSmtp
) -> None:
    wrong = tls_smtp.url.replace(SECRET, "not-the-password")
    client = await client_factory(smtp_url=wrong, mail_poll_interval=0.05)
    await client.register("tls@example.com")
    sender = client.container.mail_sender
    assert await sender.deliver_due() == 0
    (row,) = await client.container.lifecycle.outbox(limit=10)
    assert row.sent_at is None
    assert tls_smtp.inbox.received == []
