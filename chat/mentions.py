"""Who a message mentions (shared/PROTOCOL.md, "Mentions").

`@` followed by a member's username mentions them when the name ends there: at the end of the
text or at a character that cannot be part of a username (Django's usernames are letters,
digits and `@ . + - _`). So the run of username characters after each `@` is the one name that
`@` can mention: `@bob.` names "bob." (no one, unless someone is called that), `@alice@bob`
names "alice@bob" and, from its second `@`, "bob". `@room` mentions every member. Case does
not matter; the sender is never mentioned by their own message.
"""

import re
from typing import NamedTuple

from django.contrib.auth import get_user_model
from django.db.models.functions import Lower

ROOM = "room"

_NAME_AFTER_AT = re.compile(r"@([\w.@+-]+)")


class Mentions(NamedTuple):
    room: bool  # `@room`: every member but the sender
    user_ids: frozenset[int]  # members named with `@username`, the sender left out

    def of(self, member_ids: list[int], sender_id: int) -> list[int]:
        """Every member the message mentions, in member order."""
        if self.room:
            return [user_id for user_id in member_ids if user_id != sender_id]
        return [user_id for user_id in member_ids if user_id in self.user_ids]


NO_MENTIONS = Mentions(room=False, user_ids=frozenset())


def names_after_at(body: str) -> set[str]:
    """The lower-cased name after each `@` (overlapping: `@a@b` gives "a@b" and "b")."""
    if "@" not in body:
        return set()
    names = set()
    for at in (index for index, char in enumerate(body) if char == "@"):
        match = _NAME_AFTER_AT.match(body, at)
        if match:
            names.add(match.group(1).lower())
    return names


def mentions_in(body: str, *, member_ids: list[int], sender_id: int) -> Mentions:
    """The mentions of `body` among these members: no query when the body has no `@name`."""
    names = names_after_at(body)
    if not names:
        return NO_MENTIONS
    username = get_user_model().USERNAME_FIELD
    named = (
        get_user_model()
        .objects.filter(pk__in=member_ids)
        .annotate(lower_name=Lower(username))
        .filter(lower_name__in=names)
        .exclude(pk=sender_id)
        .values_list("pk", flat=True)
    )
    return Mentions(room=ROOM in names, user_ids=frozenset(named))
