"""TLS settings for ``mllps://`` listeners and senders, built from a channel's or destination's options.

Both sides refuse anything older than TLS 1.2. Paths are relative to the config file's folder so a
config can be moved with its certificates. A missing or unreadable file is a :class:`ConfigError`
naming the option and the path, raised when the source or destination is built (at start-up), not
on the first message.

Listener options: ``cert_file``, ``key_file`` (required), ``ca_file`` and ``require_client_cert``
(mutual TLS: the peer must present a certificate signed by ``ca_file``).
Sender options: ``ca_file`` (default: the system's trust store), ``cert_file``/``key_file`` (a client
certificate for mutual TLS), ``verify`` (default true; false only for tests against self-signed
peers), ``server_hostname`` (the name to check the certificate against; default the URL's host).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import Any

from bridge import ConfigError


def _path(options: Mapping[str, Any], key: str, config_dir: str, where: str) -> str | None:
    """The option's file path, resolved against ``config_dir``; ConfigError when it cannot be read."""
    value = options.get(key)
    if value in (None, ""):
        return None
    path = os.path.join(config_dir, os.path.expanduser(str(value)))
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise ConfigError([(f"{where}.options.{key}", f"cannot read {path}")])
    return path


def _flag(options: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    """A yes/no option. Anything but a clear yes or no is an error: a typo must never turn certificate
    checking off."""
    value = options.get(key, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError([(f"{where}.options.{key}", f"expected true or false, got {value!r}")])


def server_context(options: Mapping[str, Any], config_dir: str, where: str) -> ssl.SSLContext:
    """The listener's TLS context; ``where`` (e.g. ``channels.adt``) prefixes error paths."""
    cert = _path(options, "cert_file", config_dir, where)
    key = _path(options, "key_file", config_dir, where)
    ca = _path(options, "ca_file", config_dir, where)
    if cert is None:
        raise ConfigError([(f"{where}.options.cert_file", "is required for an mllps:// listener")])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, cert, key, where)
    if _flag(options, "require_client_cert", False, where):
        if ca is None:
            raise ConfigError([(f"{where}.options.ca_file",
                                "is required with require_client_cert (the CA that signs client certificates)")])
        context.verify_mode = ssl.CERT_REQUIRED
    if ca is not None:
        context.load_verify_locations(cafile=ca)
        if context.verify_mode == ssl.CERT_NONE:
            context.verify_mode = ssl.CERT_OPTIONAL
    return context


def client_context(options: Mapping[str, Any], config_dir: str, where: str) -> ssl.SSLContext:
    """The sender's TLS context: verifies the peer unless ``verify: false``."""
    cert = _path(options, "cert_file", config_dir, where)
    key = _path(options, "key_file", config_dir, where)
    ca = _path(options, "ca_file", config_dir, where)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if _flag(options, "verify", True, where):
        if ca is not None:
            context.load_verify_locations(cafile=ca)
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert is not None:
        _load_chain(context, cert, key, where)
    return context


def _load_chain(context: ssl.SSLContext, cert: str, key: str | None, where: str) -> None:
    try:
        context.load_cert_chain(certfile=cert, keyfile=key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError([(f"{where}.options.cert_file",
                            f"cannot load certificate {cert} with key {key or '(in the same file)'}: {exc}")]) from None


def peer_name(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """The verified peer certificate's common name (for the message's origin), if any."""
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    for rdn in (cert or {}).get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None
