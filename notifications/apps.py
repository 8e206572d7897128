from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        from chat.signals import message_created
        from notifications import receivers

        message_created.connect(
            receivers.on_message_created, dispatch_uid="notifications.on_message_created"
        )
