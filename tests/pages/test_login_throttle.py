"""Sign-in is throttled (django-axes) on the pages' /login/ and the admin's /admin/login/: after repeated failures
for one username from one address, even the right password is refused, in words, until the cool-off ends."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.utils import timezone

from tests.mlxhub.factories import PASSWORD, make_user

LIMIT = 5  # the default of MLXHUB_LOGIN_FAILURE_LIMIT


@pytest.fixture
def root(db: None) -> Any:
    return make_user("root", is_superuser=True, is_staff=True)


def fail(browser: Client, url: str, username: str, times: int = LIMIT) -> None:
    for _ in range(times):
        browser.post(url, {"username": username, "password": "wrong guess"})


@pytest.mark.parametrize("url", ["/login/", "/admin/login/"])
def test_the_right_password_is_refused_in_words_after_repeated_failures(root: Any, url: str):
    browser = Client(REMOTE_ADDR="203.0.113.7")
    fail(browser, url, "root")

    response = browser.post(url, {"username": "root", "password": PASSWORD})

    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many failed sign-ins" in page and "15 minutes" in page and "even with the right password" in page
    assert "_auth_user_id" not in browser.session


@pytest.mark.parametrize("url", ["/login/", "/admin/login/"])
def test_the_right_password_works_again_after_the_cool_off(root: Any, url: str):
    browser = Client(REMOTE_ADDR="203.0.113.7")
    fail(browser, url, "root")
    # The cool-off (15 minutes) has passed: the attempts are that old now.
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))

    response = browser.post(url, {"username": "root", "password": PASSWORD})

    assert response.status_code == 302
    assert browser.session["_auth_user_id"] == str(root.pk)


def test_fewer_failures_than_the_limit_still_let_the_right_password_in(root: Any):
    browser = Client(REMOTE_ADDR="203.0.113.7")
    fail(browser, "/login/", "root", times=LIMIT - 1)

    assert browser.post("/login/", {"username": "root", "password": PASSWORD}).status_code == 302


def test_the_lock_holds_one_username_at_one_address(root: Any):
    make_user("bob")
    fail(Client(REMOTE_ADDR="203.0.113.7"), "/login/", "root")

    elsewhere = Client(REMOTE_ADDR="198.51.100.20").post("/login/", {"username": "root", "password": PASSWORD})
    other_user = Client(REMOTE_ADDR="203.0.113.7").post("/login/", {"username": "bob", "password": PASSWORD})

    assert elsewhere.status_code == 302 and other_user.status_code == 302


def test_a_forged_forwarded_for_does_not_escape_the_lock(root: Any):
    for index in range(LIMIT):  # a new X-Forwarded-For every time, from an address that is no trusted proxy
        Client(REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR=f"10.9.9.{index}").post(
            "/login/", {"username": "root", "password": "wrong guess"}
        )

    response = Client(REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR="10.9.9.99").post(
        "/login/", {"username": "root", "password": PASSWORD}
    )

    assert response.status_code == 429


def test_behind_a_trusted_proxy_each_client_is_locked_on_its_own_address(root: Any):
    fail(Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.7"), "/login/", "root")

    locked = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.7")
    other = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.20")

    assert locked.post("/login/", {"username": "root", "password": PASSWORD}).status_code == 429
    assert other.post("/login/", {"username": "root", "password": PASSWORD}).status_code == 302
