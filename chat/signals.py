"""Signals of the chat app: the event bus that `badges` and `notifications` listen to.

Both are sent only after the transaction that caused them commits, with `send_robust`, so a
failing receiver never stops the others and a rolled-back change is never announced.
"""

from django.dispatch import Signal

# A new Message was committed, whoever saved it (consumer, HTTP, admin, shell).
# Arguments: sender=Message, event: chat.events.MessageCreated (ids and a small dict).
message_created = Signal()

# A member's read pointer moved forward (join-room or mark-read).
# Arguments: sender=Membership, event: chat.events.RoomRead.
room_read = Signal()

# A member's read pointer moved back (mark-unread): the one move backwards, so counters that
# only ever add unread messages after the pointer must be rebuilt for that member.
# Arguments: sender=Membership, event: chat.events.RoomRead (read_upto is the new pointer).
room_marked_unread = Signal()

# A message's text was edited (chat.services.message_edit): its mentions may have changed.
# Arguments: sender=Message, event: chat.events.MessageEdited.
message_edited = Signal()

# A member set a room's notification level: what their total counts changed.
# Arguments: sender=Membership, event: chat.events.LevelChanged.
room_level_changed = Signal()
