import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from chat.seeding import seed_demo


class Command(BaseCommand):
    help = (
        "Create demo users user1..userN and rooms room1..roomM (idempotently) and print them "
        "as one JSON object."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--users", type=int, default=5, metavar="N")
        parser.add_argument("--rooms", type=int, default=3, metavar="M")
        parser.add_argument("--members-per-room", type=int, default=3, metavar="K")
        parser.add_argument("--password", default="demo", metavar="PW")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            seeded = seed_demo(
                users=options["users"],
                rooms=options["rooms"],
                members_per_room=options["members_per_room"],
                password=options["password"],
            )
        except ValueError as error:
            raise CommandError(str(error)) from error
        # stdout carries only this object: scripts parse it.
        self.stdout.write(json.dumps(seeded))
