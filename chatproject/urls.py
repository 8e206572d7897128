from django.contrib import admin
from django.urls import include, path, re_path

from chat.views import api_not_found_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("chat.urls")),
    path("", include("notifications.urls")),
    # Last: an /api/ address no app claimed gets a JSON 404 (shared/PROTOCOL.md, errors).
    re_path(r"^api/(?P<rest>.*)$", api_not_found_view),
]
