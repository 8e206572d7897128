"""ASGI entry point for any ASGI server: HTTP through Django, behind the static files
(chatproject/static_files.py), and /ws/chat/ through the chat consumer."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chat.middleware import ChatAuthMiddlewareStack, origin_checked  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402
from chatproject.static_files import with_static_files  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": with_static_files(django_asgi_app),
        "websocket": origin_checked(ChatAuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
