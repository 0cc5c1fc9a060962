"""manage.py screenshots DIR: one PNG per page of a running MLX Hub, taken in a real (headless) Chromium.

It signs in with --username/--password (the bootstrap admin by default), opens every page and waits for its
fragments to load; on the playground it sends one message and waits for the streamed reply, so the picture
shows a real exchange. The browser is the system Chromium (``apt-get install chromium``), never a download.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from mlxhub.services import ADMIN_USERNAME

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# (file name, path, what to wait for before the picture is taken)
PAGES = [
    ("overview", "/", "#health-checks"),
    ("models", "/models/", "#profiles-table"),
    ("discover", "/discover/", "#results table, #results .notice"),
    ("downloads", "/downloads/", "#downloads-table"),
    ("playground", "/playground/", "#chat-log"),
    ("keys", "/keys/", "#keys-table"),
    ("usage", "/usage/", "#usage-report"),
    ("team", "/team/", "#team-log-table"),
    ("routing", "/routing/resolve/?model={route_model}", "#route li"),
]


class Command(BaseCommand):
    help = "Save a screenshot of each page of a running MLX Hub into DIR (PNG, one per page)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory")
        parser.add_argument("--base-url", default=f"http://{settings.MLXHUB_HOST}:{settings.MLXHUB_PORT}")
        parser.add_argument("--username", default=ADMIN_USERNAME)
        parser.add_argument("--password", default=settings.MLXHUB_ADMIN_PASSWORD)
        parser.add_argument("--chromium", default=CHROMIUM, help="The Chromium binary to drive.")
        parser.add_argument("--width", type=int, default=1440)
        parser.add_argument("--height", type=int, default=900)
        parser.add_argument("--message", default="Write one line about MLX.", help="Sent in the playground.")
        parser.add_argument("--hub-model", default="", help="Also shoot /discover/<this repository>/.")
        parser.add_argument("--route-model", default="demo", help="The name the routing page resolves.")

    def handle(self, *args: Any, **options: Any) -> None:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright

        if not options["password"]:
            raise CommandError("Give --password (or set MLXHUB_ADMIN_PASSWORD) to sign in.")
        if not Path(options["chromium"]).exists():
            raise CommandError(f"No Chromium at {options['chromium']}: apt-get install -y chromium")
        directory = Path(options["directory"])
        directory.mkdir(parents=True, exist_ok=True)
        base = options["base_url"].rstrip("/") + "/"
        pages = list(PAGES)
        if options["hub_model"]:
            pages.insert(3, ("hub-model", f"/discover/{options['hub_model']}/", "#hub-files"))
        with sync_playwright() as playwright:
            try:
                browser = playwright.chromium.launch(executable_path=options["chromium"], args=CHROMIUM_ARGS)
            except PlaywrightError as exc:
                raise CommandError(f"Chromium did not start: {exc}") from exc
            page = browser.new_page(viewport={"width": options["width"], "height": options["height"]})
            page.goto(urljoin(base, "login/"))
            self._save(page, directory / "login.png")
            page.fill("#id_username", options["username"])
            page.fill("#id_password", options["password"])
            page.click("#login-form button[type=submit]")
            page.wait_for_load_state("networkidle")
            if "/login/" in page.url:
                raise CommandError(f"Could not sign in as {options['username']!r} at {base}.")
            for name, path, ready in pages:
                page.goto(urljoin(base, path.format(route_model=options["route_model"]).lstrip("/")))
                page.wait_for_selector(ready, state="attached", timeout=30_000)
                if name == "playground":
                    self._chat(page, options["message"])
                self._save(page, directory / f"{name}.png")
            browser.close()

    def _chat(self, page: Any, message: str) -> None:
        if page.is_disabled("#prompt"):
            return  # no chat profile, or a viewer: the empty playground is the picture
        page.fill("#temperature", "0")  # greedy: the same picture every time
        page.fill("#max-tokens", "48")
        page.fill("#prompt", message)
        page.press("#prompt", "Enter")
        page.wait_for_selector(".msg.assistant[data-state=done], .msg.assistant[data-state=error]", timeout=120_000)
        page.click("#show-code summary")

    def _save(self, page: Any, path: Path) -> None:
        page.wait_for_load_state("networkidle")
        time.sleep(0.3)  # let the last swap settle
        page.screenshot(path=str(path), full_page=True)
        self.stdout.write(f"saved {path}")
