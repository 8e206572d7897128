import asyncio
import signal
from typing import Any

from django.core.management.base import BaseCommand

from chatproject.metrics_export import serve_metrics
from notifications.worker import PushWorker


class Command(BaseCommand):
    help = "Run the push worker (outbox relay and queue) in the foreground until SIGTERM or Ctrl-C."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--concurrency", type=int, default=None, help="pushes in flight")
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=None,
            help="serve /metrics on this port (with METRICS_TOKEN, as the web's)",
        )
        parser.add_argument("--metrics-host", default="127.0.0.1", help="address of --metrics-port")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["metrics_port"] is not None:
            port = serve_metrics(
                port=options["metrics_port"], host=options["metrics_host"]
            ).server_port
            self.stdout.write(f"metrics on http://{options['metrics_host']}:{port}/metrics")
        worker = PushWorker(concurrency=options["concurrency"])
        asyncio.run(self._run(worker))
        self.stdout.write(f"push worker stopped: {worker.sent} sent, {worker.failed} failed")

    async def _run(self, worker: PushWorker) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await worker.run(stop)
