from django.apps import AppConfig


class BadgesConfig(AppConfig):
    name = "badges"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from badges import receivers
        from badges.events import MESSAGE_BADGES, message_badge_frames
        from chat.models import Membership, Message
        from chat.signals import (
            message_created,
            message_edited,
            room_level_changed,
            room_marked_unread,
            room_read,
        )
        from chatproject.hub import register_builder

        register_builder(MESSAGE_BADGES, message_badge_frames)
        message_created.connect(
            receivers.on_message_created, dispatch_uid="badges.on_message_created"
        )
        room_read.connect(receivers.on_room_read, dispatch_uid="badges.on_room_read")
        room_marked_unread.connect(
            receivers.on_room_marked_unread, dispatch_uid="badges.on_room_marked_unread"
        )
        room_level_changed.connect(
            receivers.on_room_level_changed, dispatch_uid="badges.on_room_level_changed"
        )
        message_edited.connect(receivers.on_message_edited, dispatch_uid="badges.on_message_edited")
        post_save.connect(
            receivers.on_membership_changed,
            sender=Membership,
            dispatch_uid="badges.membership_saved",
        )
        post_delete.connect(
            receivers.on_membership_changed,
            sender=Membership,
            dispatch_uid="badges.membership_deleted",
        )
        post_delete.connect(
            receivers.on_message_deleted, sender=Message, dispatch_uid="badges.message_deleted"
        )
