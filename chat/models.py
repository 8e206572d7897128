from django.conf import settings
from django.db import models
from django.utils import timezone


class Room(models.Model):
    name = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    members = models.ManyToManyField(  # type: ignore[var-annotated]
        settings.AUTH_USER_MODEL, through="Membership", related_name="chat_rooms"
    )

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class Level(models.TextChoices):
    ALL = "all", "all messages"
    MENTIONS = "mentions", "mentions only"
    NONE = "none", "nothing"


class Membership(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_memberships"
    )
    # The read pointer: every message of the room with an id up to this one is read.
    # An id rather than a foreign key so that deleting a message never moves it backwards.
    last_read_message_id = models.PositiveBigIntegerField(default=0)
    joined_at = models.DateTimeField(default=timezone.now)
    # What the member's total counts of this room and which of its messages push them
    # (shared/PROTOCOL.md, "Notification level"); the room's own counts are always kept.
    level = models.CharField(max_length=8, choices=Level.choices, default=Level.ALL)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "user"], name="membership_unique_room_user")
        ]
        indexes = [models.Index(fields=["user", "room"], name="membership_user_room")]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.room_id}"


class Message(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_messages"
    )
    body = models.TextField()
    # The client's idempotency key: a retried send with the same key saves nothing new.
    # NULL, not "", for saves without one (admin, shell): the unique constraint skips NULLs.
    client_message_id = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField(default=timezone.now)
    edited_at = models.DateTimeField(null=True, blank=True)
    # `@room` in the body: it mentions every member but its sender. Named mentions are rows of
    # MessageMention; a room-wide one is this flag, not a row per member.
    mentions_room = models.BooleanField(default=False)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["sender", "client_message_id"],
                condition=models.Q(client_message_id__isnull=False),
                name="message_unique_sender_client_id",
            )
        ]
        # Unread counts are "messages of this room after the pointer": (room, id) serves them.
        indexes = [models.Index(fields=["room", "id"], name="message_room_id")]

    def __str__(self) -> str:
        return f"#{self.pk} in {self.room_id} by {self.sender_id}"


class MessageMention(models.Model):
    """A member named in a message with `@username` (chat.mentions), kept in step with edits."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="mentions")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_mentions"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "user"], name="mention_unique_message_user")
        ]
        indexes = [models.Index(fields=["user", "message"], name="mention_user_message")]

    def __str__(self) -> str:
        return f"{self.user_id} in #{self.message_id}"


class AuthToken(models.Model):
    """An API/WebSocket token. Only its SHA-256 is stored; the token is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_tokens"
    )
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "expires_at"], name="token_user_expiry")]

    def __str__(self) -> str:
        return f"token {self.pk} of {self.user_id}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()


class SignInLock(models.Model):
    """No table: the admin's entry for the sign-in locks, which live in Redis
    (chat.signin_throttle). Its admin page lists them and unlocks; the permissions that
    Django makes for it say which staff may see (view) and unlock (change) them."""

    class Meta:
        managed = False
        default_permissions = ("view", "change")
        verbose_name = "sign-in lock"

    def __str__(self) -> str:
        return "sign-in lock"
