from django.urls import path

from notifications import views
from notifications.vapid import vapid_public_key_view

urlpatterns = [
    path("api/push/vapid-public-key", vapid_public_key_view, name="api-vapid-public-key"),
    path("api/devices", views.device_register_view, name="api-devices"),
    path("api/devices/<int:device_id>", views.device_delete_view, name="api-device"),
    path("api/rooms/<int:room_id>/mute", views.room_mute_view, name="api-room-mute"),
]
