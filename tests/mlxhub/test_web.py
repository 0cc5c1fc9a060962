"""The web process's HTTP server (``mlxhub.web``): daphne, its requests' bodies left to the application."""

from __future__ import annotations

from typing import Any

import pytest
from daphne.http_protocol import HTTPFactory
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from mlxhub.web import BodyHTTPFactory

FORM = b"a=1&b=2"


class RecordingServer:
    """What daphne's request asks of its server, recording the application's messages."""

    root_path = ""
    proxy_forwarded_address_header = None
    request_buffer_size = 8192

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.requests: list[Any] = []

    def protocol_connected(self, request: Any) -> None:
        self.requests.append(request)

    def protocol_disconnected(self, request: Any) -> None:
        pass

    def create_application(self, request: Any, scope: dict[str, Any]) -> Any:
        self.scopes.append(scope)
        server = self

        class Queue:
            def put_nowait(self, message: dict[str, Any]) -> None:
                server.messages.append(message)

        return Queue()


def post_form(factory_class: type[HTTPFactory]) -> RecordingServer:
    server = RecordingServer()
    protocol = factory_class(server).buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    protocol.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000)))
    protocol.dataReceived(
        b"POST /accounts/login/ HTTP/1.1\r\nHost: hub\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(FORM), FORM)
    )
    return server


@pytest.mark.parametrize(("factory_class", "parsed"), [(HTTPFactory, True), (BodyHTTPFactory, False)])
def test_a_posted_form_reaches_the_application_whole_and_twisted_parses_it_only_under_stock_daphne(
    factory_class: type[HTTPFactory], parsed: bool
) -> None:
    """Twisted parses a form POST into ``request.args`` (every POST's Content-Type through the ``email``
    package) unless told not to; ASGI hands the raw body on, so the web process tells it not to."""
    server = post_form(factory_class)
    (request,) = server.requests
    assert bool(request.args) is parsed
    assert server.scopes[0]["method"] == "POST" and server.scopes[0]["path"] == "/accounts/login/"
    body = b"".join(message.get("body", b"") for message in server.messages if message["type"] == "http.request")
    assert body == FORM
