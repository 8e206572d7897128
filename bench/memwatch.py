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
import functools
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


@functools.cache
def _library(name: str) -> ctypes.CDLL | None:
    # Loaded once: a CDLL and its function types form reference cycles, so loading one every
    # second would feed the very garbage the soak watches.
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def _mallinfo() -> dict[str, int]:
    libc = _library("libc.so.6")
    try:
        mallinfo2 = libc.mallinfo2 if libc is not None else None
    except AttributeError:
        mallinfo2 = None
    if mallinfo2 is None:
        return {}
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return {
        "malloc_in_use": int(info.uordblks) + int(info.hblkhd),
        "malloc_free": int(info.fordblks),
        "malloc_mmapped": int(info.hblkhd),
    }


def _sqlite() -> dict[str, int]:
    """SQLite's own allocations (its page caches), from the library Python's sqlite3 uses."""
    try:
        import _sqlite3

        lib = _library(_sqlite3.__file__)
        used = lib.sqlite3_memory_used if lib is not None else None
    except (AttributeError, ImportError):
        return {}
    if used is None:
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


def cyclic_garbage(path: Path, every: float = 30.0) -> None:
    """With BENCH_GC_GARBAGE=1: every `every` s, collect with DEBUG_SAVEALL and log which
    types the collector found in reference cycles (what makes the blocks' sawtooth)."""
    from collections import Counter

    gc.set_debug(gc.DEBUG_SAVEALL)
    with path.open("a") as out:
        while True:
            time.sleep(every)
            gc.collect()
            kinds = Counter(type(obj).__qualname__ for obj in gc.garbage)
            gc.garbage.clear()
            out.write(json.dumps({"t": time.perf_counter_ns(), "top": kinds.most_common(25)}))
            out.write("\n")
            out.flush()


def start(directory: str, every: float = 1.0) -> None:
    path = Path(directory) / f"memwatch-{os.getpid()}.jsonl"
    if os.environ.get("BENCH_GC_GARBAGE"):
        garbage = Path(directory) / f"gc-garbage-{os.getpid()}.jsonl"
        threading.Thread(
            target=cyclic_garbage, args=(garbage,), name="bench-gc-garbage", daemon=True
        ).start()

    def run() -> None:
        with path.open("a") as out:
            while True:
                out.write(json.dumps(sample()) + "\n")
                out.flush()
                time.sleep(every)

    threading.Thread(target=run, name="bench-memwatch", daemon=True).start()
