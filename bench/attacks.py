"""The attacks of the reliability benchmark's attack run, each as issue 11's attacker ran it, bounded in time.

Each attack is a function `(base_url, stop, tally)`: it attacks the server at `base_url` from `ATTACKER`
(a loopback address of its own, so per-address limits tell it apart from the well-behaved client) until
`stop` is set, counts what the server did to it in `tally`, and returns only once every socket it opened
is closed.
"""

from __future__ import annotations

import base64
import json
import os
import random
import selectors
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from bench.texts import PARAGRAPH, SHORT

ATTACKER = "127.0.0.3"  # loopback accepts any 127/8 source: the attacker is one address, the victim another


class Tally:
    """What the server did to an attacker: counts by outcome, and the most sockets it held at once."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.peak_open = 0
        self._lock = threading.Lock()

    def add(self, outcome: str, amount: int = 1) -> None:
        with self._lock:
            self.counts[outcome] += amount

    def holding(self, sockets: int) -> None:
        with self._lock:
            self.peak_open = max(self.peak_open, sockets)

    def figures(self) -> dict[str, object]:
        with self._lock:
            return {"counts": dict(sorted(self.counts.items())), "peak_sockets": self.peak_open}


AttackFunction = Callable[[str, threading.Event, Tally], None]


@dataclass(frozen=True)
class Attack:
    name: str
    what: str  # one line for the report
    run: AttackFunction
    via_proxy: bool = False  # attacker and well-behaved client both go through a reverse proxy


def connect(base: str, timeout: float = 5, receive_buffer: int | None = None) -> socket.socket:
    """A TCP connection from ATTACKER to the server (a small receive buffer makes a slow reader's reads count)."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.bind((ATTACKER, 0))
        sock.settimeout(timeout)
        sock.connect((host, int(port)))
    except OSError:
        sock.close()
        raise
    return sock


def status_of(head: bytes) -> str:
    """'HTTP/1.1 429 Too Many...' -> '429'; anything else -> 'no status'."""
    parts = head.split(b" ", 2)
    return parts[1].decode("ascii", "replace") if len(parts) >= 2 and parts[0].startswith(b"HTTP/") else "no status"


def answer_of(status: int, body: bytes) -> str:
    """'answered 429 (too many requests from 127.0.0.3)': the error message's gist names the limit that refused,
    and for the rate limit, the address the server took the client for."""
    if status == 200:
        return "answered 200"
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"answered {status}"
    return f"answered {status} ({message.partition(';')[0].partition(':')[0]})"


def connect_or_pause(base: str, stop: threading.Event, tally: Tally, **options: object) -> socket.socket | None:
    """`connect`, or None after counting the failure and pausing a second (the server may be refusing us)."""
    try:
        return connect(base, **options)  # type: ignore[arg-type]
    except OSError:
        tally.add("connect failed")
        stop.wait(1)
        return None


def run_threads(count: int, target: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=target, args=(index,), daemon=True) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# 1. Slow readers ---------------------------------------------------------------------------------------

SLOW_READERS = 10
SLOW_TEXT = "龍" * 4096  # the text: the audio limit refuses it up front
ADMITTED_SLOW_TEXT = PARAGRAPH * 8  # about two minutes of audio: admitted, so only the per-client and pace limits act
SLOW_READ_BYTES, SLOW_READ_EVERY_S = 1024, 4.0


def slow_readers(text: str, speed: float) -> AttackFunction:
    """Ten connections each ask for `text` at `speed`, then read 1 KB every 4 s."""
    return lambda base, stop, tally: _read_slowly(base, stop, tally, text, speed)


def _read_slowly(base: str, stop: threading.Event, tally: Tally, text: str, speed: float) -> None:
    body = json.dumps({"model": "demo", "input": text, "speed": speed}).encode()
    request = (
        b"POST /v1/audio/speech HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )

    def reader(_: int) -> None:
        while not stop.is_set():
            sock = connect_or_pause(base, stop, tally, receive_buffer=4096)
            if sock is None:
                continue
            with sock:
                try:
                    sock.sendall(request)
                    first = True
                    while not stop.is_set():
                        try:
                            chunk = sock.recv(SLOW_READ_BYTES)
                        except TimeoutError:
                            continue
                        if not chunk:
                            tally.add("closed by the server")
                            break
                        if first:
                            tally.add(f"answered {status_of(chunk)}")
                            first = False
                        stop.wait(SLOW_READ_EVERY_S)
                except OSError:
                    tally.add("connection error")
            stop.wait(1)  # before reconnecting: the attacker keeps ten readers going

    run_threads(SLOW_READERS, reader)


# 2. Idle sockets ---------------------------------------------------------------------------------------

IDLE_SOCKETS = 24
NEW_SOCKETS_PER_S = 10
MAX_HELD_SOCKETS = 1000  # bounds the attacker's own file descriptors


def idle_sockets(base: str, stop: threading.Event, tally: Tally) -> None:
    """24 connections that never send a request head, plus a new one every 0.1 s, each held until closed."""
    selector = selectors.DefaultSelector()

    def open_one() -> None:
        try:
            sock = connect(base, timeout=2)
        except OSError:
            tally.add("connect failed")
            return
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        tally.add("opened")

    def drop(sock: socket.socket, outcome: str) -> None:
        selector.unregister(sock)
        sock.close()
        tally.add(outcome)

    try:
        for _ in range(IDLE_SOCKETS):
            open_one()
        next_open = time.monotonic()
        while not stop.is_set():
            for key, _ in selector.select(timeout=0.02):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    drop(sock, "reset by the server")
                    continue
                if data:
                    tally.add(f"answered {status_of(data)}")
                else:
                    drop(sock, "closed by the server")
            if time.monotonic() >= next_open and len(selector.get_map()) < MAX_HELD_SOCKETS:
                open_one()
                next_open += 1 / NEW_SOCKETS_PER_S
            tally.holding(len(selector.get_map()))
    finally:
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        selector.close()


# 3. A huge header --------------------------------------------------------------------------------------

HUGE_HEADER_BYTES = 100 * 2**20
HUGE_HEADER_CHUNK = 2**20
HUGE_HEADER_CHUNK_EVERY_S = 0.1  # 100 MB in about 10 s


def huge_header(base: str, stop: threading.Event, tally: Tally) -> None:
    """One connection sends a 100 MB header at 10 MB/s; when the server ends it, the next one starts."""
    chunk = b"a" * HUGE_HEADER_CHUNK
    while not stop.is_set():
        sock = connect_or_pause(base, stop, tally)
        if sock is None:
            continue
        with sock:
            tally.add("connections")
            sent = 0
            try:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: bench\r\nX-Huge: ")
                due = time.monotonic()
                while sent < HUGE_HEADER_BYTES and not stop.is_set() and not _readable(sock):
                    sock.sendall(chunk)
                    sent += len(chunk)
                    due += HUGE_HEADER_CHUNK_EVERY_S
                    stop.wait(max(0.0, due - time.monotonic()))
                if sent >= HUGE_HEADER_BYTES:
                    sock.sendall(b"\r\n\r\n")
                    tally.add("whole header sent")
                if _readable(sock) or sent >= HUGE_HEADER_BYTES:
                    answer = sock.recv(4096)
                    tally.add(f"answered {status_of(answer)}" if answer else "closed by the server")
            except TimeoutError:
                tally.add("server stopped reading")
            except OSError:
                tally.add("reset by the server")
            tally.add("MB sent", sent // 2**20)


def _readable(sock: socket.socket) -> bool:
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        return bool(selector.select(0))


# 4. Spoofed X-Forwarded-For ----------------------------------------------------------------------------

SPOOFERS = 10  # more than WORKERS + QUEUE_SIZE (10 by default): unlimited, they fill the server


def spoofed_forwarded_for(base: str, stop: threading.Event, tally: Tally) -> None:
    """Ten clients ask for a short text without pause, each request with a fresh X-Forwarded-For: through a
    proxy that appends the real peer, the rate limit must still count them as one client. The text is short
    so that what the rate limit lets through costs little; what it does not stop fills every slot."""

    def spoofer(index: int) -> None:
        rng = random.Random(index)
        transport = httpx.HTTPTransport(local_address=ATTACKER)
        with httpx.Client(transport=transport, timeout=60) as client:
            while not stop.is_set():
                spoofed = ".".join(str(rng.randrange(1, 255)) for _ in range(4))
                try:
                    response = client.post(
                        f"{base}/v1/audio/speech",
                        json={"model": "demo", "input": SHORT},
                        headers={"X-Forwarded-For": spoofed},
                    )
                except httpx.HTTPError as error:
                    tally.add(f"failed: {type(error).__name__}")
                    stop.wait(0.5)
                    continue
                tally.add(answer_of(response.status_code, response.content))
                if response.status_code != 200:
                    stop.wait(0.5)  # an attacker ignores Retry-After, but not the machine's other users

    run_threads(SPOOFERS, spoofer)


# 5. Websocket upgrade ----------------------------------------------------------------------------------

UPGRADE_PATHS = ("/", "/v1/audio/speech", "/health", "/ws")
UPGRADERS = 2
MAX_HELD_UPGRADES = 50


def websocket_upgrade(base: str, stop: threading.Event, tally: Tally) -> None:
    """Websocket handshakes on a few paths, about ten a second; a connection the server upgrades is held open."""
    held: list[socket.socket] = []
    lock = threading.Lock()

    def upgrader(index: int) -> None:
        for attempt in range(10**9):
            if stop.is_set():
                return
            path = UPGRADE_PATHS[(attempt + index) % len(UPGRADE_PATHS)]
            key = base64.b64encode(os.urandom(16)).decode()
            head = (
                f"GET {path} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
            sock = connect_or_pause(base, stop, tally)
            if sock is None:
                continue
            try:
                sock.sendall(head)
                answer = sock.recv(4096)
                status = status_of(answer) if answer else "closed"
                tally.add(f"{path} answered {status}")
            except OSError:
                tally.add(f"{path} connection error")
                status = "error"
            with lock:
                if status == "101" and len(held) < MAX_HELD_UPGRADES:
                    held.append(sock)
                    tally.holding(len(held))
                else:
                    sock.close()
            stop.wait(0.2)

    try:
        run_threads(UPGRADERS, upgrader)
    finally:
        for sock in held:
            sock.close()


ATTACKS = (
    Attack(
        "slow readers",
        f"{SLOW_READERS} connections: 4096 × 龍 at speed 0.25, reading 1 KB every 4 s",
        slow_readers(SLOW_TEXT, 0.25),
    ),
    Attack(
        "slow readers, admitted text",
        f"{SLOW_READERS} connections: a paragraph × 8 (about 2 min of audio) at speed 1, reading 1 KB every 4 s",
        slow_readers(ADMITTED_SLOW_TEXT, 1.0),
    ),
    Attack(
        "idle sockets",
        f"{IDLE_SOCKETS} connections that never send a request head, and {NEW_SOCKETS_PER_S} more every second",
        idle_sockets,
    ),
    Attack("huge header", "a 100 MB header at 10 MB/s, on one connection at a time", huge_header),
    Attack(
        "spoofed X-Forwarded-For",
        f"{SPOOFERS} clients ask for a short text without pause (0.5 s after a refusal), a fresh X-Forwarded-For "
        "each request, through a reverse proxy",
        spoofed_forwarded_for,
        via_proxy=True,
    ),
    Attack(
        "websocket upgrade",
        f"websocket handshakes on {', '.join(UPGRADE_PATHS)}, about {UPGRADERS * 5} a second",
        websocket_upgrade,
    ),
)
