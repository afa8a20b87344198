"""The driver's link to each Ray shard, and the shard it reaches (fastretro/integrations/ray.py).

A shard (:class:`_Shard`, a Ray actor) owns a local VecRetroEnv. The driver reaches it through
a :class:`_SocketLink` (a direct TCP connection, the default) or a :class:`_RayLink` (Ray actor
calls): ``TRANSPORTS`` names them.

Who may connect: the shard listens on its port (for ``ACCEPT_TIMEOUT_S`` at most) until its
driver proves that it holds the shard's key: a challenge-response with HMAC-SHA256 in both
directions, so the driver knows it reached its shard too. Anyone else who connects is dropped
once they fail the challenge or stay silent for ``AUTH_TIMEOUT_S``, and the shard goes on
listening; nothing is unpickled before the challenge is passed. The driver gives up after
``_SocketLink.CONNECT_TIMEOUT_S`` with a :class:`~fastretro.errors.ShardConnectionError`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import selectors
import socket
import time
from multiprocessing import connection as mp_connection

import ray

from fastretro.config import EnvConfig, PoolConfig
from fastretro.errors import InvalidArgumentError, ShardConnectionError

#: Opens the shard's challenge: what answers on the port, and which handshake it speaks.
_MAGIC = b"fastretro-link/1"
_NONCE = 32  # bytes of each side's random challenge
_DIGEST = hashlib.sha256().digest_size
#: Seconds a connection to a shard's port has to answer the challenge before it is dropped.
AUTH_TIMEOUT_S = 5.0
#: Seconds a shard listens for its driver before giving up (longer than the driver waits).
ACCEPT_TIMEOUT_S = 120.0
#: Unauthenticated connections a shard holds at once; more are refused until some are dropped.
MAX_PENDING = 64


def _proof(key: bytes, who: bytes, challenge: bytes, answer: bytes) -> bytes:
    """HMAC-SHA256 over a side's name and both challenges: a proof can't be replayed or echoed."""
    return hmac.new(key, who + challenge + answer, hashlib.sha256).digest()


def _as_connection(sock: socket.socket) -> mp_connection.Connection:
    """An authenticated socket as a ``multiprocessing`` connection (framing and pickling).

    TCP_NODELAY: ``multiprocessing.connection`` sends a large message as two writes (its length,
    then the data); with Nagle's algorithm on, the second waits for the peer's delayed ACK of the
    first, which made a step of 2 shards of 2 envs (84x84x4 observations) take ~12 ms instead of
    ~4.6 ms here (examples/ray_pool.py).
    """
    sock.setblocking(True)  # a socket with a timeout is non-blocking underneath
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return mp_connection.Connection(sock.detach())


class _LinkListener:
    """Shard side of the direct connection: a TCP port that only the shard's driver gets through.

    Every connection gets ``_MAGIC`` and a random challenge, and must answer with its own
    challenge and ``_proof(key, b"driver", ...)`` within ``auth_timeout`` seconds; the shard
    then proves itself with ``_proof(key, b"shard", ...)``. Connections are served side by
    side (one selector), so a stranger that stays silent does not delay the driver.
    """

    def __init__(self, host: str, key: bytes, auth_timeout: float = AUTH_TIMEOUT_S) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.create_server((host, 0), family=family, backlog=16)
        self._key = key
        self.auth_timeout = auth_timeout
        #: (host, port) the driver connects to.
        self.address: tuple[str, int] = self._sock.getsockname()[:2]
        #: Connections dropped so far for failing or not answering the challenge.
        self.dropped = 0

    def accept(self, timeout: float = ACCEPT_TIMEOUT_S) -> mp_connection.Connection:
        """The first connection that proves it holds the key; raises if none does in time.

        Raises:
            ShardConnectionError: no connection authenticated within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        # socket -> [challenge sent, bytes received so far, when it is dropped]
        pending: dict[socket.socket, list] = {}
        sel = selectors.DefaultSelector()
        self._sock.setblocking(False)
        sel.register(self._sock, selectors.EVENT_READ)

        def drop(peer: socket.socket) -> None:
            self.dropped += 1
            sel.unregister(peer)
            del pending[peer]
            peer.close()

        try:
            while True:
                now = time.monotonic()
                for peer in [p for p, (_, _, until) in pending.items() if now >= until]:
                    drop(peer)
                if now >= deadline:
                    raise ShardConnectionError(
                        f"No driver authenticated on {_where(self.address)} within {timeout} s "
                        f"({self.dropped} other connection(s) dropped)"
                    )
                wake = min([deadline] + [until for _, _, until in pending.values()])
                for ready, _ in sel.select(wake - now):
                    if ready.fileobj is self._sock:
                        self._greet(sel, pending, now)
                        continue
                    peer = ready.fileobj
                    challenge, got, _ = pending[peer]
                    try:
                        chunk = peer.recv(_NONCE + _DIGEST - len(got))
                    except BlockingIOError:
                        continue
                    except OSError:
                        chunk = b""
                    got += chunk
                    if not chunk or len(got) < _NONCE + _DIGEST:
                        if chunk:
                            pending[peer][1] = got
                        else:
                            drop(peer)  # closed before answering
                        continue
                    answer, proof = got[:_NONCE], got[_NONCE:]
                    if not hmac.compare_digest(
                        proof, _proof(self._key, b"driver", challenge, answer)
                    ):
                        drop(peer)
                        continue
                    sel.unregister(peer)
                    del pending[peer]
                    try:
                        peer.setblocking(True)
                        peer.sendall(_proof(self._key, b"shard", answer, challenge))
                    except OSError:
                        peer.close()
                        continue
                    return _as_connection(peer)
        finally:
            sel.close()
            for peer in pending:
                peer.close()

    def _greet(self, sel, pending: dict, now: float) -> None:
        """Accept a waiting connection and send it the challenge."""
        try:
            peer, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        if len(pending) >= MAX_PENDING:
            self.dropped += 1
            peer.close()
            return
        challenge = os.urandom(_NONCE)
        peer.setblocking(False)
        try:
            # 48 bytes into a fresh connection's empty send buffer: never a partial write.
            peer.send(_MAGIC + challenge)
        except OSError:
            self.dropped += 1
            peer.close()
            return
        pending[peer] = [challenge, b"", now + self.auth_timeout]
        sel.register(peer, selectors.EVENT_READ)

    def close(self) -> None:
        """Stop listening (an accepted connection stays open)."""
        self._sock.close()


