from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from chatproject.servers import DEFAULT_APPLICATION, ServeError, serve


class Command(BaseCommand):
    help = (
        "Run the production server (daphne) in the foreground: N worker processes sharing one "
        "listening socket, until SIGTERM or SIGINT. A worker that dies stops all (exit 1)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", metavar="H")
        parser.add_argument("--port", type=int, default=8000, metavar="P")
        parser.add_argument("--workers", type=int, default=1, metavar="N")
        parser.add_argument("--application", default=DEFAULT_APPLICATION, metavar="MODULE:NAME")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            code = serve(
                host=options["host"],
                port=options["port"],
                workers=options["workers"],
                application=options["application"],
                say=self._say,
            )
        except ServeError as error:
            raise CommandError(str(error)) from error
        if code != 0:
            raise CommandError("a worker died", returncode=code)

    def _say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()  # a journal or a pipe sees it now, not when the buffer fills
