"""The callback endpoint over ncpdp+https with mutual TLS: a client without our CA's certificate is refused."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bridge import Receipt, SourceContext
from bridge.plugins.ncpdp.transport import CallbackSource

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ncpdp"


def _issue(folder: Path, stem: str, cn: str, issuer=None, ca: bool = False):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer[0].subject if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                        critical=False)
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    (folder / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{stem}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    return cert, key


def test_mutual_tls_callback(tmp_path):
    ca = _issue(tmp_path, "ca", "Test CA", ca=True)
    _issue(tmp_path, "server", "127.0.0.1", issuer=ca)
    _issue(tmp_path, "client", "switch", issuer=ca)
    stranger_ca = _issue(tmp_path, "stranger-ca", "Other CA", ca=True)
    _issue(tmp_path, "stranger", "stranger", issuer=stranger_ca)
    submitted = []
    ctx = SourceContext(url="ncpdp+https://127.0.0.1:0/script", channel="pharmacy",
                        options={"cert_file": "server.pem", "key_file": "server.key", "client_ca_file": "ca.pem"},
                        submit=lambda raw, origin=None, error=None: submitted.append(raw) or Receipt(1, True),
                        config_dir=str(tmp_path), max_message_bytes=100_000, format_name="ncpdp")
    source = CallbackSource(ctx)
    source.start()
    url = f"https://127.0.0.1:{source.port}/script"
    body = (FIXTURES / "rxfill.xml").read_bytes()
    try:
        ok = requests.post(url, data=body, cert=(str(tmp_path / "client.pem"), str(tmp_path / "client.key")),
                           verify=str(tmp_path / "ca.pem"), timeout=10)
        assert ok.status_code == 200 and b"<Code>000</Code>" in ok.content and submitted == [body]
        for cert in (None, (str(tmp_path / "stranger.pem"), str(tmp_path / "stranger.key"))):
            with pytest.raises(requests.exceptions.RequestException):
                requests.post(url, data=body, cert=cert, verify=str(tmp_path / "ca.pem"), timeout=10)
        assert len(submitted) == 1
    finally:
        source.stop()