def _where(address: tuple) -> str:
    host, port = address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _connect(
    address: tuple[str, int], key: bytes, shard: int, timeout: float
) -> mp_connection.Connection:
    """Driver side: connect to a shard's :class:`_LinkListener` and authenticate both ways.

    Raises:
        ShardConnectionError: naming the shard and its address, when the connection is refused,
            the shard does not answer within ``timeout`` seconds, or it fails the challenge.
    """
    where = f"shard {shard} at {_where(address)}"
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection(tuple(address[:2]), timeout=timeout)
    except OSError as exc:
        raise ShardConnectionError(
            f"Could not connect to {where} within {timeout} s ({exc}); the driver must reach "
            'each node on ephemeral TCP ports, or use transport="ray"'
        ) from exc
    try:
        hello = _recv_exactly(sock, len(_MAGIC) + _NONCE, deadline)
        if not hmac.compare_digest(hello[: len(_MAGIC)], _MAGIC):
            raise ShardConnectionError(f"{where} did not answer as a fastretro shard")
        challenge = hello[len(_MAGIC) :]
        answer = os.urandom(_NONCE)
        sock.sendall(answer + _proof(key, b"driver", challenge, answer))
        proof = _recv_exactly(sock, _DIGEST, deadline)
        if not hmac.compare_digest(proof, _proof(key, b"shard", answer, challenge)):
            raise ShardConnectionError(f"{where} failed authentication: it does not hold the key")
    except ShardConnectionError:  # a ConnectionError, so an OSError: raised as it is
        sock.close()
        raise
    except TimeoutError as exc:
        sock.close()
        raise ShardConnectionError(
            f"Timed out after {timeout} s authenticating with {where}: the shard did not answer"
        ) from exc
    except (OSError, EOFError) as exc:
        sock.close()
        raise ShardConnectionError(
            f"Lost the connection to {where} while authenticating ({exc})"
        ) from exc
    except BaseException:
        sock.close()
        raise
    return _as_connection(sock)


