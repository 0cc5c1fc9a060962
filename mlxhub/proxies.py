"""Which requests came through a proxy we trust (``MLXHUB_TRUSTED_PROXIES``): only theirs may say how the client
reached the proxy (``X-Forwarded-Proto``) and who the client is (``X-Forwarded-For``).

Django's ``SECURE_PROXY_SSL_HEADER`` believes the header from anyone who can reach the port. Here it names a
``request.META`` key that no HTTP header can produce (headers arrive as ``HTTP_*``); ``TrustedProxyMiddleware``
sets it from ``X-Forwarded-Proto`` only when the connection comes from a trusted address. A stack without the
middleware therefore trusts no header at all.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from mlxhub.middleware import HybridMiddleware


def is_trusted(address: str | None) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.MLXHUB_TRUSTED_PROXY_NETWORKS)


def client_ip(request: HttpRequest) -> str:
    """The client's address: the connection's, or, through trusted proxies, the nearest untrusted address in
    X-Forwarded-For (read from the right: each proxy appends the address it saw, a client can forge the rest)."""
    remote = str(request.META.get("REMOTE_ADDR") or "")
    if not is_trusted(remote):
        return remote
    hops = [hop.strip() for hop in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            return hop
    return hops[0] if hops else remote


class TrustedProxyMiddleware(HybridMiddleware):
    """First in the stack: the scheme a trusted proxy reports becomes what ``request.is_secure()`` reads."""

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        self._mark(request)
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> Any:
        self._mark(request)
        return await self.get_response(request)

    @staticmethod
    def _mark(request: HttpRequest) -> None:
        key = settings.SECURE_PROXY_SSL_HEADER[0]  # "MLXHUB_TRUSTED_PROTO"
        request.META.pop(key, None)
        forwarded = request.META.get("HTTP_X_FORWARDED_PROTO")
        if forwarded and is_trusted(request.META.get("REMOTE_ADDR")):
            request.META[key] = str(forwarded).split(",", 1)[0].strip().lower()
