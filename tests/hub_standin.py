"""A local stand-in for the Hugging Face Hub's HTTP API, for testing real downloads offline.

The GenieData download calls `huggingface_hub.snapshot_download`, and tests cannot reach
huggingface.co. With `HF_ENDPOINT` pointing here, the real, unpatched client runs against
a real HTTP server that serves the files of a local folder as one model repo. It speaks only
what `huggingface_hub` 2.4.0 uses for `snapshot_download(..., allow_patterns=..., local_dir=...)`:

  GET  /api/models/<repo>/revision/<rev>   repo info; the client needs `sha` (the commit)
  GET  /api/models/<repo>/tree/<commit>    the recursive file listing that `allow_patterns`
                                           filters (this version no longer uses `siblings`)
  HEAD /<repo>/resolve/<commit>/<path>     file metadata: X-Repo-Commit, ETag, Content-Length
  GET  /<repo>/resolve/<commit>/<path>     the bytes

The repo is served at one commit, the revision given, and under no other name (not even `main`): a client
that does not ask for that exact revision gets the hub's 404 `RevisionNotFound`. So a download that works
against the stand-in is pinned, and the recorded URLs show the revision it asked for.

Anything else, such as the client's `/api/agent-harnesses` lookup, gets a 404, which the
client tolerates. Every request is recorded so a test can also prove that none was made,
files named in `failing` answer GET with a 500, to break a download halfway, and `bytes_per_second` slows
every file's bytes down, to catch a download in progress.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class StandIn:
    url: str  # what HF_ENDPOINT should be set to
    requests: list[str] = field(default_factory=list)  # "METHOD /path?query", in arrival order
    failing: set[str] = field(default_factory=set)  # repo paths whose GET answers 500
    #: When set, file bodies are sent at this many bytes per second (a slow hub: a download still in progress).
    bytes_per_second: int | None = None


def git_blob_id(data: bytes) -> str:
    """The hub's `oid`/ETag of a regular (non-LFS) file is its git blob hash."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@contextmanager
def serve_repo(files_dir: Path, repo_id: str, commit: str) -> Iterator[StandIn]:
    """Serve every file under `files_dir` as model repo `repo_id` at commit `commit` (40 hex digits)."""
    files = {p.relative_to(files_dir).as_posix(): p.read_bytes() for p in sorted(files_dir.rglob("*")) if p.is_file()}
    folders = sorted({path.rsplit("/", n)[0] for path in files for n in range(1, path.count("/") + 1)})
    tree = [{"type": "directory", "oid": commit, "path": folder} for folder in folders] + [
        {"type": "file", "oid": git_blob_id(data), "size": len(data), "path": path} for path, data in files.items()
    ]
    info = {"id": repo_id, "sha": commit, "private": False, "siblings": [{"rfilename": path} for path in files]}
    revisions = (commit,)
    unknown_revision = {"X-Error-Code": "RevisionNotFound", "X-Error-Message": f"Invalid rev id: only {commit} is served"}
    standin = StandIn(url="")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the real hub; every response carries Content-Length

        def do_HEAD(self) -> None:
            self.respond(head=True)

        def do_GET(self) -> None:
            self.respond(head=False)

        def respond(self, head: bool) -> None:
            standin.requests.append(f"{self.command} {self.path}")
            path = unquote(urlsplit(self.path).path)
            for prefix in (f"/api/models/{repo_id}/revision/", f"/api/models/{repo_id}/tree/"):
                if path.startswith(prefix):
                    revision, _, rest = path[len(prefix) :].partition("/")
                    if revision not in revisions:
                        return self.send(404, b"", unknown_revision, head)
                    if rest:
                        break
                    body = json.dumps(info if "/revision/" in prefix else tree).encode()
                    return self.send(200, body, {"Content-Type": "application/json"}, head)
            prefix = f"/{repo_id}/resolve/"
            if path.startswith(prefix):
                revision, _, filename = path[len(prefix) :].partition("/")
                if revision not in revisions:
                    return self.send(404, b"", unknown_revision, head)
                if filename not in files:
                    return self.send(404, b"", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}, head)
                if filename in standin.failing and not head:
                    return self.send(500, b"", {}, head)
                headers = {"X-Repo-Commit": commit, "ETag": f'"{git_blob_id(files[filename])}"'}
                return self.send(200, files[filename], {"Content-Type": "application/octet-stream", **headers}, head)
            self.send(404, b"", {}, head)

        def send(self, status: int, body: bytes, headers: dict[str, str], head: bool) -> None:
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            if head:
                return
            rate = standin.bytes_per_second if headers.get("Content-Type") == "application/octet-stream" else None
            if rate is None:
                self.wfile.write(body)
                return
            step = max(1, rate // 10)
            try:
                for start in range(0, len(body), step):  # ten writes a second
                    self.wfile.write(body[start : start + step])
                    self.wfile.flush()
                    time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):  # the client hung up (or was stopped)
                self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (keep test output quiet)
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="hub-standin", daemon=True)
    thread.start()
    try:
        standin.url = f"http://127.0.0.1:{server.server_address[1]}"
        yield standin
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