def _recv_exactly(sock: socket.socket, n: int, deadline: float) -> bytes:
    """``n`` bytes from ``sock`` before ``deadline`` (``time.monotonic()``), or raise."""
    got = b""
    while len(got) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        chunk = sock.recv(n - len(got))
        if not chunk:
            raise EOFError("the shard closed the connection")
        got += chunk
    return got


class _ShardLost(Exception):
    """A shard's actor or its connection is gone (raised by a link, handled by the env)."""


class _Served:
    """Actor side of the direct connection: a TCP listener, then the data loop that serves it.

    The driver asks the actor (a Ray call) to ``listen``, starts ``serve`` (a Ray call that runs
    until the channel closes, so its ObjectRef tells the driver if the actor dies) and connects.
    Requests are ``(seq, op, args)``; each gets ``(seq, "ok", result)`` or
    ``(seq, "error", exception)``. :class:`_LinkListener` authenticates the driver with a
    per-shard random key; ``multiprocessing.connection`` then frames and pickles the messages.
    """

    OPS: tuple[str, ...] = ()

    def listen(self, authkey: bytes) -> tuple[str, int]:
        self._listener = _LinkListener(ray.util.get_node_ip_address(), authkey)
        return self._listener.address

    def serve(self) -> None:
        try:
            conn = self._listener.accept()
        finally:
            self._listener.close()
        with conn:
            while True:
                try:
                    seq, op, args = conn.recv()
                except (EOFError, OSError):
                    return  # the driver went away
                if op not in self.OPS:
                    conn.send((seq, "error", InvalidArgumentError(f"Unknown shard call {op!r}")))
                    continue
                try:
                    reply = (seq, "ok", getattr(self, op)(*args))
                except Exception as exc:  # noqa: BLE001 - handed to the driver, raised there
                    reply = (seq, "error", exc)
                try:
                    conn.send(reply)
                except Exception as exc:  # noqa: BLE001 - an unpicklable exception
                    conn.send((seq, "error", RuntimeError(f"{op} failed: {exc!r}")))
                if op == "close":
                    return


class _Shard(_Served):
    """A Ray actor body: one local VecRetroEnv and the calls the driver makes on it."""

    OPS = ("reset", "step", "close")

    def __init__(self, config: EnvConfig, pool: PoolConfig) -> None:
        from fastretro import VecRetroEnv

        self.env = None
        self._failure: Exception | None = None
        try:
            self.env = VecRetroEnv(config, pool=pool)
        except Exception as exc:  # noqa: BLE001 - raised by describe(), as itself
            # An exception in an actor's constructor reaches the driver as Ray's ActorDiedError
            # with the original only as text; from a method it keeps its type and message.
            self._failure = exc

    def describe(self) -> tuple:
        if self._failure is not None:
            raise self._failure
        env = self.env
        return (
            env.single_observation_space,
            env.single_action_space,
            env.metadata["autoreset_mode"],
            getattr(env, "preprocessing", None),
        )

    def reset(self, seeds, options):
        return self.env.reset(seed=seeds, options=options)

    def step(self, actions):
        return self.env.step(actions)

    def close(self) -> None:
        if self.env is not None:
            self.env.close()


