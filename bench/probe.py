"""The hot path in one process: `python -m bench.probe ROOM_ID SENDER_ID COUNT OUT_DIR`.

Calls chat.services.message_send COUNT times for a room nobody is connected to (the same code
the consumer runs in its ORM thread, with the after-commit receivers: badges, push enqueue,
chat-message broadcast), counting ORM queries per message, timing it, and profiling it with
pyinstrument. Prints a JSON summary; the profile goes to OUT_DIR/hotpath-pyinstrument.txt.
Redis calls per message are counted by the coordinator from INFO commandstats around this run.
"""

import json
import sys
import time
from collections import Counter
from pathlib import Path


def main() -> None:
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from pyinstrument import Profiler

    from chat import services
    from chatproject import lanes

    room_id, sender_id, count, out_dir = (
        int(sys.argv[1]),
        int(sys.argv[2]),
        int(sys.argv[3]),
        Path(sys.argv[4]),
    )

    def send(i: int) -> None:
        services.message_send(
            sender_id=sender_id,
            room_id=room_id,
            body=f"probe {i}",
            client_message_id=f"probe-{i}-{time.perf_counter_ns()}",
        )

    send(-1)  # warm: the first message of each member rebuilds their counters from the database
    lanes.flush()
    started = time.perf_counter()
    for i in range(count):
        send(count + i)
    unprofiled = time.perf_counter() - started
    lanes.flush()
    per_message = []
    shapes: Counter[str] = Counter()
    profiler = Profiler(interval=0.0002)
    started = time.perf_counter()
    profiler.start()
    for i in range(count):
        with CaptureQueriesContext(connection) as queries:
            send(i)
        per_message.append(len(queries.captured_queries))
        for query in queries.captured_queries:
            shapes[query["sql"].split(" WHERE ")[0][:90]] += 1
    profiler.stop()
    elapsed = time.perf_counter() - started
    lanes.flush()
    (out_dir / "hotpath-pyinstrument.txt").write_text(
        profiler.output_text(unicode=False, color=False, show_all=False)
    )
    json.dump(
        {
            "messages": count,
            "queries_per_message": sum(per_message) / count,
            "queries_min_max": [min(per_message), max(per_message)],
            "query_shapes": {sql: n / count for sql, n in shapes.most_common()},
            "ms_per_message": unprofiled * 1000 / count,
            "ms_per_message_profiled": elapsed * 1000 / count,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
