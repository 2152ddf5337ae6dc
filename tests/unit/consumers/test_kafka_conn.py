"""The connection probe's sorting of causes, against local sockets (no broker; the TLS cases against a real
TLS endpoint are in tests/integration/test_tls.py)."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from flowsentinel.detector.errors import ConfigError
from flowsentinel.kafka.conn import KafkaUnreachable, probe


def serve_once(reply: bytes | None) -> tuple[int, threading.Thread]:
    """A local listener that reads one request and answers ``reply`` (None: hangs up)."""
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def run() -> None:
        with srv:
            conn, _ = srv.accept()
            with conn:
                conn.recv(1024)
                if reply is not None:
                    conn.sendall(reply)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return port, t


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_is_unreachable_and_names_every_server():
    a, b = closed_port(), closed_port()
    with pytest.raises(
        KafkaUnreachable, match=rf"127.0.0.1:{a}: connection refused; 127.0.0.1:{b}: connection refused"
    ):
        probe([f"127.0.0.1:{a}", f"127.0.0.1:{b}"], timeout=2)


def test_a_kafka_answer_passes_and_the_first_server_that_answers_is_enough():
    answer = struct.pack(">ii", 6, 0x0F5E) + b"\x00\x00"  # size, the probe's correlation id, error 0
    port, t = serve_once(answer)
    probe([f"127.0.0.1:{closed_port()}", f"127.0.0.1:{port}"], timeout=2)
    t.join(5)


def test_a_listener_that_hangs_up_or_answers_in_tls_is_named():
    port, t = serve_once(None)
    with pytest.raises(
        KafkaUnreachable, match=r"closed the connection before answering a Kafka request \(a TLS listener"
    ):
        probe([f"127.0.0.1:{port}"], timeout=2)
    t.join(5)
    port, t = serve_once(b"\x15\x03\x03\x00\x02\x02\x32")  # a TLS alert record
    with pytest.raises(ConfigError, match="answers in TLS: set security_protocol to SSL or SASL_SSL"):
        probe([f"127.0.0.1:{port}"], timeout=2)
    t.join(5)
    port, t = serve_once(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    with pytest.raises(ConfigError, match="did not answer as a Kafka broker does"):
        probe([f"127.0.0.1:{port}"], timeout=2)
    t.join(5)
