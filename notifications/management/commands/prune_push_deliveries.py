from typing import Any

from django.core.management.base import BaseCommand

from notifications.app_settings import app_settings
from notifications.upkeep import deliveries_prune


class Command(BaseCommand):
    help = "Delete finished push delivery records older than N days, in bounded batches."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--older-than-days",
            type=int,
            default=None,
            help=f"default NOTIFICATIONS_DELIVERY_RETENTION_DAYS "
            f"({app_settings.DELIVERY_RETENTION_DAYS})",
        )
        parser.add_argument("--batch-size", type=int, default=1000)

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["older_than_days"]
        days = app_settings.DELIVERY_RETENTION_DAYS if days is None else days
        total = 0
        for deleted in deliveries_prune(older_than_days=days, batch_size=options["batch_size"]):
            total += deleted
            self.stderr.write(f"deleted {total} so far")
        self.stdout.write(f"deleted {total} push delivery records older than {days} days")
