"""Staff admin that tells the truth about counts: the database's beside the one Redis holds.

chat registers its models' admins and knows nothing of badges, so badges extends them here
(registered after chat's, as INSTALLED_APPS orders them): memberships and users get the
unread count from the database (the truth), the one Redis holds, whether they agree (a list
filter finds those that do not), whether the member is viewing the room or connected at all,
and an action that reconciles the selected users' counts and resyncs their open devices.

A changelist page asks its questions once for the whole page (`badges.drift`: one query and
one Redis pipeline, plus one pipeline for presence), never once per row.
"""

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from badges.drift import ComparedCounts, compare_counts, compare_counts_in_batches
from badges.reconcile import badges_resync_devices, reconcile_unread_counts
from chat import presence
from chat.admin import MembershipAdmin
from chat.models import Membership, Room
from chat.revocation import user_deactivate

User = get_user_model()

DRIFTED, MISSING, AGREES = "drifted", "missing", "agrees"


def _status(counts: ComparedCounts, room_id: int | None = None) -> str:
    if counts.redis is None:
        return MISSING
    drifted = counts.room_drifted(room_id) if room_id is not None else counts.drifted
    return DRIFTED if drifted else AGREES


def _redis_cell(value: int | None, status: str) -> str:
    if status == MISSING:
        return format_html('<span title="{}">not held</span>', "rebuilt on the next read")
    if status == DRIFTED:
        return format_html(
            '<strong style="color: var(--error-fg, #ba2121)" title="{}">{} ≠</strong>',
            "differs from the database",
            value,
        )
    return str(value)


