from django.conf import settings
from django.db import models
from django.utils import timezone


class Device(models.Model):
    """A push target of a user: a Web Push subscription or an APNs device token."""

    class Kind(models.TextChoices):
        WEBPUSH = "webpush", "Web Push"
        APNS = "apns", "APNs"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="push_devices"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # The Web Push endpoint URL or the APNs token: what identifies the device to its service.
    address = models.CharField(max_length=2000)
    # Web Push keys (p256dh, auth); empty for APNs.
    keys = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "address"], name="device_unique_address")
        ]

    def __str__(self) -> str:
        return f"{self.kind} device {self.pk} of {self.user_id}"
