"""The pages in a real browser: Playwright drives the system Chromium against a live MLX Hub (daphne, the
in-process engine on the tiny model, a real Celery worker, the fake hub as HF_ENDPOINT).

One server, one worker and one browser serve the whole module; each test opens its own browser context
(its own cookies). The tests are plain sync functions: Playwright's sync API runs its own event loop, and
pytest-asyncio never starts one for a sync test.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.catalog import fakehub
from tests.catalog.fakehub import ORG, FakeHub, text_repo
from tests.catalog.test_downloads_worker import Stack
from tests.conftest import LiveHub, hub_env, start_hub, stop_hub
from tests.model_builders import build_tiny_paligemma, minilm_path

fake_hub = fakehub.fake_hub

pytestmark = pytest.mark.live

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
PASSWORDS = {
    "alice": "alice-pass-1234",
    "bob": "bob-pass-12345",
    "charlie": "charlie-pass-1234",
    "dave": "dave-pass-1234",
}
ROLES = {"alice": "admin", "bob": "member", "charlie": "viewer", "dave": "member"}
PAGES = {
    "/": "Overview",
    "/models/": "Models",
    "/discover/": "Discover",
    "/downloads/": "Downloads",
    "/playground/": "Playground",
    "/keys/": "API keys",
    "/usage/": "Usage",
    "/team/": "Team Research",
}
DOWNLOAD_REPO = f"{ORG}/browser-tiny"
# A profile with room for a long generation: the tiny model's 2048 positions, raised (RoPE does not mind), on a
# folder of its own (a loaded folder keeps the context of the profile that loaded it).
LONG_CONTEXT = 32768
LONG_REPO = "local/long-tiny"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, fake_hub: FakeHub, tiny_model_dir: Path) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("pages-hub")
    shutil.copytree(tiny_model_dir, home / "models" / "mlxhub-demo-tiny")  # bootstrap only registers it
    fake_hub.add(text_repo(tiny_model_dir, DOWNLOAD_REPO, downloads=7))
    queue = f"test-pages-{uuid.uuid4().hex[:10]}"
    extra = {
        "MLXHUB_HF_ENDPOINT": fake_hub.url,
        "HF_HOME": str(home / "hf-home"),
        "MLXHUB_DOWNLOAD_QUEUE": queue,
        "MLXHUB_DOWNLOAD_MIN_FREE_BYTES": "0",
    }
    stack = Stack(hub=LiveHub("", "", "", home, hub_env(home, **extra), None, home / "none"), queue=queue)  # type: ignore[arg-type]
    stack.start_worker()
    try:
        stack.hub = start_hub(home, **extra)
        shutil.copytree(tiny_model_dir, home / "long-tiny")
        stack.hub.manage("register_model", str(home / "long-tiny"), "--name", "long-base")
        # The real all-MiniLM-L6-v2 for the embeddings tab, a tiny PaliGemma for images.
        stack.hub.manage("register_model", str(minilm_path()), "--name", "minilm")
        vision = build_tiny_paligemma(home / "paligemma")
        stack.hub.manage("register_model", str(vision), "--name", "tiny-vision")
        for username, role in ROLES.items():
            stack.hub.manage(
                "user_add", username, "--team", "Research", "--role", role, "--password", PASSWORDS[username]
            )
        yield stack
    finally:
        stack.stop_worker()
        if stack.hub.process is not None:
            stop_hub(stack.hub)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: apt-get install -y chromium (.ci/run does)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Browser:
    """One signed-in person's tab, with the JavaScript errors it met."""

    def __init__(self, page: Any, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.set_default_timeout(30_000)

    def open(self, path: str) -> Any:
        self.page.goto(self.base_url + path)
        return self.page

    def sign_in(self, username: str) -> None:
        page = self.open("/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORDS[username])
        page.click("#login-form button[type=submit]")
        page.wait_for_url(self.base_url + "/")

    def post(self, path: str, form: dict[str, str] | None = None) -> Any:
        """A POST straight to an endpoint, with this session's cookie and CSRF token, as a script would."""
        token = next(cookie["value"] for cookie in self.page.context.cookies() if cookie["name"] == "csrftoken")
        return self.page.request.post(
            self.base_url + path, form=form or {}, headers={"X-CSRFToken": token, "Referer": self.base_url + "/"}
        )


@pytest.fixture
def tab(chromium: Any, stack: Stack) -> Iterator[Browser]:
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    browser = Browser(context.new_page(), stack.hub.base_url)
    yield browser
    context.close()
    assert not browser.errors, f"JavaScript errors: {browser.errors}"


def api(stack: Stack) -> httpx.Client:
    return stack.hub.client()


def wait_until(check: Any, timeout: float = 30, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(every)


def make_profile(tab: Browser, name: str, local_model_id: str, *, context_length: int | None = None) -> None:
    page = tab.open(f"/models/?local_model={local_model_id}#new-profile")
    page.fill("#new-profile #id_name", name)
    page.fill("#new-profile #id_default_max_tokens", "64")
    if context_length:
        page.fill("#new-profile #id_context_length", str(context_length))
    page.click("#new-profile button[type=submit]")
    page.wait_for_selector(f"#profile-{name}")


# The tests.
def test_a_member_signs_in_at_the_login_page_and_every_page_opens(tab: Browser):
    tab.sign_in("bob")

    for path, heading in PAGES.items():
        page = tab.open(path)
        assert page.locator("h1").inner_text() == heading, path
        assert page.locator("nav[aria-label=Pages] a[aria-current=page]").count() == 1, path
    # Fragments loaded after the skeleton arrived: health on the overview, results on discover.
    tab.open("/").wait_for_selector("#health-checks")
    tab.open("/discover/").wait_for_selector("#hub-results")
    assert tab.open("/routing/").locator("h1").inner_text() == "Not allowed"  # admins only


def test_without_javascript_every_page_reads_and_the_search_still_answers(chromium: Any, stack: Stack):
    context = chromium.new_context(java_script_enabled=False)
    tab = Browser(context.new_page(), stack.hub.base_url)
    try:
        tab.sign_in("bob")
        for path, heading in PAGES.items():
            assert tab.open(path).locator("h1").inner_text() == heading, path
        page = tab.open("/discover/")
        page.fill("#id_q", "browser-tiny")
        page.click("#hub-search button[type=submit]")  # the <noscript> field asks for the results inline
        assert DOWNLOAD_REPO in page.locator("#hub-results").inner_text()
        assert "inline=1" in page.url
    finally:
        context.close()


def test_a_member_searches_the_hub_downloads_and_the_bar_reaches_100_without_reloading(
    tab: Browser, stack: Stack, fake_hub: FakeHub
):
    tab.sign_in("bob")
    page = tab.open("/discover/")
    page.wait_for_selector("#hub-results")
    page.fill("#id_q", "browser-tiny")
    page.wait_for_url("**/discover/?q=browser-tiny*")  # the filter is in the URL: a bookmark shows the same search
    page.wait_for_function("document.querySelectorAll('#hub-results tbody tr').length === 1")
    assert DOWNLOAD_REPO in page.locator("#hub-results tbody tr").inner_text()
    fake_hub.throttle(DOWNLOAD_REPO, 60_000)  # about six seconds, so the bar is seen moving
    try:
        page.locator("#hub-results tr", has_text=DOWNLOAD_REPO).locator("button", has_text="Download").click()
        page.wait_for_url("**/downloads/#download-*")
        page.evaluate("window.notReloaded = true")
        row = page.locator("tr[id^=download-]", has_text=DOWNLOAD_REPO).first
        seen: list[str] = []

        def finished() -> bool:
            seen.append(row.locator(".download-percent").inner_text())
            return row.get_attribute("data-status") == "done"

        wait_until(finished, timeout=90, every=0.25)
    finally:
        fake_hub.throttle(DOWNLOAD_REPO, None)

    percents = [int(text.rstrip("%")) for text in seen]
    assert any(0 < value < 100 for value in percents), percents  # it moved on the page …
    assert percents == sorted(percents) and row.locator(".download-percent").inner_text() == "100%"
    assert page.evaluate("window.notReloaded") is True  # … and the page never reloaded
    assert row.locator("a", has_text="make a profile").count() == 1


def local_model_of(stack: Stack, repo_id: str) -> dict[str, Any]:
    """The local model of ``repo_id``, downloading it first when the download test has not."""
    with api(stack) as client:
        rows = [row for row in client.get("/api/catalog/local/").json() if row["repo_id"] == repo_id]
    if not rows:
        stack.wait(stack.start(repo_id)["id"], lambda job: job["status"] in {"done", "failed"}, timeout=90)
        return local_model_of(stack, repo_id)
    return rows[0]


def test_a_member_makes_a_profile_for_the_downloaded_model(tab: Browser, stack: Stack):
    local = local_model_of(stack, DOWNLOAD_REPO)
    tab.sign_in("bob")

    make_profile(tab, "browser-chat", str(local["id"]))

    row = tab.page.locator("#profile-browser-chat")
    assert row.get_attribute("data-state") == "unloaded" and DOWNLOAD_REPO in row.inner_text()
    with api(stack) as client:
        assert client.get("/api/profiles/browser-chat/").json()["local_model_repo_id"] == DOWNLOAD_REPO


def install_length_recorder(page: Any) -> None:
    """Record the newest reply's state and length at every change of the chat log."""
    page.evaluate(
        """() => {
          window.replyLengths = [];
          new MutationObserver(() => {
            const replies = document.querySelectorAll('.msg.assistant');
            const reply = replies[replies.length - 1];
            if (reply) window.replyLengths.push([reply.dataset.state, reply.textContent.length]);
          }).observe(document.getElementById('chat-log'), {subtree: true, childList: true, characterData: true});
        }"""
    )


def test_a_member_chats_and_the_reply_grows_on_the_page_before_it_ends(tab: Browser):
    tab.sign_in("bob")
    page = tab.open("/playground/?profile=demo")
    install_length_recorder(page)
    page.fill("#temperature", "0")  # greedy: the tiny model's random weights never pick an end token then
    page.fill("#max-tokens", "300")
    page.fill("#prompt", "Tell me about MLX.")
    page.press("#prompt", "Enter")

    reply = page.wait_for_selector(".msg.assistant:is([data-state=done], [data-state=error])", timeout=120_000)

    assert reply.get_attribute("data-state") == "done", reply.inner_text()
    streaming = [length for state, length in page.evaluate("window.replyLengths") if state == "streaming"]
    assert len({length for length in streaming if length > 0}) >= 3, streaming  # visibly growing, then done
    meta = page.locator(".msg-meta").last.inner_text()
    assert "TTFT" in meta and "tokens/s" in meta and "completion tokens" in meta, meta
    snippet = page.locator("#snippet-curl").text_content() or ""
    assert snippet.startswith(f"curl {tab.base_url}/v1/chat/completions") and '"model": "demo"' in snippet


def test_stop_ends_a_long_generation_and_the_engine_shows_it_cancelled(tab: Browser, stack: Stack):
    local = local_model_of(stack, LONG_REPO)
    tab.sign_in("bob")
    make_profile(tab, "browser-long", str(local["id"]), context_length=LONG_CONTEXT)
    page = tab.open("/playground/?profile=browser-long")
    page.fill("#temperature", "0")  # greedy: it cannot end by itself before max_tokens
    page.fill("#max-tokens", str(LONG_CONTEXT - 100))
    page.fill("#prompt", "Go on for as long as you can.")
    page.press("#prompt", "Enter")
    page.wait_for_function(
        "['streaming', 'error'].includes(document.querySelector('.msg.assistant')?.dataset.state)"
        " && document.querySelector('.msg.assistant').textContent.length > 20",
        timeout=120_000,
    )
    reply = page.locator(".msg.assistant")
    assert reply.get_attribute("data-state") == "streaming", reply.inner_text()
    assert page.is_visible("#stop") and not page.is_visible("#send")

    page.click("#stop")

    page.wait_for_selector(".msg.assistant[data-state=stopped]")
    assert page.is_visible("#send") and not page.is_visible("#stop")
    with api(stack) as client:

        def engine_idle() -> bool:
            model = client.get("/v1/engine").json()["models"]["browser-long"]
            return model["active_requests"] == 0 and model["in_flight"] == 0

        wait_until(engine_idle)
        row = wait_until(
            lambda: (client.get("/api/audit/", params={"model": "browser-long"}).json()["results"] or [None])[0]
        )
    assert row["cancelled"] is True and row["streamed"] is True and row["user"] == "bob"
    assert row["status_code"] == 499 and 0 < row["completion_tokens"] < LONG_CONTEXT - 100


def test_the_embeddings_tab_compares_two_texts_with_a_real_model(tab: Browser):
    tab.sign_in("bob")
    page = tab.open("/playground/")
    page.click("#embeddings-tab")
    page.select_option("#embedding-profile", "minilm")
    # The page's own example: the pair whose similarity sentence-transformers publishes (0.7553).
    assert page.input_value("#text-a") == "A man is eating food."
    assert page.input_value("#text-b") == "A man is eating a piece of bread."

    page.click("#compare")

    page.wait_for_selector("#similarity-value, #similarity-result .error-text", timeout=60_000)
    assert page.locator("#similarity-value").count() == 1, page.inner_text("#similarity-result")
    assert abs(float(page.inner_text("#similarity-value")) - 0.755) < 0.01
    assert "384 dimensions" in page.inner_text("#similarity-result")


def test_a_vision_model_answers_about_an_uploaded_image(tab: Browser, tmp_path: Path):
    from PIL import Image

    image = tmp_path / "square.png"
    Image.new("RGB", (32, 32), (255, 0, 0)).save(image)
    tab.sign_in("bob")
    page = tab.open("/playground/?profile=tiny-vision")
    assert page.is_visible("#image-row")  # only a vision profile offers an image

    page.set_input_files("#image", str(image))
    page.fill("#temperature", "0")
    page.fill("#max-tokens", "8")
    page.fill("#prompt", "What colour is this?")
    page.press("#prompt", "Enter")

    reply = page.wait_for_selector(".msg.assistant:is([data-state=done], [data-state=error])", timeout=120_000)
    assert reply.get_attribute("data-state") == "done", reply.inner_text()
    assert page.locator(".msg.user img").count() == 1
    assert "8 completion tokens" in page.locator(".msg-meta").last.inner_text()


def test_a_member_makes_a_key_and_sees_its_secret_once(tab: Browser, stack: Stack):
    tab.sign_in("bob")
    page = tab.open("/keys/")
    page.fill("#key-form #id_name", "browser-laptop")
    page.click("#key-form button[type=submit]")

    secret = page.locator("#new-key-secret").inner_text()
    assert secret.startswith("mlxh-") and page.locator("[data-copy='#new-key-secret']").is_visible()
    page.wait_for_selector("#keys-table >> text=browser-laptop")  # the list reloaded itself
    with httpx.Client(base_url=stack.hub.base_url, headers={"Authorization": f"Bearer {secret}"}) as client:
        assert client.get("/v1/models").status_code == 200  # the shown secret is the key

    page.reload()

    assert secret not in page.content() and secret[:12] in page.content()


def test_a_viewer_sees_no_write_controls_and_gets_403_posting_to_them(tab: Browser):
    tab.sign_in("charlie")
    page = tab.open("/discover/")
    page.wait_for_selector("#hub-results")
    assert page.locator("#hub-results button", has_text="Download").count() == 0
    page = tab.open("/models/")
    assert page.locator("#profiles-table button").count() == 0  # no load, unload or pin
    assert page.locator("#new-profile").count() == 0
    assert tab.open("/keys/").locator("#key-form").count() == 0
    assert tab.open("/downloads/").locator("#downloads-table button").count() == 0
    assert tab.open("/playground/").is_disabled("#prompt")

    for path, form in [
        ("/downloads/start/", {"repo_id": DOWNLOAD_REPO}),
        ("/keys/create/", {"name": "sneaky"}),
        ("/models/profiles/demo/load/", {}),
        ("/models/profiles/demo/unload/", {}),
        ("/models/profiles/", {"name": "sneaky"}),
    ]:
        assert tab.post(path, form).status == 403, path


def test_the_playgrounds_endpoint_refuses_a_viewers_session(tab: Browser):
    """Viewers read; only members and admins use the playground, also when posting to /v1 directly."""
    tab.sign_in("charlie")
    token = next(cookie["value"] for cookie in tab.page.context.cookies() if cookie["name"] == "csrftoken")
    body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}

    for path, payload in [("/v1/chat/completions", body), ("/v1/embeddings", {"model": "minilm", "input": "hi"})]:
        answer = tab.page.request.post(tab.base_url + path, data=payload, headers={"X-CSRFToken": token})
        assert answer.status == 403, f"{path}: {answer.status} {answer.text()[:300]}"


def test_an_admin_changes_a_members_role_and_the_change_shows_in_the_log(tab: Browser):
    tab.sign_in("alice")
    page = tab.open("/team/")
    page.wait_for_selector("#team-log-table")
    row = page.locator("tr[id^=member-]", has_text="dave")

    row.locator("select[name=role]").select_option("viewer")

    page.wait_for_selector("#team-log-table >> text=dave in Research (viewer)")
    entry = page.locator("#team-log-table tr", has_text="dave in Research (viewer)").first.inner_text()
    assert "alice" in entry and "role=viewer" in entry and "changed" in entry
    assert page.locator("tr[id^=member-]", has_text="dave").locator("select").input_value() == "viewer"


def test_the_screenshots_command_saves_a_picture_of_every_page(stack: Stack, tmp_path: Path):
    result = stack.hub.manage(
        "screenshots", str(tmp_path), "--base-url", stack.hub.base_url, "--username", "alice",
        "--password", PASSWORDS["alice"], "--hub-model", DOWNLOAD_REPO, "--width", "1200",
    )  # fmt: skip

    names = {path.name for path in tmp_path.glob("*.png")}
    expected = {"login", "overview", "models", "discover", "hub-model", "downloads", "playground", "keys", "usage",
                "team", "routing"}  # fmt: skip
    assert names == {f"{name}.png" for name in expected}, result.stdout
    assert all(path.stat().st_size > 10_000 for path in tmp_path.glob("*.png"))
