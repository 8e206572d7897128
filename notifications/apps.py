from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from chat.models import Message
        from chat.signals import message_created, message_edited, room_read
        from chatproject import health
        from notifications import receivers
        from notifications.health import push_health

        post_save.connect(
            receivers.message_saved, sender=Message, dispatch_uid="notifications.message_saved"
        )
        message_created.connect(
            receivers.on_message_created, dispatch_uid="notifications.on_message_created"
        )
        message_edited.connect(
            receivers.on_message_edited, dispatch_uid="notifications.on_message_edited"
        )
        room_read.connect(receivers.on_room_read, dispatch_uid="notifications.on_room_read")
        health.register("push", push_health)
