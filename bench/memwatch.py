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

    tracer = _Tracer(Path(directory)) if os.environ.get("BENCH_TRACEMALLOC") else None

    def run() -> None:
        with path.open("a") as out:
            while True:
                out.write(json.dumps(sample()) + "\n")
                out.flush()
                if tracer is not None:
                    tracer.poll()
                time.sleep(every)

    threading.Thread(target=run, name="bench-memwatch", daemon=True).start()


# --- BENCH_TRACEMALLOC=1: what grew between the start and the end of the measured phase ---
#
# bench/asgi.py starts tracemalloc (10 frames) at import when BENCH_TRACEMALLOC is set; the
# coordinator calls `mark(directory, "start")` and `mark(directory, "end")` around the measured
# phase, and the memwatch thread of each daphne answers with `tracemalloc-<pid>-<name>.done`.
# At "end" it writes `tracemalloc-<pid>.txt`: the top 30 growth sites by traceback, the types
# whose live count grew (gc.get_objects() histogram diff), and the sizes of the per-connection
# structures (the channel layer's maps, the connection-queue map, the live registry, asyncio
# tasks, daphne's connection dicts, Django's connections).

TRACE_FRAMES = 10


def start_tracing() -> None:
    import tracemalloc

    tracemalloc.start(TRACE_FRAMES)


def mark(directory: Path, name: str) -> None:
    (Path(directory) / f"tracemalloc-mark-{name}").write_text(str(time.time()))


def marks_done(directory: Path, name: str) -> list[Path]:
    return sorted(Path(directory).glob(f"tracemalloc-*-{name}.done"))


def _type_histogram() -> dict[str, int]:
    from collections import Counter

    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        counts[f"{kind.__module__}.{kind.__qualname__}"] += 1
    return dict(counts)


def _instances(qualname: str) -> list[object]:
    return [obj for obj in gc.get_objects() if type(obj).__qualname__ == qualname]


def structures() -> dict[str, object]:
    """Sizes of the maps that keep per-connection or per-user state, found through gc."""
    import asyncio

    out: dict[str, object] = {}
    layers = [
        obj
        for obj in gc.get_objects()
        if type(obj).__qualname__ in ("BoundedPubSubLoopLayer", "RedisPubSubLoopLayer")
    ]
    for i, layer in enumerate(layers):
        d = vars(layer)
        entry: dict[str, object] = {
            "channels": len(d.get("channels", ())),
            "groups": len(d.get("groups", ())),
            "group_members": sum(len(v) for v in d.get("groups", {}).values()),
        }
        for j, shard in enumerate(d.get("_shards", ())):
            sd = vars(shard)
            entry[f"shard{j}"] = {
                k: len(v) for k, v in sd.items() if isinstance(v, (dict, set, list))
            }
        for k, v in d.items():
            if isinstance(v, (dict, set, list)) and k not in ("channels", "groups", "_shards"):
                entry[k] = len(v)
        out[f"layer{i}"] = entry
    # type(), never isinstance(): gc also holds lazily loaded modules (importlib.util's
    # LazyLoader), and isinstance() reads their __class__, which imports them (numpy, a few
    # MiB) in the middle of the measurement.
    loops = [obj for obj in gc.get_objects() if issubclass(type(obj), asyncio.AbstractEventLoop)]
    for i, loop in enumerate(loops):
        try:
            out[f"loop{i}_tasks"] = len(asyncio.all_tasks(loop))
        except RuntimeError:
            out[f"loop{i}_tasks"] = -1
    for server in _instances("Server"):
        sd = vars(server)
        for k in ("connections", "application_instances"):
            if k in sd:
                out[f"daphne_{k}"] = len(sd[k])
    for name in ("WebSocketProtocol", "WebSocketServerFactory", "AsyncioTask"):
        out[f"n_{name}"] = len(_instances(name))
    try:
        from chat import live

        out["live"] = {str(id(k)): len(v.connections) for k, v in list(live._loops.items())}
    except Exception as error:  # diagnostics only: never break the server
        out["live"] = repr(error)
    try:
        from django.db import connections

        out["django_connections_threads"] = len(
            [o for o in gc.get_objects() if type(o).__qualname__ == "DatabaseWrapper"]
        )
        del connections
    except Exception as error:
        out["django_connections_threads"] = repr(error)
    return out


class _Tracer:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.pid = os.getpid()
        self.snapshot: object = None
        self.types: dict[str, int] = {}
        self.structures: dict[str, object] = {}
        self.handled: set[str] = set()

    def poll(self) -> None:
        for name in ("start", "end"):
            if name in self.handled or not (self.directory / f"tracemalloc-mark-{name}").exists():
                continue
            self.handled.add(name)
            try:
                getattr(self, name)()
            finally:
                (self.directory / f"tracemalloc-{self.pid}-{name}.done").write_text("")

    def start(self) -> None:
        import tracemalloc

        gc.collect()
        self.snapshot = tracemalloc.take_snapshot()
        self.types = _type_histogram()
        self.structures = structures()

    def end(self) -> None:
        import tracemalloc

        gc.collect()
        after = tracemalloc.take_snapshot()
        types = _type_histogram()
        lines = [f"pid {self.pid}", "", "## structures (start -> end)", ""]
        now = structures()
        for key in sorted(set(now) | set(self.structures)):
            lines.append(f"{key}: {self.structures.get(key)} -> {now.get(key)}")
        lines += ["", "## types whose live count grew (gc.get_objects, after gc.collect)", ""]
        grown = sorted(
            ((types.get(k, 0) - self.types.get(k, 0), k) for k in types),
            reverse=True,
        )
        for delta, key in grown[:40]:
            if delta > 0:
                lines.append(f"{delta:+8d} {key} ({self.types.get(key, 0)} -> {types[key]})")
        if self.snapshot is not None:
            assert isinstance(self.snapshot, tracemalloc.Snapshot)
            ignore = [
                tracemalloc.Filter(False, tracemalloc.__file__),
                tracemalloc.Filter(False, __file__),  # this diagnostic's own histograms
            ]
            stats = after.filter_traces(ignore).compare_to(
                self.snapshot.filter_traces(ignore), "traceback"
            )
            lines += ["", "## top 30 growth sites (tracemalloc, 10 frames)", ""]
            for stat in stats[:30]:
                lines.append(
                    f"{stat.size_diff / 1024:+.1f} KiB, {stat.count_diff:+d} blocks "
                    f"(now {stat.size / 1024:.1f} KiB in {stat.count})"
                )
                lines += [f"    {line}" for line in stat.traceback.format()]
            total = sum(stat.size_diff for stat in stats)
            lines.insert(1, f"traced growth: {total / 2**20:+.2f} MiB")
        (self.directory / f"tracemalloc-{self.pid}.txt").write_text("\n".join(lines) + "\n")
