from django.urls import path

from chat import views

urlpatterns = [
    path("api/auth/token", views.token_view, name="api-token"),
    path("api/rooms", views.rooms_view, name="api-rooms"),
    path("api/rooms/<int:room_id>/messages", views.message_send_view, name="api-room-messages"),
    path("healthz", views.healthz_view, name="healthz"),
    path("metrics", views.metrics_view, name="metrics"),
]