class _RayLink:
    """Shard calls as Ray actor method calls: one object-store round trip each."""

    def __init__(self, actor, shard: int = 0) -> None:
        self.actor = actor
        self._ref = None

    def submit(self, op: str, *args) -> None:
        self._ref = getattr(self.actor, op).remote(*args)

    def result(self, timeout: float | None = None):
        try:
            return ray.get(self._ref, timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            raise TimeoutError(f"No result within {timeout} s") from None
        except ray.exceptions.RayActorError as exc:
            raise _ShardLost(type(exc).__name__) from exc
        finally:
            self._ref = None

    @staticmethod
    def first_ready(links: list, timeout: float | None):
        """The first link of ``links`` (in their order) with a result, or None on timeout."""
        refs = [link._ref for link in links]
        if not ray.wait(refs, num_returns=1, timeout=timeout)[0]:
            return None
        ready = set(ray.wait(refs, num_returns=len(refs), timeout=0)[0])
        return next(link for link in links if link._ref in ready)

    def close(self, timeout: float) -> None:
        ray.get(self.actor.close.remote(), timeout=timeout)


class _SocketLink:
    """Shard calls over a direct TCP connection to the actor, set up through Ray.

    Measured here (bench/bench_ray.py, 2 shards of 4 envs): a Ray actor call costs ~1.7 ms of
    actor CPU and ~1 ms of driver CPU per shard per step, which on a small machine competes with
    the emulators; over the direct connection the driver spends ~0.25 ms per shard. Needs the
    driver to reach each node on an ephemeral TCP port (Ray's own nodes talk that way too);
    ``transport="ray"`` avoids it.
    """

    #: Seconds between checks that the actor is alive while waiting for a reply (a node that
    #: vanishes without closing its connections is only seen by Ray's health checks).
    LIVENESS_S = 1.0
    #: Seconds the driver waits to connect to a shard and authenticate (the shard listens for
    #: ``ACCEPT_TIMEOUT_S``, longer: a slow driver gets the clearer error, its own).
    CONNECT_TIMEOUT_S = 60.0

    def __init__(self, actor, shard: int = 0) -> None:
        self.actor = actor
        key = os.urandom(32)
        address = ray.get(actor.listen.remote(key))
        self._serving = actor.serve.remote()
        self.conn = _connect(address, key, shard, self.CONNECT_TIMEOUT_S)
        self._seq = 0
        self._broken: _ShardLost | None = None

    def submit(self, op: str, *args) -> None:
        self._seq += 1
        try:
            self.conn.send((self._seq, op, args))
        except (OSError, EOFError) as exc:
            # Reported by result(), where the env decides between an error and a restart.
            self._broken = _ShardLost(f"connection lost: {type(exc).__name__}")

    def poll(self, timeout: float | None) -> bool:
        """Whether a reply (or the connection's end) is ready, checking the actor is alive."""
        if self._broken is not None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = self.LIVENESS_S if deadline is None else deadline - time.monotonic()
            if self.conn.poll(max(0.0, min(left, self.LIVENESS_S))):
                return True
            done, _ = ray.wait([self._serving], timeout=0)
            if done:  # serve() returned or its actor died: either way no reply will come
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def result(self, timeout: float | None = None):
        while True:  # skip replies to calls that timed out earlier
            if self._broken is not None:
                raise self._broken
            if not self.poll(timeout):
                raise TimeoutError(f"No result within {timeout} s")
            if not self.conn.poll(0):  # woken by the actor's end, not by a reply
                raise _ShardLost(self._why_serve_ended())
            try:
                seq, status, value = self.conn.recv()
            except (OSError, EOFError) as exc:
                raise _ShardLost(f"connection lost: {type(exc).__name__}") from exc
            if seq == self._seq:
                break
        if status == "error":
            raise value
        return value

    def _why_serve_ended(self) -> str:
        try:
            ray.get(self._serving, timeout=1)
        except ray.exceptions.RayActorError as exc:
            return type(exc).__name__
        except Exception as exc:  # noqa: BLE001 - reported, not handled
            return repr(exc)
        return "the shard's data loop ended"

    @staticmethod
    def first_ready(links: list, timeout: float | None):
        """The first link of ``links`` (in their order) with a reply, or None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = _SocketLink.LIVENESS_S if deadline is None else deadline - time.monotonic()
            broken = [link for link in links if link._broken is not None]
            if broken:
                return broken[0]
            conns = [link.conn for link in links]
            ready = mp_connection.wait(conns, max(0.0, min(left, _SocketLink.LIVENESS_S)))
            if ready:
                return next(link for link in links if link.conn in ready)
            for link in links:
                if ray.wait([link._serving], timeout=0)[0]:
                    return link
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def close(self, timeout: float) -> None:
        try:
            self.submit("close")
            self.result(timeout)
        finally:
            self.conn.close()


TRANSPORTS = {"socket": _SocketLink, "ray": _RayLink}
