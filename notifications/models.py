from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from chat.models import Message


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
    # The push service said the device is no more (404/410, Unregistered): it gets nothing
    # until it registers again.
    active = models.BooleanField(default=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "address"], name="device_unique_address")
        ]
        indexes = [models.Index(fields=["user", "active"], name="device_user_active")]

    def __str__(self) -> str:
        return f"{self.kind} device {self.pk} of {self.user_id}"


class PushOutbox(models.Model):
    """A message whose pushes are still to be queued: written in the message's transaction.

    The relay in the push worker turns each row into a queue job and deletes it, so a message
    saved while Redis is unreachable still gets its pushes once Redis is back.
    """

    message = models.OneToOneField(
        Message, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "push outbox"

    def __str__(self) -> str:
        return f"outbox: message {self.message_id}"


class PushDelivery(models.Model):
    """One push to one device: the guard that sends each (message, device) at most once.

    A message push is unique per (message, device). A silent badge update is not about one
    message: it is unique per (device, badge_seq), badge_seq naming the badge job (its enqueue
    time in ms), so a job that runs twice sends nothing twice, and a later read makes a new one.
    """

    class Kind(models.TextChoices):
        MESSAGE = "message", "message"
        BADGE = "badge", "badge update"

    class Status(models.TextChoices):
        PENDING = "pending", "pending"  # to send, or waiting for its next attempt
        SENDING = "sending", "sending"  # claimed by a worker; its answer is not recorded yet
        SENT = "sent", "sent"
        SKIPPED = "skipped", "skipped"  # see `reason`
        FAILED = "failed", "failed"  # see `last_error`
        GONE = "gone", "device gone"

    class Reason(models.TextChoices):
        NONE = "", "-"
        READ = "read", "read in time"
        VIEWING = "viewing", "viewing the room"
        MUTED = "muted", "room at level none"
        NOT_MENTIONED = "unmention", "not mentioned (level mentions)"
        INACTIVE = "inactive", "device deactivated"
        DELETED = "deleted", "message deleted"

    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.MESSAGE)
    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    badge_seq = models.BigIntegerField(null=True, blank=True)
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(max_length=10, choices=Reason.choices, default="", blank=True)
    badge = models.PositiveIntegerField(null=True, blank=True)  # the count the push carried
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True, default="")  # the run that claimed
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "push deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["message", "device"],
                condition=Q(kind="message"),
                name="delivery_unique_message_device",
            ),
            models.UniqueConstraint(
                fields=["device", "badge_seq"],
                condition=Q(kind="badge"),
                name="delivery_unique_badge_device",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_status_next"),
            models.Index(fields=["created_at"], name="delivery_created"),
        ]

    def __str__(self) -> str:
        about = f"message {self.message_id}" if self.message_id else "badge"
        return f"{about} to device {self.device_id}: {self.status}"
