"""Connecting to Kafka: the TLS context every client shares, and a probe that says why a broker cannot be
reached before a client library turns it into a bare time-out.

kafka-python reports a failed bootstrap as ``KafkaTimeoutError: Unable to bootstrap`` after its own
time-out (30 s), whatever the cause: a broker not up yet, a wrong port, or a certificate that will never
verify. :func:`probe` opens one connection to each bootstrap server first, with the same TLS context the
clients get, and sorts the causes: those that waiting cannot fix (a certificate that does not verify, a
client certificate refused, a TLS listener spoken to in plaintext) are a
:class:`~detector.errors.ConfigError` naming the setting; the others (refused, timed out, unknown host, a
hang-up, with a hint where the likely cause is a setting) are :class:`KafkaUnreachable`, which the service
waits out. Nothing here is specific to one broker: TCP, TLS and one ApiVersions request, which every Kafka
broker answers before any authentication.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Sequence

from flowsentinel.detector.errors import ConfigError, FlowSentinelError

TLS_PROTOCOLS = ("SSL", "SASL_SSL")


class KafkaUnreachable(FlowSentinelError):
    """No bootstrap server answered; trying again later may succeed."""

    retriable = True


def build_ssl_context(
    *,
    cafile: str = "",
    certfile: str = "",
    keyfile: str = "",
    password: str = "",
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """The client TLS context: verify the broker against ``cafile`` (the system's CAs when empty), present
    ``certfile``/``keyfile`` when given (mutual TLS), TLS 1.2 or newer. Errors name the setting."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = check_hostname
    try:
        if cafile:
            ctx.load_verify_locations(cafile)
        else:
            ctx.load_default_certs()
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"setting ssl_cafile = {cafile!r}: cannot load CA certificates ({_why(exc)})"
        ) from None
    if certfile:
        try:
            ctx.load_cert_chain(certfile, keyfile or None, password=password or None)
        except (OSError, ssl.SSLError) as exc:
            hint = " (wrong ssl_password?)" if keyfile and "PEM lib" in str(exc) else ""
            raise ConfigError(
                f"settings ssl_certfile = {certfile!r}, ssl_keyfile = {keyfile!r}: "
                f"cannot load the client certificate and key ({_why(exc)}){hint}"
            ) from None
    return ctx


def probe(
    bootstrap_servers: Sequence[str],
    *,
    security_protocol: str = "PLAINTEXT",
    ssl_context: ssl.SSLContext | None = None,
    client_cert: bool = False,
    timeout: float = 5.0,
) -> None:
    """Return once one bootstrap server answers a Kafka request (over TLS where the protocol has TLS; no
    SASL is attempted). Raise :class:`ConfigError` if a server's TLS cannot succeed as configured, else
    :class:`KafkaUnreachable` naming each server's reason. ``client_cert``: whether ``ssl_context`` carries
    a client certificate (only for the hint when a broker hangs up)."""
    tls = security_protocol in TLS_PROTOCOLS
    reasons = []
    for server in bootstrap_servers:
        host, _, port = server.strip().rpartition(":")
        host = host.strip("[]")
        stage = "connect"
        try:
            with socket.create_connection((host, int(port)), timeout=timeout) as sock:
                if not tls:
                    stage = "request"
                    _api_versions(sock, server, security_protocol)
                    return
                stage = "handshake"
                with (ssl_context or build_ssl_context()).wrap_socket(sock, server_hostname=host) as tls_sock:
                    stage = "request"
                    _api_versions(tls_sock, server, security_protocol)
                    return
        except ssl.SSLCertVerificationError as exc:
            if "hostname" in str(exc.verify_message).lower():
                hint = "connect by a name the certificate lists, or set ssl_check_hostname false"
            else:
                hint = "check setting ssl_cafile"
            raise ConfigError(
                f"TLS to Kafka at {server}: the broker's certificate does not verify ({exc.verify_message}); {hint}"
            ) from None
        except ssl.SSLError as exc:
            why = str(exc.reason or _why(exc))
            if "CERTIFICATE" in why.upper():  # the broker refused ours (mutual TLS)
                hint = "the broker did not accept the client certificate: check ssl_certfile / ssl_keyfile"
            else:
                hint = f"does this listener speak TLS (security_protocol = {security_protocol!r})?"
            raise ConfigError(f"TLS to Kafka at {server} failed ({why}): {hint}") from None
        except OSError as exc:
            hint = ""
            if stage == "handshake":
                hint = " in the TLS handshake (a plaintext listener?)"
            elif stage == "request" and tls:
                hint = (
                    " after the TLS handshake (does it accept the client certificate?)"
                    if client_cert
                    else " after the TLS handshake (does it require a client certificate? ssl_certfile is not set)"
                )
            elif stage == "request":
                hint = f" (a TLS listener? security_protocol is {security_protocol!r})"
            reasons.append(f"{server}: {_why(exc)}{hint}")
    raise KafkaUnreachable("cannot reach Kafka: " + "; ".join(reasons))


def _api_versions(sock: socket.socket, server: str, security_protocol: str) -> None:
    """One ApiVersions v0 round trip, the request every Kafka broker answers before any authentication."""
    client_id = b"flowsentinel-probe"
    correlation = 0x0F5E
    body = struct.pack(">hhih", 18, 0, correlation, len(client_id)) + client_id
    sock.sendall(struct.pack(">i", len(body)) + body)
    head = b""
    while len(head) < 8:
        chunk = sock.recv(8 - len(head))
        if not chunk:
            break
        head += chunk
    if head[:1] in (b"\x15", b"\x16") and security_protocol not in TLS_PROTOCOLS:  # a TLS alert or handshake
        raise ConfigError(
            f"Kafka at {server} answers in TLS: set security_protocol to SSL or SASL_SSL (it is "
            f"{security_protocol!r})"
        )
    if len(head) < 8:
        raise ConnectionResetError("closed the connection before answering a Kafka request")
    if struct.unpack(">i", head[4:8])[0] != correlation:
        raise ConfigError(f"{server} did not answer as a Kafka broker does (is it a Kafka listener?)")


def _why(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__
