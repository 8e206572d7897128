"""Receivers of chat's signals: keep the Redis copy of the counts in step with the truth."""

from typing import Any

from badges import services
from badges.reconcile import badges_resync_devices
from chat import presence
from chat.events import LevelChanged, MessageCreated, MessageEdited, RoomRead
from chat.models import Membership, Message
from chat.selectors import member_ids
from chatproject.commit import on_commit_robust
from chatproject.lanes import on_lane
from chatproject.metrics import instrumented_receiver


# A backlog is handled as one batch; past the lane's bound, events are shed to a rebuild of the
# users they touched from the database (chatproject/lanes.py, README "Back-pressure").
@on_lane(
    "badges.message_created",
    batch=services.badges_apply_messages,
    shed=services.MessagesShed,
)
def on_message_created(sender: Any, event: MessageCreated, **kwargs: Any) -> None:
    services.badges_apply_message(event)


# Inline, not on a lane: the join-room and mark-read replies that follow must show its result.
@instrumented_receiver("badges.room_read")
def on_room_read(sender: Any, event: RoomRead, **kwargs: Any) -> None:
    services.badges_apply_read(event)


# A membership added, removed or edited (room_add_member, admin, shell, deletes) alters what
# the counts should be in ways the event flow does not describe: dropping the user's copy makes
# the next read rebuild it from the database, and a fresh snapshot tells the user's open
# devices at once (a page lists a room it was just added to without reconnecting).
@instrumented_receiver("badges.membership_changed")
def on_membership_changed(sender: Any, instance: Membership, **kwargs: Any) -> None:
    on_commit_robust(_forget_and_resync, [instance.user_id])


def _forget_and_resync(user_ids: list[int]) -> None:
    services.badges_forget(user_ids)
    # One Redis call, where a snapshot costs a rebuild from the database: seeding thousands of
    # memberships for users nobody has connected as stays cheap.
    connected = presence.connected_processes(user_ids)
    online = [user_id for user_id in user_ids if connected.get(user_id)]
    if online:
        badges_resync_devices(online)


# A deleted message leaves the unread sets of the members it was unread for: their copies are
# dropped and the connected ones get a fresh snapshot at once (shared/PROTOCOL.md, "Delete").
@instrumented_receiver("badges.message_deleted")
def on_message_deleted(sender: Any, instance: Message, **kwargs: Any) -> None:
    users = member_ids(instance.room_id)
    on_commit_robust(_forget_and_resync, users)


# Inline, as reads are: the mark-unread reply that follows must show the rebuilt count. The
# counters only ever add messages after the pointer, so a pointer moved back is a rebuild.
@instrumented_receiver("badges.room_marked_unread")
def on_room_marked_unread(sender: Any, event: RoomRead, **kwargs: Any) -> None:
    _forget_and_resync([event["user_id"]])


# Inline: the level endpoint's answer is followed at once by the new total on every device.
# Which rooms a total counts is the level, read by a rebuild from the database.
@instrumented_receiver("badges.room_level_changed")
def on_room_level_changed(sender: Any, event: LevelChanged, **kwargs: Any) -> None:
    services.badges_settle_users([event["user_id"]], room_id=event["room_id"], reason="level")


# An edit changes no unread count, only who the message mentions: the members who gained or
# lost a mention are rebuilt (for those who had read it, nothing moves but the version).
@instrumented_receiver("badges.message_edited")
def on_message_edited(sender: Any, event: MessageEdited, **kwargs: Any) -> None:
    changed = event["mentions_added"] + event["mentions_removed"]
    if changed:
        services.badges_settle_users(changed, room_id=event["room_id"], reason="edit")
