from django.contrib.auth import views as auth_views
from django.urls import path

from chat import pages, views
from chat.signin import SignInView

urlpatterns = [
    path("", pages.chat_page_view, name="chat-page"),
    path("names.json", pages.member_names_view, name="member-names"),
    path("sw.js", pages.service_worker_view, name="service-worker"),
    path("login/", SignInView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/auth/token", views.token_view, name="api-token"),
    path("api/rooms", views.rooms_view, name="api-rooms"),
    path("api/rooms/<int:room_id>/messages", views.room_messages_view, name="api-room-messages"),
    path(
        "api/rooms/<int:room_id>/messages/<int:message_id>",
        views.room_message_view,
        name="api-room-message",
    ),
    path("api/rooms/<int:room_id>/unread", views.room_unread_view, name="api-room-unread"),
    path(
        "api/rooms/<int:room_id>/notifications",
        views.room_notifications_view,
        name="api-room-notifications",
    ),
    path(
        "api/rooms/<int:room_id>/membership",
        views.room_membership_view,
        name="api-room-membership",
    ),
    path("healthz", views.healthz_view, name="healthz"),
    path("metrics", views.metrics_view, name="metrics"),
]
