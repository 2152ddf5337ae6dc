"""``flowsentinel demo`` stops on the first Ctrl+C in every phase, and never leaves its embedded broker behind
(the broker runs in its own process session: were the demo to exit without stopping it, nothing would)."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.support import wait_for

pytestmark = pytest.mark.integration


class Demo:
    """A demo process whose output is read as it comes."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-u",
                "-m",
                "flowsentinel",
                "demo",
                "--metrics-port",
                "0",
                "--rate",
                "300",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, needle: str, timeout: float) -> None:
        wait_for(lambda: needle in self.text or self.proc.poll() is not None, timeout, repr(needle))
        assert needle in self.text, self.text[-3000:]

    def broker_port(self) -> int:
        m = re.search(r"broker \(Tansu\) on 127\.0\.0\.1:(\d+)", self.text)
        assert m, self.text[-3000:]
        return int(m.group(1))

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def exit_code(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"still running {timeout:.0f}s after Ctrl+C:\n{self.text[-3000:]}")


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def assert_broker_gone(port: int) -> None:
    wait_for(lambda: not listening(port), 10, f"the embedded broker on port {port} to be gone")


def test_first_ctrl_c_during_training_stops_it_and_the_broker(tmp_path):
    demo = Demo("--workdir", str(tmp_path))  # no model there: the demo trains one
    demo.wait_for_line("training a demo model", 60)
    port = demo.broker_port()
    time.sleep(3)  # into the epochs
    demo.interrupt()
    assert demo.exit_code(30) == 0
    assert "stopped cleanly" in demo.text and "model " not in demo.text.split("training a demo model")[1]
    assert not (tmp_path / "model").exists(), "an interrupted training saves no model"
    assert_broker_gone(port)


def test_first_ctrl_c_while_starting_up_stops_everything(model_dir, tmp_path):
    demo = Demo("--model", str(model_dir), "--workdir", str(tmp_path))
    demo.wait_for_line("embedded Kafka-protocol broker", 60)
    port = demo.broker_port()
    demo.interrupt()  # topics being created, or the service starting
    assert demo.exit_code(40) == 0, demo.text[-3000:]
    assert "stopped cleanly" in demo.text
    assert_broker_gone(port)


def test_first_ctrl_c_while_streaming_drains_and_stops(model_dir, tmp_path):
    demo = Demo("--model", str(model_dir), "--workdir", str(tmp_path))
    demo.wait_for_line("Ctrl+C to stop", 60)
    port = demo.broker_port()
    time.sleep(2)
    demo.interrupt()
    assert demo.exit_code(40) == 0, demo.text[-3000:]
    assert re.search(r"stopped cleanly: [\d,]+ records scored", demo.text)
    assert_broker_gone(port)


def test_second_ctrl_c_exits_at_once_and_takes_the_broker_down(model_dir, tmp_path):
    demo = Demo("--model", str(model_dir), "--workdir", str(tmp_path))
    demo.wait_for_line("Ctrl+C to stop", 60)
    port = demo.broker_port()
    demo.interrupt()
    demo.wait_for_line("stopping", 10)
    demo.interrupt()
    assert demo.exit_code(10) == 130
    assert "interrupted twice" in demo.text
    assert_broker_gone(port)
