"""The web page: the chat at `/`, and the service worker that shows its push notifications.

Server-rendered shells with small ES modules on top (chat/static/chat/): the template gives
the modules what they cannot ask the API for (the user's id, members' names, the URLs), and
everything that changes (rooms, counts, messages) comes over the API and the WebSocket.
"""

from pathlib import Path
from typing import cast

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from chat.selectors import member_names_for

_SERVICE_WORKER = Path(__file__).resolve().parent / "static" / "chat" / "sw.js"


@require_safe
@login_required
def chat_page_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    user_id = cast(int, user.pk)  # login_required: never the anonymous user's None
    context = {
        "page_config": {
            "userId": user_id,
            "username": user.get_username(),
            "names": {str(pk): name for pk, name in member_names_for(user_id).items()},
            "namesUrl": reverse("member-names"),
        }
    }
    return render(request, "chat/index.html", context)


@require_safe
@never_cache
@login_required
def member_names_view(request: HttpRequest) -> JsonResponse:
    """The same names as the page's config, fresh: the page asks again when a sender it does
    not know shows up (a member who joined one of its rooms after it loaded)."""
    user_id = cast(int, request.user.pk)
    names = {str(pk): name for pk, name in member_names_for(user_id).items()}
    return JsonResponse({"names": names})


@require_safe
@never_cache
def service_worker_view(request: HttpRequest) -> HttpResponse:
    """sw.js from the site's root: a worker's scope can only be its own folder or below it,
    and the page lives at `/`, so it cannot be served from /static/."""
    response = HttpResponse(_SERVICE_WORKER.read_bytes(), content_type="text/javascript")
    response["Service-Worker-Allowed"] = "/"
    return response
