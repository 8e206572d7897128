from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.apps import apps
        from django.conf import settings
        from django.contrib.auth.signals import user_logged_out
        from django.db.models.signals import post_delete, post_save

        from chat import receivers
        from chat.models import AuthToken, Membership, Message
        from chat.signals import message_created, message_edited

        # Every saved message, whoever saved it (consumer, HTTP, admin, shell), goes through
        # here inside its transaction; `message_created` follows after the commit.
        post_save.connect(
            receivers.message_saved, sender=Message, dispatch_uid="chat.message_saved"
        )
        post_delete.connect(
            receivers.message_deleted, sender=Message, dispatch_uid="chat.message_deleted"
        )
        post_delete.connect(
            receivers.membership_deleted,
            sender=Membership,
            dispatch_uid="chat.membership_deleted",
        )
        message_created.connect(
            receivers.broadcast_chat_message, dispatch_uid="chat.broadcast_chat_message"
        )
        message_edited.connect(
            receivers.broadcast_message_edited, dispatch_uid="chat.broadcast_message_edited"
        )
        # A revoked token, a deactivated or deleted user, a logged-out session: close the
        # WebSocket connections they opened, on every process (chat.revocation).
        post_save.connect(
            receivers.user_saved, sender=settings.AUTH_USER_MODEL, dispatch_uid="chat.user_saved"
        )
        post_delete.connect(
            receivers.user_deleted,
            sender=settings.AUTH_USER_MODEL,
            dispatch_uid="chat.user_deleted",
        )
        post_save.connect(receivers.token_saved, sender=AuthToken, dispatch_uid="chat.token_saved")
        post_delete.connect(
            receivers.token_deleted, sender=AuthToken, dispatch_uid="chat.token_deleted"
        )
        user_logged_out.connect(
            receivers.session_logged_out, dispatch_uid="chat.session_logged_out"
        )
        if apps.is_installed("django.contrib.sessions"):
            post_delete.connect(
                receivers.session_deleted,
                sender="sessions.Session",
                dispatch_uid="chat.session_deleted",
            )