class PageCountsChangeList(ChangeList):
    """Computes the page's counts once, after the page's rows are chosen."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        rows = list(self.result_list)  # evaluated once; the template iterates the same cache
        self.model_admin.attach_page_counts(rows)  # type: ignore[attr-defined]


class CountsDriftFilter(admin.SimpleListFilter):
    """Compares every row the other filters left, in batches (a scan: for finding, not paging)."""

    title = "Redis copy of the unread counts"
    parameter_name = "counts"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            (DRIFTED, "drifted from the database"),
            (MISSING, "not held by Redis"),
            (AGREES, "agrees with the database"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        wanted = self.value()
        if wanted not in (DRIFTED, MISSING, AGREES):
            return queryset
        if queryset.model is Membership:
            rows = list(queryset.values_list("pk", "user_id", "room_id"))
            compared = {c.user_id: c for c in compare_counts_in_batches([r[1] for r in rows])}
            keep = [pk for pk, user, room in rows if _status(compared[user], room) == wanted]
        else:
            user_ids = list(queryset.values_list("pk", flat=True))
            keep = [c.user_id for c in compare_counts_in_batches(user_ids) if _status(c) == wanted]
        return queryset.filter(pk__in=keep)


@admin.action(description="Reconcile the selected users' unread counts", permissions=["change"])
def reconcile_counts(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any]
) -> None:
    field = "user_id" if queryset.model is Membership else "pk"
    user_ids = sorted(set(queryset.values_list(field, flat=True)))
    report = reconcile_unread_counts(user_ids=user_ids)
    # Open devices get the repaired counts now rather than at their next change.
    badges_resync_devices(user_ids)
    modeladmin.message_user(
        request,
        f"Checked {report.users_checked} user(s): {report.users_drifted} had drifted, "
        f"{report.counters_repaired} counter(s) repaired, {report.users_missing} reloaded.",
        messages.SUCCESS,
    )


class MembershipCountsAdmin(MembershipAdmin):
    list_display = [
        *MembershipAdmin.list_display,
        "unread_in_database",
        "unread_in_redis",
        "mentions_in_database",
        "mentions_in_redis",
        "redis_agrees",
        "viewing_now",
    ]
    list_filter = [*MembershipAdmin.list_filter, CountsDriftFilter]
    actions = [*MembershipAdmin.actions, reconcile_counts]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return PageCountsChangeList

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None:  # the add form has no member yet
            fields += [
                "unread_in_database",
                "unread_in_redis",
                "mentions_in_database",
                "mentions_in_redis",
                "viewing_now",
            ]
        return fields

    def attach_page_counts(self, memberships: list[Membership]) -> None:
        compared = compare_counts([m.user_id for m in memberships])
        viewers = presence.viewers_by_room(sorted({m.room_id for m in memberships}))
        for membership in memberships:
            membership._counts = compared[membership.user_id]  # type: ignore[attr-defined]
            membership._viewing = membership.user_id in viewers[membership.room_id]  # type: ignore[attr-defined]

    def _counts(self, membership: Membership) -> ComparedCounts:
        if not hasattr(membership, "_counts"):  # the change form: one object
            self.attach_page_counts([membership])
        counts: ComparedCounts = membership._counts  # type: ignore[attr-defined]
        return counts

    @admin.display(description="unread (database)")
    def unread_in_database(self, membership: Membership) -> int:
        return self._counts(membership).database.get(membership.room_id, 0)

    @admin.display(description="unread (Redis)")
    def unread_in_redis(self, membership: Membership) -> str:
        counts = self._counts(membership)
        return _redis_cell(
            counts.redis_room(membership.room_id), _status(counts, membership.room_id)
        )

    @admin.display(description="mentions (database)")
    def mentions_in_database(self, membership: Membership) -> int:
        room = self._counts(membership).rooms.get(membership.room_id)
        return room.mentions if room else 0

    @admin.display(description="mentions (Redis)")
    def mentions_in_redis(self, membership: Membership) -> str:
        counts = self._counts(membership)
        return _redis_cell(
            counts.redis_room_mentions(membership.room_id), _status(counts, membership.room_id)
        )

    @admin.display(description="Redis agrees", boolean=True)
    def redis_agrees(self, membership: Membership) -> bool | None:
        status = _status(self._counts(membership), membership.room_id)
        return None if status == MISSING else status == AGREES

    # Text, not a boolean icon: not viewing is normal, not an error to paint red.
    @admin.display(description="viewing now")
    def viewing_now(self, membership: Membership) -> str:
        self._counts(membership)
        return "viewing" if membership._viewing else "-"  # type: ignore[attr-defined]


class UserCountsAdmin(UserAdmin):
    list_display = (
        "username",
        "email",
        "first_name",
        "last_name",
        "is_staff",
        "unread_in_database",
        "unread_in_redis",
        "redis_agrees",
        "connected",
    )
    list_filter = ("is_staff", "is_superuser", "is_active", "groups", CountsDriftFilter)
    actions = [reconcile_counts, "deactivate_users"]
    fieldsets = (
        *(UserAdmin.fieldsets or ()),
        ("Unread counts", {"fields": ("unread_by_room", "connected")}),
    )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return PageCountsChangeList

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            fields += ["unread_by_room", "connected"]
        return fields

    def attach_page_counts(self, users: list[Any]) -> None:
        compared = compare_counts([user.pk for user in users])
        connected = presence.connected_processes([user.pk for user in users])
        for user in users:
            user._counts = compared[user.pk]
            user._connected = connected[user.pk]

    def _counts(self, user: Any) -> ComparedCounts:
        if not hasattr(user, "_counts"):
            self.attach_page_counts([user])
        counts: ComparedCounts = user._counts
        return counts

    @admin.display(description="unread (database)")
    def unread_in_database(self, user: Any) -> int:
        return self._counts(user).database_total

    @admin.display(description="unread (Redis)")
    def unread_in_redis(self, user: Any) -> str:
        counts = self._counts(user)
        return _redis_cell(counts.redis_total, _status(counts))

    @admin.display(description="Redis agrees", boolean=True)
    def redis_agrees(self, user: Any) -> bool | None:
        status = _status(self._counts(user))
        return None if status == MISSING else status == AGREES

    @admin.display(description="connected (server processes)")
    def connected(self, user: Any) -> int:
        self._counts(user)
        return int(user._connected)

    @admin.display(description="unread by room (database / Redis)")
    def unread_by_room(self, user: Any) -> str:
        counts = self._counts(user)
        if not counts.rooms:
            return "member of no room"
        names = dict(Room.objects.filter(pk__in=counts.rooms).values_list("pk", "name"))
        rows = (
            (
                names.get(room_id, room_id),
                room.level,
                room.unread,
                _redis_cell(counts.redis_room(room_id), _status(counts, room_id)),
                room.mentions,
                _redis_cell(counts.redis_room_mentions(room_id), _status(counts, room_id)),
            )
            for room_id, room in sorted(counts.rooms.items())
        )
        return format_html(
            "<table><tr><th>room</th><th>level</th><th>unread (database)</th>"
            "<th>unread (Redis)</th><th>mentions (database)</th><th>mentions (Redis)</th>"
            "</tr>{}</table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                rows,
            ),
        )

    @admin.action(description="Deactivate the selected users and close their connections")
    def deactivate_users(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        changed = user_deactivate(user_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Deactivated {changed} user(s).", messages.SUCCESS)


admin.site.unregister(Membership)
admin.site.register(Membership, MembershipCountsAdmin)
admin.site.unregister(User)
admin.site.register(User, UserCountsAdmin)
