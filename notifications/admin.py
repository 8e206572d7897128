"""Admin of the notifications app: devices and their state, deliveries, mutes, the outbox."""

from django.contrib import admin

from notifications.models import Device, PushDelivery


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "kind", "address", "active", "created_at", "deactivated_at"]
    list_select_related = ["user"]
    list_filter = ["kind", "active"]
    search_fields = ["user__username"]
    raw_id_fields = ["user"]


@admin.register(PushDelivery)
class PushDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "kind",
        "message_id",
        "device",
        "user",
        "status",
        "reason",
        "badge",
        "attempts",
        "last_error",
        "created_at",
        "sent_at",
    ]
    list_select_related = ["device__user"]
    list_filter = ["status", "kind", "reason", "device__kind"]
    search_fields = ["device__user__username", "=message__id", "last_error"]
    raw_id_fields = ["message", "device"]
    date_hierarchy = "created_at"
    # Records of what happened: staff read them; the worker writes them.
    readonly_fields = [field.name for field in PushDelivery._meta.fields]

    @admin.display(ordering="device__user__username")
    def user(self, delivery: PushDelivery) -> str:
        return delivery.device.user.get_username()
