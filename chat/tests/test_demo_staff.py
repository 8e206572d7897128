import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from django.urls import reverse

pytestmark = pytest.mark.django_db


@override_settings(DEBUG=True)
def test_demo_staff_is_created_once_and_can_use_the_admin() -> None:
    call_command("create_demo_staff")
    call_command("create_demo_staff")  # idempotent
    staff = get_user_model().objects.get(username="staff")
    assert staff.is_staff and staff.is_superuser and staff.is_active
    assert get_user_model().objects.filter(username="staff").count() == 1
    client = Client()
    assert client.login(username="staff", password="demo")
    assert client.get(reverse("admin:chat_membership_changelist")).status_code == 200


@override_settings(DEBUG=True)
def test_demo_staff_login_is_reset_when_it_was_changed() -> None:
    call_command("create_demo_staff")
    staff = get_user_model().objects.get(username="staff")
    staff.set_password("changed")
    staff.is_active = False
    staff.save()
    call_command("create_demo_staff")
    assert Client().login(username="staff", password="demo")


@override_settings(DEBUG=False)
def test_demo_staff_refuses_without_debug_unless_forced() -> None:
    with pytest.raises(CommandError, match="DEBUG is off"):
        call_command("create_demo_staff")
    assert not get_user_model().objects.filter(username="staff").exists()
    call_command("create_demo_staff", "--force")
    assert get_user_model().objects.filter(username="staff", is_staff=True).exists()
