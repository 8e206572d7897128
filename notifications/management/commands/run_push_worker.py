import asyncio
import signal
from typing import Any

from django.core.management.base import BaseCommand
from prometheus_client import start_http_server

from notifications.worker import PushWorker


class Command(BaseCommand):
    help = "Run the push worker (outbox relay and queue) in the foreground until SIGTERM or Ctrl-C."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--concurrency", type=int, default=None, help="pushes in flight")
        parser.add_argument(
            "--metrics-port", type=int, default=None, help="serve /metrics on this port"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["metrics_port"]:
            start_http_server(options["metrics_port"], addr="127.0.0.1")
        worker = PushWorker(concurrency=options["concurrency"])
        asyncio.run(self._run(worker))
        self.stdout.write(f"push worker stopped: {worker.sent} sent, {worker.failed} failed")

    async def _run(self, worker: PushWorker) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await worker.run(stop)
