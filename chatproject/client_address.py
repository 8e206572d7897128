"""The client's address as this deployment can know it, for limits keyed by address.

REMOTE_ADDR is the peer of the TCP connection: the client itself, or the reverse proxy in
front. Only when the deployment says how many proxies it runs behind (TRUSTED_PROXY_COUNT,
from DJANGO_TRUSTED_PROXY_COUNT) is X-Forwarded-For read, and then from the right: each
proxy appends the address it saw, so the entry `count` places from the end is what the
outermost trusted proxy saw. Entries further left were written by the client and prove
nothing; trusting them would let anyone pick the address a limit counts against.
"""

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    peer = str(request.META.get("REMOTE_ADDR") or "unknown")
    count = int(getattr(settings, "TRUSTED_PROXY_COUNT", 0))
    if count <= 0:
        return peer
    forwarded = [
        entry.strip()
        for entry in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")
        if entry.strip()
    ]
    if len(forwarded) < count:
        # Fewer hops than proxies: this request did not come through them all (a probe on
        # the private network, say). The peer is then the client.
        return peer
    return forwarded[-count]
