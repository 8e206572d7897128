"""The project's ASGI app with the sequential baseline mounted beside it on /ws/baseline/.

One daphne process serves both, so the two designs share the server, the database, Redis
and the channel layer in the same benchmark run.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django_asgi_app = get_asgi_application()

# An experiment knob, off by default: move everything loaded at startup to the collector's
# permanent generation, so full collections scan (and wait for) only what the traffic made.
if os.environ.get("BENCH_GC_FREEZE"):
    import gc

    gc.collect()
    gc.freeze()

if os.environ.get("BENCH_MEMWATCH"):
    from bench import memwatch

    if os.environ.get("BENCH_TRACEMALLOC"):
        memwatch.start_tracing()
    memwatch.start(os.environ["BENCH_MEMWATCH"])

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from bench.baseline import BaselineConsumer  # noqa: E402
from chat.middleware import ChatAuthMiddlewareStack, origin_checked  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": origin_checked(
            ChatAuthMiddlewareStack(
                URLRouter(
                    [*websocket_urlpatterns, path("ws/baseline/", BaselineConsumer.as_asgi())]
                )
            )
        ),
    }
)
