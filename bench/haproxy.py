"""A real HAProxy on loopback in front of one or more servers, configured by deploy/haproxy/haproxy.cfg.

For the tests (tests/test_proxy_e2e.py, tests/test_scale_e2e.py) and the benchmarks (bench/reliability.py,
bench/scale.py): `with haproxy_in_front_of(port) as url:` or `with balancer(ports) as running:` renders the
configuration the docs recommend with these ports (`render_config`: the file users copy is the file tested),
runs `haproxy -f ... -db` (foreground), returns once it accepts connections and stops it afterwards. HAProxy must
be installed (scripts/test.sh installs Debian's).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.server_process import ROOT, free_port

RECOMMENDED = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
REPLICA_HEADER = "x-replica"  # names the replica that served a response (added for the measurements only)
#: The lines that make a dead or draining replica leave rotation and replay requests it never answered:
#: `render_config(..., without=RESILIENCE)` is the configuration that shows they are needed.
RESILIENCE = ("default-server", "option httpchk", "http-check", "retries", "option redispatch", "retry-on")

_BIND = re.compile(r"^(\s*)bind\s+\S+(.*)$")
_SERVER = re.compile(r"^(\s*)server\s+\S+\s+\S+(.*)$")


def replica_name(index: int) -> str:
    return f"replica{index + 1}"


def render_config(
    template: str,
    port: int,
    backend_ports: Sequence[int],
    *,
    without: Iterable[str] = (),
    stats_socket: Path | None = None,
) -> str:
    """`template` (the recommended file) listening on 127.0.0.1:`port` with one `server` line per backend port.

    Every other line is kept as written, except lines starting with a directive in `without`. The server lines
    keep the first template server line's options. `stats_socket` adds an admin socket (per-replica counts and
    states) and a response header naming the replica: observation only, no effect on routing."""
    dropped = tuple(without)
    lines, binds, servers_at = [], 0, None
    server_options = ""
    for line in template.splitlines():
        directive = line.strip()
        if dropped and directive.startswith(dropped):
            continue
        if bind := _BIND.match(line):
            lines.append(f"{bind[1]}bind 127.0.0.1:{port}{bind[2]}")
            binds += 1
            continue
        if server := _SERVER.match(line):
            if servers_at is None:
                servers_at, server_options, indent = len(lines), server[2], server[1]
            continue
        lines.append(line)
    if binds != 1 or servers_at is None:
        raise ValueError(f"the template needs one `bind` line and at least one `server` line (found {binds} bind lines)")
    servers = [
        f"{indent}server {replica_name(index)} 127.0.0.1:{backend}{server_options}" for index, backend in enumerate(backend_ports)
    ]
    if stats_socket is not None:
        servers.append(f"{indent}http-response set-header {REPLICA_HEADER} %s")
    lines[servers_at:servers_at] = servers
    if stats_socket is not None:
        at = lines.index("global") + 1
        lines.insert(at, f"    stats socket {stats_socket} mode 600 level admin")
    return "\n".join(lines) + "\n"


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def haproxy_binary() -> str:
    binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")  # sbin: not on every PATH
    if binary is None:
        raise RuntimeError("haproxy is not installed (on Debian or Ubuntu: apt-get install haproxy)")
    return binary


@dataclass
class RunningBalancer:
    """A running HAProxy: its base URL and its admin socket."""

    url: str
    socket_path: Path
    config: str

    def command(self, line: str) -> str:
        """One command on the admin socket (`show stat`, `show servers state`, ...): its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def replica_stats(self) -> dict[str, dict[str, str]]:
        """`show stat` for each replica: {name: {column: value}} (`stot` sessions, `status` UP/DOWN, `hrsp_5xx`, ...)."""
        rows = self.command("show stat").splitlines()
        columns = rows[0].lstrip("# ").split(",")
        stats = {}
        for row in rows[1:]:
            fields = dict(zip(columns, row.split(","), strict=False))
            if fields.get("svname", "").startswith("replica"):
                stats[fields["svname"]] = fields
        return stats


@contextmanager
def balancer(
    backend_ports: Sequence[int],
    *,
    without: Iterable[str] = (),
    template: Path = RECOMMENDED,
    start_timeout: float = 10,
) -> Iterator[RunningBalancer]:
    """HAProxy on a free loopback port in front of 127.0.0.1:`backend_ports`, configured from `template`."""
    binary = haproxy_binary()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="haproxy-") as folder:
        stats_socket = Path(folder) / "admin.sock"
        config_text = render_config(template.read_text(), port, backend_ports, without=without, stats_socket=stats_socket)
        config = Path(folder) / "haproxy.cfg"
        config.write_text(config_text)
        log_path = Path(folder) / "haproxy.log"
        log = log_path.open("w")
        process = subprocess.Popen(
            [binary, "-f", str(config), "-db"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + start_timeout
            while not (_accepts(port) and stats_socket.exists()):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    output = log_path.read_text(errors="replace")
                    raise RuntimeError(f"haproxy did not start listening on {port} (exit {process.poll()}):\n{output}")
                time.sleep(0.05)
            yield RunningBalancer(f"http://127.0.0.1:{port}", stats_socket, config_text)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


@contextmanager
def haproxy_in_front_of(backend_port: int, start_timeout: float = 10) -> Iterator[str]:
    """The recommended configuration in front of one server on 127.0.0.1:`backend_port`; yields its base URL."""
    with balancer([backend_port], start_timeout=start_timeout) as running:
        yield running.url
