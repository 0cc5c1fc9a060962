"""Image loading for vision requests: data: URLs, and http(s) fetches from a local server, guarded."""

from __future__ import annotations

import base64
import io
import ipaddress
import re
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from inference.engine.pictures import decode_rgb
from inference.images import ImageError, load_image, probe_image, refusal_reason

MAX_BYTES = 64 * 1024


def png_bytes(size: tuple[int, int] = (20, 10), color: tuple[int, ...] = (0, 128, 255), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


# ---- the local image server ---------------------------------------------------------------------------


class ImageServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ImageHandler)
        self.release = threading.Event()  # set at teardown: handlers that hang give up
        self.hosts: list[str] = []  # the Host header of every request, in order

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class ImageHandler(BaseHTTPRequestHandler):
    server: ImageServer

    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass

    def send(self, status: int, body: bytes = b"", content_type: str | None = None, **headers: str) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.hosts.append(self.headers.get("Host", ""))
        path, _, query = self.path.partition("?")
        if path == "/image.png":
            self.send(200, png_bytes(), "image/png", Content_Length=str(len(png_bytes())))
        elif path == "/untyped":
            self.send(200, png_bytes(), "application/octet-stream")
        elif path == "/page.html":
            self.send(200, b"<html><body>not an image</body></html>", "text/html; charset=utf-8")
        elif path == "/drawing.svg":
            self.send(200, b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml")
        elif path == "/gzipped.png":
            self.send(200, b"\x1f\x8b compressed", "image/png", Content_Encoding="gzip")
        elif path == "/declared-too-big.png":
            self.send(200, b"", "image/png", Content_Length=str(MAX_BYTES + 1))
        elif path == "/endless.png":
            self.send(200, b"", "image/png")  # no Content-Length: the body runs until the server stops
            for _ in range(100):
                self.wfile.write(b"\0" * 8192)
        elif path == "/hang":
            self.server.release.wait(10)
        elif path == "/trickle.png":
            self.send(200, b"", "image/png")
            for _ in range(50):
                if self.server.release.wait(0.1):
                    return
                self.wfile.write(b"\0" * 16)
                self.wfile.flush()
        elif path == "/redirect":
            self.send(302, Location=query)
        elif path.startswith("/loop/"):
            hops = int(path.rsplit("/", 1)[1])
            self.send(302, Location=f"/loop/{hops + 1}" if hops < 10 else "/image.png")
        elif path == "/missing":
            self.send(404, b"not found", "text/plain")
        else:
            self.send(500)


@pytest.fixture(scope="module")
def server() -> Iterator[ImageServer]:
    image_server = ImageServer()
    thread = threading.Thread(target=image_server.serve_forever, daemon=True)
    thread.start()
    yield image_server
    image_server.release.set()
    image_server.shutdown()
    image_server.server_close()


def only(address: str):
    """An address guard that lets ``address`` through and applies the default policy to the rest."""

    def guard(candidate: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        return None if str(candidate) == address else refusal_reason(candidate)

    return guard


def raises(message: str):
    """Expect an ImageError whose message contains ``message`` (literally)."""
    return pytest.raises(ImageError, match=re.escape(message))


async def fetch(url: str, **options):
    options.setdefault("max_bytes", MAX_BYTES)
    options.setdefault("timeout", 5.0)
    return await load_image(url, **options)


# ---- data: URLs ---------------------------------------------------------------------------------------


async def test_a_png_data_url_is_checked_and_its_bytes_decode_as_an_rgb_image_in_the_engine():
    image = await fetch(data_url(png_bytes((20, 10))))
    assert (image.format, image.size, image.pixels) == ("PNG", (20, 10), 200)
    decoded = decode_rgb(image.data)
    assert decoded.mode == "RGB"
    assert decoded.size == (20, 10)
    assert decoded.getpixel((0, 0)) == (0, 128, 255)


async def test_jpeg_webp_and_gif_data_urls_load_too():
    for image_format, media_type in (("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("GIF", "image/gif")):
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (255, 0, 0)).save(buffer, format=image_format)
        assert (await fetch(data_url(buffer.getvalue(), media_type))).size == (8, 8)


async def test_transparent_pixels_become_white():
    image = await fetch(data_url(png_bytes(mode="RGBA", color=(0, 0, 0, 0))))
    assert decode_rgb(image.data).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("data:image/png;base64,iVBORw0KGgo$$$notbase64", "not valid base64"),
        ("data:image/png;base64", "needs a comma"),
        ("data:image/png," + "x" * 10, "must be base64-encoded"),
        (
            "data:image/svg+xml;base64," + base64.b64encode(b"<svg/>").decode(),
            "Unsupported image type 'image/svg+xml'",
        ),
        ("data:text/html;base64," + base64.b64encode(b"<p>hi</p>").decode(), "Unsupported image type 'text/html'"),
        ("data:image/png;base64,", "empty"),
    ],
)
async def test_a_malformed_or_unsupported_data_url_is_refused(url, message):
    with raises(message):
        await fetch(url)


async def test_bytes_that_are_not_an_accepted_format_are_refused_whatever_the_declared_type():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="BMP")
    with raises("not a PNG, JPEG, WEBP or GIF"):
        await fetch(data_url(buffer.getvalue()))
    with raises("not a PNG, JPEG, WEBP or GIF"):
        await fetch(data_url(b"<svg xmlns='http://www.w3.org/2000/svg'/>"))


