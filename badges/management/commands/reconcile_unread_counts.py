import json
import signal
import sys
import threading
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from badges.reconcile import reconcile_unread_counts


class Command(BaseCommand):
    help = "Recompute every unread counter from the database and repair drift in Redis."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--user", help="only this user (id or username)")
        parser.add_argument("--dry-run", action="store_true", help="report drift, repair nothing")
        parser.add_argument("--check", action="store_true", help="exit 1 when drift was found")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        user_ids = [self._user_id(options["user"])] if options["user"] else None
        stop = threading.Event()
        # SIGTERM finishes the current user and reports what was done (main thread only:
        # call_command from elsewhere, as tests do, keeps the default handling).
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set()) if in_main else None
        total = len(user_ids) if user_ids else get_user_model().objects.count()
        try:
            with tqdm(
                total=total, unit="user", file=sys.stderr, disable=not sys.stderr.isatty()
            ) as bar:
                report = reconcile_unread_counts(
                    user_ids=user_ids, dry_run=options["dry_run"], progress=bar.update, stop=stop
                )
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous)
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict()))
        else:
            verb = "would repair" if report.dry_run else "repaired"
            self.stdout.write(
                f"checked {report.users_checked} users and {report.rooms_checked} rooms; "
                f"{report.users_drifted} users drifted, {verb} "
                f"{report.counters_drifted if report.dry_run else report.counters_repaired} "
                f"counters; {report.users_missing} users were not in Redis"
                + (" (stopped early by SIGTERM)" if report.stopped_early else "")
            )
        if options["check"] and report.users_drifted:
            sys.exit(1)

    def _user_id(self, value: str) -> int:
        users = get_user_model().objects
        found = users.filter(pk=int(value)) if value.isdigit() else users.filter(username=value)
        user_id = found.values_list("pk", flat=True).first()
        if user_id is None:
            raise CommandError(f"no user {value!r}")
        return user_id
