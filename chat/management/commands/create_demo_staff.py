from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from chat.seeding import DEMO_STAFF_PASSWORD, DEMO_STAFF_USERNAME, seed_demo_staff


class Command(BaseCommand):
    help = (
        f"Create (or reset) the development admin login {DEMO_STAFF_USERNAME!r} with password "
        f"{DEMO_STAFF_PASSWORD!r}. Refuses to run when DEBUG is off, unless --force."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--force", action="store_true", help="run even with DEBUG off (a public password!)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError(
                "DEBUG is off: a staff login with a published password does not belong in "
                "production. Pass --force if you really mean it."
            )
        _, created = seed_demo_staff()
        verb = "Created" if created else "Reset"
        self.stdout.write(
            f"{verb} demo staff {DEMO_STAFF_USERNAME!r} (password {DEMO_STAFF_PASSWORD!r}); "
            "for development only."
        )
