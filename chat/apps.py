from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from chat import receivers
        from chat.models import Message
        from chat.signals import message_created

        # Every saved message, whoever saved it (consumer, HTTP, admin, shell), goes through
        # here inside its transaction; `message_created` follows after the commit.
        post_save.connect(
            receivers.message_saved, sender=Message, dispatch_uid="chat.message_saved"
        )
        message_created.connect(
            receivers.broadcast_chat_message, dispatch_uid="chat.broadcast_chat_message"
        )