async def test_a_truncated_image_is_refused():
    with raises("could not be decoded"):
        await fetch(data_url(png_bytes((64, 64))[:-30]))


async def test_an_oversize_data_url_is_refused():
    data = png_bytes((200, 200), color=(1, 2, 3))
    with raises("larger than the 100 bytes allowed"):
        await fetch(data_url(data), max_bytes=100)
    # Far over the limit: refused from the encoded length, before decoding.
    with raises("larger than"):
        await fetch("data:image/png;base64," + "A" * 1_000_000, max_bytes=1000)


def test_an_image_with_too_many_pixels_is_refused_before_it_is_decoded():
    with raises("2000 x 2000 pixels"):
        probe_image(png_bytes((2000, 2000), mode="1", color=1), max_pixels=1_000_000)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://example.com/", "/a.png"])
async def test_other_schemes_are_refused(url):
    with raises("http"):
        await fetch(url)


# ---- the address guard --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("172.16.5.4", "private"),
        ("169.254.169.254", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "address"),
        ("100.64.0.1", "not a public address"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "127.0.0.1 is a loopback address (inside ::ffff:7f00:1)"),
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::a9fe:a9fe", "169.254.169.254 is a link-local address"),
        ("2002:a00:1::", "10.0.0.1 is a private address"),
        ("fec0::1", "site-local"),
        ("2001:db8::1", "private"),  # documentation range
    ],
)
def test_non_public_addresses_are_refused(address, kind):
    reason = refusal_reason(ipaddress.ip_address(address))
    assert reason is not None
    assert kind in reason


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::"]
)
def test_public_addresses_pass(address):
    assert refusal_reason(ipaddress.ip_address(address)) is None


# ---- http(s) fetches ----------------------------------------------------------------------------------


async def test_it_fetches_an_image_from_a_local_server_when_private_addresses_are_allowed(server):
    image = await fetch(f"{server.base_url}/image.png", allow_private=True)
    assert image.size == (20, 10)


async def test_a_local_server_is_refused_as_loopback_by_default(server):
    with raises("127.0.0.1 is a loopback address"):
        await fetch(f"{server.base_url}/image.png")


async def test_a_host_nothing_listens_on_is_reported_as_such(server):
    with raises("Could not connect to the image host '127.0.0.1'"):
        await fetch("http://127.0.0.1:9/image.png", allow_private=True)  # the discard port: closed here


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://localhost:{port}/image.png", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://[::ffff:127.0.0.1]:{port}/image.png", "127.0.0.1 is a loopback address"),
        ("http://[::1]:{port}/image.png", "loopback"),
        ("http://2130706433:{port}/image.png", "127.0.0.1 is a loopback address"),  # 127.0.0.1 as a number
        ("http://0:{port}/image.png", "address"),
    ],
)
async def test_private_hosts_are_refused_before_any_connection(server, url, message):
    with raises(message):
        await fetch(url.format(port=server.server_address[1]))


