"""Inside each server process of the bench: what its memory is made of, once a second.

RSS alone cannot tell a leak from a cache or from the allocator keeping freed memory. Started
by bench/asgi.py when BENCH_MEMWATCH names a directory, a daemon thread appends one JSON line
per second to `memwatch-<pid>.jsonl` there: RSS, threads, Python's live object blocks
(`sys.getallocatedblocks`), SQLite's own allocations (its page caches), and glibc's view
(`mallinfo2`: bytes in use, bytes free but kept in its arenas, bytes in mmapped chunks). A
step in RSS with flat blocks and flat in-use bytes is the allocator (a new thread's arena,
fragmentation), not objects that pile up.
"""

import ctypes
import gc
import json
import os
import sys
import threading
import time
from pathlib import Path


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo() -> dict[str, int]:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    return {
        "malloc_in_use": int(info.uordblks) + int(info.hblkhd),
        "malloc_free": int(info.fordblks),
        "malloc_mmapped": int(info.hblkhd),
    }


def _sqlite() -> dict[str, int]:
    """SQLite's own allocations (its page caches), from the library Python's sqlite3 uses."""
    try:
        import _sqlite3

        lib = ctypes.CDLL(_sqlite3.__file__)
        used = lib.sqlite3_memory_used
    except (OSError, AttributeError, ImportError):
        return {}
    used.restype = ctypes.c_int64
    return {"sqlite_memory": int(used())}


def sample() -> dict[str, int]:
    page = os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/statm") as statm:
        rss = int(statm.read().split()[1]) * page
    return {
        "t": time.perf_counter_ns(),
        "rss": rss,
        "threads": len(os.listdir("/proc/self/task")),
        "blocks": sys.getallocatedblocks(),
        "gc_objects": len(gc.get_objects()) if os.environ.get("BENCH_MEMWATCH_GC") else 0,
        **_mallinfo(),
        **_sqlite(),
    }


def start(directory: str, every: float = 1.0) -> None:
    path = Path(directory) / f"memwatch-{os.getpid()}.jsonl"

    def run() -> None:
        with path.open("a") as out:
            while True:
                out.write(json.dumps(sample()) + "\n")
                out.flush()
                time.sleep(every)

    threading.Thread(target=run, name="bench-memwatch", daemon=True).start()
