"""glibc's allocator told to hand freed memory back to the OS, set when the application is made, however it is run.

glibc serves a block of at least its mmap threshold with a mapping of its own, unmapped when freed, and smaller
ones from its heaps, whose free memory it keeps. The threshold starts at 128 KB but is dynamic: after the first
free of a mapped block it rises to that block's size (up to 32 MB), and the trim threshold to twice that. From
then on the buffers of a few MB a request allocates and frees (KV caches, token sequences, vocoder input and
output, audio) come from the heaps and stay there: about 800 MB more idle RSS after every long request, seen on
`main` in issue 23. `MALLOC_MMAP_THRESHOLD_=65536` in the environment fixed it, but only where someone set it;
`mallopt` here holds for `python server.py`, `uvicorn server:app` and the image alike. Setting the thresholds
also turns their dynamic adjustment off.

`release_freed_memory` (`malloc_trim(0)`) hands back the free pages inside the heaps too, after start-up steps
and requests that free much at once. On another C library (musl, macOS) both are skipped, with a log line.
"""

from __future__ import annotations

import ctypes
import logging

logger = logging.getLogger("gsv.allocator")

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks this large or larger get a mapping of their own, returned to the OS when freed. 64 KB keeps Python's
#: small objects and numpy's small arrays on the heap (a mapping per block would cost a system call each).
MMAP_THRESHOLD_BYTES = 64 * 1024
#: Free memory at the top of a heap beyond this is returned at once (glibc's default, made fixed).
TRIM_THRESHOLD_BYTES = 128 * 1024


def glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (it alone has `gnu_get_libc_version`); None elsewhere."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:  # Windows: no C library by that handle
        return None
    if not hasattr(libc, "gnu_get_libc_version"):
        return None
    return libc


def tune_allocator() -> bool:
    """Fix glibc's mmap and trim thresholds (see the module's docstring); False on another C library."""
    libc = glibc()
    if libc is None:
        logger.info("allocator: not glibc, its thresholds are left as they are")
        return False
    applied = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    applied = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1 and applied
    libc.gnu_get_libc_version.restype = ctypes.c_char_p
    version = (libc.gnu_get_libc_version() or b"?").decode()
    if not applied:
        logger.warning("allocator: glibc %s refused mallopt; freed memory may not return to the OS", version)
        return False
    logger.info(
        "allocator: glibc %s, mmap threshold %d KB, trim threshold %d KB (fixed: freed buffers return to the OS)",
        version,
        MMAP_THRESHOLD_BYTES // 1024,
        TRIM_THRESHOLD_BYTES // 1024,
    )
    return True


def release_freed_memory() -> None:
    """Hand the free pages inside glibc's heaps back to the OS (`malloc_trim(0)`); a no-op on another C library."""
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)
