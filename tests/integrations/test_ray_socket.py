"""The Ray socket transport's handshake (no Ray cluster: the listener and the driver's connect)."""

from __future__ import annotations

import os
import re
import socket
import threading
import time

import pytest

pytest.importorskip("ray", reason="Ray is an optional extra: pip install fastretro[ray]")

from fastretro.errors import FastRetroError, ShardConnectionError  # noqa: E402
from fastretro.integrations.ray_link import _MAGIC, _NONCE, _connect, _LinkListener  # noqa: E402

KEY = os.urandom(32)


class Shard:
    """A listener accepting in a thread, as ``_Served.serve`` does in the actor."""

    def __init__(self, auth_timeout: float = 30.0, timeout: float = 30.0) -> None:
        self.listener = _LinkListener("127.0.0.1", KEY, auth_timeout=auth_timeout)
        self.conn = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._accept, args=(timeout,), daemon=True)
        self._thread.start()

    def _accept(self, timeout: float) -> None:
        try:
            self.conn = self.listener.accept(timeout)
        except BaseException as exc:  # noqa: BLE001 - looked at by the test
            self.error = exc
        finally:
            self.listener.close()

    def join(self, timeout: float = 10.0):
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the listener is still waiting"
        if self.error is not None:
            raise self.error
        return self.conn


def stranger(address, payload: bytes = b"") -> socket.socket:
    sock = socket.create_connection(address, timeout=5)
    if payload:
        sock.sendall(payload)
    return sock


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    """Whether the other side closes ``sock`` within ``within`` seconds (reading what it sent)."""
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def assert_linked(shard: Shard, driver) -> None:
    served = shard.join()
    driver.send((1, "step", ([1, 2],)))
    assert served.recv() == (1, "step", ([1, 2],))
    served.send((1, "ok", "done"))
    assert driver.poll(5) and driver.recv() == (1, "ok", "done")
    served.close()
    driver.close()


def test_a_silent_stranger_connecting_first_does_not_keep_the_driver_out():
    shard = Shard(auth_timeout=30)
    silent = stranger(shard.listener.address)
    try:
        time.sleep(0.2)  # the stranger is the first connection the shard sees
        start = time.monotonic()
        driver = _connect(shard.listener.address, KEY, 0, timeout=10)
        # Served side by side: the driver does not wait out the stranger's 30 s.
        assert time.monotonic() - start < 5
        assert_linked(shard, driver)
        assert closed_by_peer(silent, 5)  # dropped once the driver is in
    finally:
        silent.close()


@pytest.mark.parametrize(
    "garbage",
    [b"x" * 100, b"GET / HTTP/1.1\r\n\r\n", b"\x00\x00\x00\x04junk"],
    ids=["long", "short", "framed"],
)
def test_a_stranger_sending_garbage_is_dropped_and_the_driver_still_connects(garbage):
    shard = Shard(auth_timeout=1)
    bad = stranger(shard.listener.address, garbage)
    try:
        assert closed_by_peer(bad, 5)
        assert shard.error is None and shard._thread.is_alive()  # still listening
        assert shard.listener.dropped == 1
        assert_linked(shard, _connect(shard.listener.address, KEY, 0, timeout=10))
    finally:
        bad.close()


def test_a_stranger_that_stays_silent_is_dropped_after_the_auth_timeout():
    shard = Shard(auth_timeout=0.3)
    silent = stranger(shard.listener.address)
    try:
        hello = silent.recv(len(_MAGIC) + _NONCE)
        assert hello.startswith(_MAGIC)
        start = time.monotonic()
        assert closed_by_peer(silent, 5)
        assert time.monotonic() - start < 3
        assert_linked(shard, _connect(shard.listener.address, KEY, 0, timeout=10))
    finally:
        silent.close()


def test_a_driver_with_the_wrong_key_is_refused_and_the_right_one_still_gets_in():
    shard = Shard()
    address = shard.listener.address
    with pytest.raises(
        ShardConnectionError,
        match=re.escape(
            f"Lost the connection to shard 2 at 127.0.0.1:{address[1]} while authenticating "
            "(the shard closed the connection)"
        ),
    ):
        _connect(address, os.urandom(32), 2, timeout=5)
    assert_linked(shard, _connect(address, KEY, 2, timeout=10))


def test_the_driver_refuses_a_shard_that_cannot_prove_the_key():
    # An impostor on the port: it passes the driver's proof through but cannot answer it.
    server = socket.create_server(("127.0.0.1", 0))
    address = server.getsockname()
    done = threading.Event()

    def impostor():
        conn, _ = server.accept()
        with conn:
            conn.sendall(_MAGIC + os.urandom(_NONCE))
            conn.recv(1024)
            conn.sendall(os.urandom(32))
            done.wait(5)

    threading.Thread(target=impostor, daemon=True).start()
    try:
        with pytest.raises(ShardConnectionError) as caught:
            _connect(address, KEY, 1, timeout=5)
        assert str(caught.value) == (
            f"shard 1 at 127.0.0.1:{address[1]} failed authentication: it does not hold the key"
        )
    finally:
        done.set()
        server.close()


def test_the_driver_gets_its_error_within_the_timeout_when_nobody_answers():
    # A port that accepts TCP connections (the kernel's backlog) but never says anything.
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        start = time.monotonic()
        with pytest.raises(
            ShardConnectionError,
            match=re.escape(
                f"Timed out after 0.5 s authenticating with shard 3 at 127.0.0.1:{port}"
            ),
        ) as caught:
            _connect(("127.0.0.1", port), KEY, 3, timeout=0.5)
        assert time.monotonic() - start < 3
        assert isinstance(caught.value, FastRetroError)
        assert isinstance(caught.value, ConnectionError)
    finally:
        server.close()


def test_the_driver_names_the_shard_when_its_port_is_closed():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
    with pytest.raises(
        ShardConnectionError, match=re.escape(f"Could not connect to shard 4 at 127.0.0.1:{port}")
    ):
        _connect(("127.0.0.1", port), KEY, 4, timeout=2)


def test_the_shard_gives_up_when_no_driver_authenticates_in_time():
    shard = Shard(auth_timeout=0.2, timeout=0.5)
    bad = stranger(shard.listener.address, b"y" * 64)
    try:
        with pytest.raises(
            ShardConnectionError,
            match=re.escape(
                f"No driver authenticated on 127.0.0.1:{shard.listener.address[1]} within 0.5 s "
                "(1 other connection(s) dropped)"
            ),
        ):
            shard.join()
    finally:
        bad.close()


def test_the_linked_sockets_send_without_delay():
    # multiprocessing.connection writes a large message in two parts; with Nagle's algorithm
    # the second part waits for the peer's delayed ACK of the first (~10 ms per step).
    shard = Shard()
    driver = _connect(shard.listener.address, KEY, 0, timeout=10)
    served = shard.join()
    try:
        for conn in (driver, served):
            with socket.socket(fileno=os.dup(conn.fileno())) as sock:
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                assert sock.getblocking()
    finally:
        driver.close()
        served.close()
