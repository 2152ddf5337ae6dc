"""A real TLS endpoint for the integration tests: a test CA, certificates made with the ``openssl`` tool, and a
TLS-terminating TCP proxy in front of the embedded broker.

The embedded broker (Tansu 0.6) has TLS and SASL switches, but neither works here: its TLS listener never
completes a handshake and ``--authentication`` refuses the very request that creates the first user. So
the TLS tests put this proxy in front of a plaintext broker that advertises the proxy's address: every
client connection, bootstrap and partition leader alike, is a real TLS session with the client's own TLS
stack (kafka-python's, or kcat's librdkafka), verified against the test CA and, with ``require_client_cert``,
presenting a client certificate (mutual TLS). What is tested is the client side, ours; the broker side of
TLS is the proxy's. SASL cannot be exercised against a real broker here.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certs:
    ca: Path  # the test CA's certificate (what a client trusts)
    server_cert: Path
    server_key: Path
    client_cert: Path  # signed by the same CA, for mutual TLS
    client_key: Path  # encrypted with ``client_key_password``
    client_key_password: str
    other_ca: Path  # a CA that signed nothing here: trusting it must fail the handshake


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(directory: Path) -> Certs:
    """A CA, a server certificate for 127.0.0.1 / localhost, a client certificate, and an unrelated CA."""
    if shutil.which("openssl") is None:
        raise RuntimeError("the TLS tests need the openssl tool (Debian package openssl)")
    d = directory
    d.mkdir(parents=True, exist_ok=True)
    days = "2"
    for ca in ("ca", "other-ca"):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
            "-days", days, "-subj", f"/CN=flowsentinel test {ca}", cwd=d,
        )  # fmt: skip
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    password = "client-key-pass"
    for name in ("server", "client"):
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.plain.key", "-out", f"{name}.csr",
            "-subj", f"/CN=flowsentinel test {name}", cwd=d,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", days, "-extfile", f"{name}.ext", cwd=d,
        )  # fmt: skip
    _openssl(
        "pkey",
        "-in",
        "client.plain.key",
        "-aes256",
        "-passout",
        f"pass:{password}",
        "-out",
        "client.key",
        cwd=d,
    )
    return Certs(
        ca=d / "ca.pem",
        server_cert=d / "server.pem",
        server_key=d / "server.plain.key",
        client_cert=d / "client.pem",
        client_key=d / "client.key",
        client_key_password=password,
        other_ca=d / "other-ca.pem",
    )


class TlsProxy:
    """Accepts TLS on 127.0.0.1:``port`` and pipes each connection's plaintext to ``upstream_port``.

    Runs an asyncio loop in a daemon thread; ``handshakes`` counts completed TLS handshakes. Handshakes that
    fail (a client that does not trust the server, or brings no certificate when one is required) are what
    some tests provoke, so they are not logged."""

    def __init__(self, certs: Certs, upstream_port: int, port: int, *, require_client_cert: bool = False):
        self.port = port
        self.upstream_port = upstream_port
        self.handshakes = 0
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(certs.server_cert), str(certs.server_key))
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(str(certs.ca))
        self._ctx = ctx
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name=f"tls-proxy-{port}", daemon=True)

    def __enter__(self) -> TlsProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("TLS proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.set_exception_handler(self._on_loop_error)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, ssl=self._ctx, ssl_handshake_timeout=10
        )
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, ssl.SSLError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):  # the other side may already be gone
                    dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        # a failed TLS handshake surfaces here, not in _handle
        if not isinstance(context.get("exception"), ssl.SSLError | ConnectionError | TimeoutError):
            loop.default_exception_handler(context)
