"""Sign-in throttling: django-axes' backend, which refuses a username and address pair after repeated failures."""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.http import HttpRequest


class LoginThrottleBackend(AxesStandaloneBackend):
    """Axes' check for every sign-in that comes with a request (the pages' and the admin's login forms both pass
    theirs). A call without one is no HTTP sign-in (a management command, the test client's ``login``): there is
    no address to throttle, so it is left to the next backend instead of failing."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)  # type: ignore[no-any-return]