async def test_a_name_is_refused_when_any_of_its_addresses_is_private():
    async def resolver(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.0.0.7"]

    with raises("10.0.0.7 is a private address"):
        await fetch("https://images.example/cat.png", resolver=resolver)


async def test_it_connects_to_the_checked_address_and_sends_the_original_host(server):
    port = server.server_address[1]
    lookups = []

    async def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    image = await fetch(f"http://images.example:{port}/image.png", resolver=resolver, address_guard=only("127.0.0.1"))
    assert image.size == (20, 10)
    assert lookups == ["images.example"]  # resolved once, then connected to the address it gave
    assert server.hosts[-1] == f"images.example:{port}"


async def test_redirects_are_followed_and_every_hop_is_checked(server):
    port = server.server_address[1]
    image = await fetch(f"{server.base_url}/redirect?/image.png", allow_private=True)
    assert image.size == (20, 10)
    # 127.0.0.1 may be fetched from here; the redirect's target may not.
    for target, message in (
        (f"http://127.0.0.2:{port}/image.png", "127.0.0.2 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        (f"http://[::ffff:127.0.0.1]:{port}/image.png", "loopback"),
    ):
        with raises(message):
            await fetch(f"{server.base_url}/redirect?{target}", address_guard=only("127.0.0.1"))


async def test_more_than_three_redirects_are_refused(server):
    image = await fetch(f"{server.base_url}/loop/8", allow_private=True)  # 2 redirects, then the image
    assert image.size == (20, 10)
    with raises("redirected more than 3 times"):
        await fetch(f"{server.base_url}/loop/0", allow_private=True)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/page.html", "Unsupported image type 'text/html'"),
        ("/drawing.svg", "Unsupported image type 'image/svg+xml'"),
        ("/gzipped.png", "'gzip'-encoded"),
        ("/missing", "HTTP 404"),
    ],
)
async def test_responses_that_are_not_an_image_are_refused(server, path, message):
    with raises(message):
        await fetch(f"{server.base_url}{path}", allow_private=True)


async def test_an_untyped_response_is_judged_by_its_bytes(server):
    assert (await fetch(f"{server.base_url}/untyped", allow_private=True)).size == (20, 10)


@pytest.mark.parametrize("path", ["/declared-too-big.png", "/endless.png"])
async def test_a_body_larger_than_max_bytes_is_refused(server, path):
    with raises(f"larger than the {MAX_BYTES} bytes allowed"):
        await fetch(f"{server.base_url}{path}", allow_private=True)


async def test_a_server_that_hangs_times_out(server):
    started = time.monotonic()
    with raises("timed out after 0.5 seconds"):
        await fetch(f"{server.base_url}/hang", allow_private=True, timeout=0.5)
    assert time.monotonic() - started < 3


async def test_the_timeout_bounds_the_whole_download_not_each_read(server):
    started = time.monotonic()
    with raises("timed out after 0.8 seconds"):
        await fetch(f"{server.base_url}/trickle.png", allow_private=True, timeout=0.8)
    assert time.monotonic() - started < 3


# ---- https: connect to the checked address, verify the certificate against the name -------------------


def self_signed(name: str) -> tuple[bytes, bytes]:
    """A certificate for ``name`` signed by its own key, and that key (both PEM)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ImageServer, bytes, list[str]]]:
    """The image server over TLS with a certificate for images.example; records the SNI names it sees."""
    certificate, key = self_signed("images.example")
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(certificate)
    (folder / "key.pem").write_bytes(key)
    server_names: list[str] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    context.sni_callback = lambda _socket, name, _context: server_names.append(name or "")
    image_server = ImageServer()
    image_server.socket = context.wrap_socket(image_server.socket, server_side=True)
    thread = threading.Thread(target=image_server.serve_forever, daemon=True)
    thread.start()
    yield image_server, certificate, server_names
    image_server.release.set()
    image_server.shutdown()
    image_server.server_close()


async def resolve_to_loopback(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


async def test_https_connects_to_the_checked_address_with_the_names_sni_and_certificate(tls_server):
    server, certificate, server_names = tls_server
    trusted = ssl.create_default_context(cadata=certificate.decode())
    port = server.server_address[1]
    image = await fetch(
        f"https://images.example:{port}/image.png",
        resolver=resolve_to_loopback,
        address_guard=only("127.0.0.1"),
        ssl_context=trusted,
    )
    assert image.size == (20, 10)
    assert server_names[-1] == "images.example"
    assert server.hosts[-1] == f"images.example:{port}"


async def test_https_refuses_a_certificate_for_another_name(tls_server):
    server, certificate, _ = tls_server
    trusted = ssl.create_default_context(cadata=certificate.decode())
    with raises("The TLS certificate of the image host 'elsewhere.example' could not be verified"):
        await fetch(
            f"https://elsewhere.example:{server.server_address[1]}/image.png",
            resolver=resolve_to_loopback,
            address_guard=only("127.0.0.1"),
            ssl_context=trusted,
        )
