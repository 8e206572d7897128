"""The protocol backends are what the worker expects: DeviceBackends at the configured paths."""

from django.utils.module_loading import import_string

from notifications.apns import ApnsBackend
from notifications.backends import DeviceBackend
from notifications.webpush import WebPushBackend

# The paths of NOTIFICATIONS_PUSH_BACKENDS (device kind -> backend class).
PATHS = {
    "webpush": "notifications.webpush.WebPushBackend",
    "apns": "notifications.apns.ApnsBackend",
}


async def test_backends_load_from_their_paths_without_arguments() -> None:
    # Statically too: mypy checks these against the DeviceBackend protocol.
    expected: dict[str, type[DeviceBackend]] = {"webpush": WebPushBackend, "apns": ApnsBackend}
    for kind, path in PATHS.items():
        backend = import_string(path)()
        assert isinstance(backend, expected[kind])
        await backend.aclose()  # closing a backend that never sent is fine
