from typing import Any

from django.core.management.base import BaseCommand

from notifications.vapid import vapid_key_pair_generate


class Command(BaseCommand):
    help = (
        "Print a new VAPID key pair: the private key for WEBPUSH_VAPID_PRIVATE_KEY (keep it "
        "secret) and the public key pages subscribe with (served at /api/push/vapid-public-key)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        private_key, public_key = vapid_key_pair_generate()
        self.stdout.write(f"WEBPUSH_VAPID_PRIVATE_KEY={private_key}")
        self.stdout.write(f"public key: {public_key}")
