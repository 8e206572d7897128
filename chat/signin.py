"""Signing in through the page (`/login/`) and the admin, throttled (chat.signin_throttle).

The check lives in the form, where the username and the request meet: a locked pair is
refused before the password is looked at, and a wrong password is counted. `/login/` answers
a refusal with 429 and a page saying so (shared/PROTOCOL.md); the admin's login shows it as
its form error.
"""

import math
from typing import Any

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.http import HttpResponse
from django.shortcuts import render

from chat.signin_throttle import signin_failure_record, signin_lock_remaining
from chatproject.client_address import client_address

THROTTLED = "rate_limited"


class ThrottledAuthenticationForm(AuthenticationForm):
    retry_after: float | None = None

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        if not username or self.request is None:
            return super().clean()
        address = client_address(self.request)
        self.retry_after = signin_lock_remaining(username=username, address=address)
        if self.retry_after is not None:
            raise ValidationError(
                "Too many failed sign-ins for this username from your address. "
                "Try again in %(minutes)d minutes.",
                code=THROTTLED,
                params={"minutes": max(1, math.ceil(self.retry_after / 60))},
            )
        try:
            return super().clean()
        except ValidationError as error:
            if error.code == "invalid_login":
                signin_failure_record(username=username, address=address)
            raise


class ThrottledAdminAuthenticationForm(ThrottledAuthenticationForm, AdminAuthenticationForm):
    pass


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


class SignInView(LoginView):
    form_class = ThrottledAuthenticationForm
    template_name = "chat/login.html"
    redirect_authenticated_user = True

    def form_invalid(self, form: Any) -> HttpResponse:
        if form.has_error(NON_FIELD_ERRORS, THROTTLED):
            context = self.get_context_data(form=form)
            response = render(self.request, "chat/signin_throttled.html", context, status=429)
            response["Retry-After"] = retry_after_header(form.retry_after or 0)
            return response
        return super().form_invalid(form)
