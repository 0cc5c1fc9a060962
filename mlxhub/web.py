"""The web process: daphne, with a graceful drain on SIGTERM/SIGINT instead of its immediate stop.

``python -m mlxhub.web`` takes daphne's own arguments (``manage.py serve`` runs it). Daphne's signal
handlers stop the reactor at once, cancelling every request in flight; here the first SIGTERM or SIGINT
starts ``mlxhub.lifecycle``'s drain instead (a second one stops at once), and the process exits with
the lifecycle's code: 0 after a drain, ``ENGINE_DIED_EXIT_CODE`` when its engine died.

Its requests skip Twisted's parse of a POST body into form arguments: ASGI hands the application the raw
body, which Django parses itself, and Twisted's parse of every POST's ``Content-Type`` (through the
``email`` package) was 6 % of the event loop's busy time under routed load.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType
from typing import Any

from daphne import server as daphne_server
from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.server import Server

logger = logging.getLogger(__name__)


class BodyRequest(WebRequest):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, parsePOSTFormSubmission=False, **kwargs)


class BodyHTTPFactory(HTTPFactory):  # type: ignore[misc]
    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = BodyRequest
        return protocol


class DrainingServer(Server):  # type: ignore[misc]  # daphne ships no type hints
    def run(self) -> None:
        from twisted.internet import reactor

        from mlxhub import lifecycle

        def stop(code: int) -> None:
            reactor.callFromThread(self.stop)

        def on_signal(signum: int, frame: FrameType | None) -> None:
            from django.conf import settings

            if not lifecycle.drain_start(settings.MLXHUB_DRAIN_SECONDS):
                logger.warning("signal %d while stopping: stopping now", signum)
                reactor.callFromThread(self.stop)

        lifecycle.serve_with(stop)
        daphne_server.HTTPFactory = BodyHTTPFactory  # what Server.run builds its HTTP factory from
        self.signal_handlers = False  # ours, not Twisted's: installed before the reactor runs
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        super().run()


class DrainingCommandLine(CommandLineInterface):  # type: ignore[misc]
    server_class = DrainingServer


def main(argv: list[str] | None = None) -> Any:
    DrainingCommandLine().run(sys.argv[1:] if argv is None else argv)
    from mlxhub import lifecycle

    return lifecycle.exit_code


if __name__ == "__main__":
    sys.exit(main())
