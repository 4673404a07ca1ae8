"""A real HAProxy on loopback in front of a server, configured as README recommends (`option forwardfor`).

For the tests (tests/test_proxy_e2e.py) and the benchmark: `with haproxy_in_front_of(backend_port) as url:`
writes the configuration to a temporary folder, runs `haproxy -f ... -db` (foreground), returns once it
accepts connections and stops it afterwards. HAProxy must be installed (scripts/test.sh installs Debian's).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.server_process import free_port

# `option forwardfor` appends the peer's address as a new X-Forwarded-For header line, after whatever the
# client sent: the server must read every occurrence of the header and trust only the rightmost entry.
CONFIG = """\
global
    maxconn 512

defaults
    mode http
    option forwardfor
    timeout connect 5s
    timeout client 300s
    timeout server 300s

frontend public
    bind 127.0.0.1:{port}
    default_backend speech

backend speech
    server app 127.0.0.1:{backend_port}
"""


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def haproxy_in_front_of(backend_port: int, start_timeout: float = 10) -> Iterator[str]:
    """HAProxy on a free loopback port forwarding to 127.0.0.1:`backend_port`; yields its base URL."""
    binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")  # sbin: not on every PATH
    if binary is None:
        raise RuntimeError("haproxy is not installed (on Debian or Ubuntu: apt-get install haproxy)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="haproxy-") as folder:
        config = Path(folder) / "haproxy.cfg"
        config.write_text(CONFIG.format(port=port, backend_port=backend_port))
        log = (Path(folder) / "haproxy.log").open("w")
        process = subprocess.Popen(
            [binary, "-f", str(config), "-db"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + start_timeout
            while not _accepts(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    output = (Path(folder) / "haproxy.log").read_text(errors="replace")
                    raise RuntimeError(f"haproxy did not start listening on {port} (exit {process.poll()}):\n{output}")
                time.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
