"""glibc's thresholds are fixed when the application is made, whichever way it is made (engine/allocator.py).

Each check runs in a fresh Python process, whose allocator starts with glibc's dynamic threshold. The probe:
free a 4 MB block (mapped by glibc), then allocate 1 MB. With the dynamic threshold the free raised it to 4 MB,
so the 1 MB block comes from the heap and its memory stays with the process when freed; with the threshold fixed
at 64 KB it is mapped (the IS_MMAPPED bit of its chunk header), and returned to the OS when freed.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from tests.server_process import ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the probe reads glibc's chunk headers")

PROBE = """
import ctypes
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
big = libc.malloc(4 << 20)
libc.free(big)
block = libc.malloc(1 << 20)
print("mapped" if ctypes.c_size_t.from_address(block - ctypes.sizeof(ctypes.c_size_t)).value & 2 else "heap")
"""

#: The voices are never searched for: find_voices is replaced, so the process needs no GenieData.
NO_VOICES = "import server\nfrom pathlib import Path\nserver.find_voices = lambda *args, **kwargs: (Path('.'), [])\n"

BUILDS = {
    "nothing made (the control)": "",
    "uvicorn server:app": NO_VOICES + "server.app\n",
    "python server.py (create_app)": NO_VOICES + "from settings import Settings\nserver.create_app(Settings())\n",
}


def probe(build: str) -> str:
    done = subprocess.run([sys.executable, "-c", build + PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]


def test_the_probe_sees_the_dynamic_threshold_of_a_fresh_process() -> None:
    assert probe(BUILDS["nothing made (the control)"]) == "heap"


@pytest.mark.parametrize("way", ["uvicorn server:app", "python server.py (create_app)"])
def test_the_thresholds_are_fixed_however_the_application_is_made(way: str) -> None:
    assert probe(BUILDS[way]) == "mapped"


def test_another_c_library_is_left_alone_with_a_log_line(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    from engine import allocator

    monkeypatch.setattr(allocator, "glibc", lambda: None)
    with caplog.at_level(logging.INFO, logger="gsv.allocator"):
        assert allocator.tune_allocator() is False
        allocator.release_freed_memory()  # a no-op, not an error
    assert "not glibc" in caplog.text
