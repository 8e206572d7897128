from django.contrib import admin

from notifications.models import Device


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "kind", "address", "created_at"]
    list_select_related = ["user"]
    list_filter = ["kind"]
    search_fields = ["user__username"]
    raw_id_fields = ["user"]
