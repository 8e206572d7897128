"""Admin of the chat app.

Saves here go through the models' signals like every other write: a message added here is
announced after commit (chat.receivers), and membership changes make badges rebuild the
member's counts. The read pointer is not editable: moving it by hand would make the counts
lie, so a member added here starts with nothing unread, as `room_add_member` would do.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.forms import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.text import Truncator

from chat.app_settings import app_settings
from chat.models import AuthToken, Membership, Message, Room, SignInLock
from chat.revocation import token_revoke
from chat.selectors import latest_message_id
from chat.services import room_mark_all_read
from chat.signin import ThrottledAdminAuthenticationForm
from chat.signin_throttle import signin_locks, signin_unlock

# The admin's own login is throttled like /login/ (chat.signin), shown as its form error.
admin.site.login_form = ThrottledAdminAuthenticationForm


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]
    fields = ["user", "last_read_message_id", "joined_at"]
    readonly_fields = ["last_read_message_id"]


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "member_count", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Room]:
        return super().get_queryset(request).annotate(member_count=Count("memberships"))

    @admin.display(description="members", ordering="member_count")
    def member_count(self, room: Room) -> int:
        return room.member_count  # type: ignore[attr-defined]

    def save_formset(
        self,
        request: HttpRequest,
        form: Any,
        formset: BaseInlineFormSet,
        change: bool,
    ) -> None:
        if formset.model is Membership:
            upto = latest_message_id(formset.instance.pk)
            for membership_form in formset.forms:
                if membership_form.instance.pk is None:
                    membership_form.instance.last_read_message_id = upto
        super().save_formset(request, form, formset, change)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["id", "room", "user", "level", "last_read_message_id", "joined_at"]
    list_select_related = ["room", "user"]
    list_filter = ["room", "level"]
    search_fields = ["user__username", "room__name"]
    raw_id_fields = ["room", "user"]
    readonly_fields = ["last_read_message_id"]
    actions = ["mark_room_read"]

    @admin.action(description="Mark the room read for the selected members", permissions=["change"])
    def mark_room_read(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        # One service call per member: each fires `room_read`, so their open devices update.
        pairs = list(queryset.order_by("pk").values_list("user_id", "room_id"))
        for user_id, room_id in pairs:
            room_mark_all_read(user_id=user_id, room_id=room_id)
        self.message_user(
            request, f"Marked {len(pairs)} membership(s) read up to now.", messages.SUCCESS
        )

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        if not change:
            obj.last_read_message_id = latest_message_id(obj.room_id)
        super().save_model(request, obj, form, change)


class MessageAdminForm(forms.ModelForm):
    """The service's rules for a new message: the sender is a member, the body fits."""

    class Meta:
        model = Message
        fields = ["room", "sender", "body", "client_message_id", "created_at"]

    def clean_body(self) -> str:
        body: str = self.cleaned_data["body"]
        if len(body) > app_settings.MAX_MESSAGE_LENGTH:
            raise forms.ValidationError(
                f"A message has at most {app_settings.MAX_MESSAGE_LENGTH} characters."
            )
        return body

    def clean_client_message_id(self) -> str | None:
        # Blank means none: NULLs do not collide in the unique (sender, clientMessageId).
        return self.cleaned_data.get("client_message_id") or None

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        room, sender = cleaned.get("room"), cleaned.get("sender")
        if (
            self.instance.pk is None
            and room is not None
            and sender is not None
            and not Membership.objects.filter(room=room, user=sender).exists()
        ):
            raise forms.ValidationError(f"{sender} is not a member of {room}.")
        return cleaned


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    form = MessageAdminForm
    list_display = ["id", "room", "sender", "created_at", "short_body"]
    list_select_related = ["room", "sender"]
    list_filter = ["room", "created_at"]
    search_fields = ["body", "sender__username", "room__name"]
    raw_id_fields = ["room", "sender"]
    date_hierarchy = "created_at"

    @admin.display(description="body")
    def short_body(self, message: Message) -> str:
        return Truncator(message.body).chars(60)


class TokenStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "active"), ("expired", "expired"), ("revoked", "revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True, expires_at__gt=now)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(AuthToken)
class AuthTokenAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "created_at", "expires_at", "revoked_at", "active"]
    list_select_related = ["user"]
    list_filter = [TokenStateFilter, "expires_at"]
    search_fields = ["user__username"]
    raw_id_fields = ["user"]
    # Only the hash is stored; a token is created by POST /api/auth/token, never typed in here.
    readonly_fields = ["key_hash", "created_at"]
    actions = ["revoke_tokens"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(boolean=True, description="active")
    def active(self, token: AuthToken) -> bool:
        return token.is_active

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[AuthToken]) -> None:
        # The service also closes the WebSocket connections these tokens opened.
        revoked = token_revoke(token_ids=queryset.values_list("pk", flat=True))
        self.message_user(request, f"Revoked {revoked} token(s).", messages.SUCCESS)


@admin.register(SignInLock)
class SignInLockAdmin(admin.ModelAdmin):
    """The (username, address) pairs refused for failed sign-ins right now, read from Redis,
    each with a button that lifts its lock (chat.signin_throttle)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        # The list is the one page: there is no table behind the model to add to or change.
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view(self.changelist_view)
        return [path("", view, name="{}_{}_changelist".format(*info))]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            if not self.has_change_permission(request):
                raise PermissionDenied
            username, address = request.POST.get("username", ""), request.POST.get("address", "")
            signin_unlock(username=username, address=address)
            self.message_user(request, f"Unlocked {username!r} from {address}.", messages.SUCCESS)
            return HttpResponseRedirect(request.path)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Sign-in locks",
            "locks": signin_locks(),
            "can_unlock": self.has_change_permission(request),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/chat/signin_locks.html", context)
