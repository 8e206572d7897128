"""ASGI entry point: HTTP through Django (and static files when DEBUG), /ws/chat/ through the
chat consumer (daphne serves it)."""

import os

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
django_asgi_app = get_asgi_application()
if settings.DEBUG:
    # daphne serves the page's static files in development, as `runserver` would; production
    # runs `collectstatic` and lets the web server in front serve STATIC_ROOT.
    django_asgi_app = ASGIStaticFilesHandler(django_asgi_app)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chat.middleware import ChatAuthMiddlewareStack, origin_checked  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": origin_checked(ChatAuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
