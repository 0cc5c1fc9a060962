"""Load the images of a chat request: ``data:`` URLs and http(s) URLs, checked before use.

The web side fetches and checks an image (its format and its size in pixels, read from
its header: nothing is decoded here); the encoded bytes go to the engine, which decodes
them (``inference.engine.pictures``).

Every refusal is an ``ImageError`` whose message can be shown to the API client
as a 400. Remote fetches guard against server-side request forgery: the host is
resolved once, every address it resolves to must be public, and the connection
goes to that checked address (with the original Host header and TLS server
name), so a DNS answer that changes between the check and the connect
(rebinding) cannot reach a private address. Redirects are followed by hand,
each hop checked the same way.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Returns why an address is refused, or None when it may be fetched from.
AddressGuard = Callable[[IPAddress], str | None]
Resolver = Callable[[str, int], Awaitable[list[str]]]

# Pillow format name -> the media type a data URL or a server may declare for it.
FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
ACCEPTED_MEDIA_TYPES = {*FORMATS.values(), "image/jpg"}
# Servers that do not know better label images as these; Pillow decides what the bytes are.
UNTYPED_MEDIA_TYPES = {"application/octet-stream", "binary/octet-stream"}
MAX_REDIRECTS = 3
# Of the addresses a name resolves to (all of them checked), how many to try connecting to.
MAX_ADDRESSES_TRIED = 4
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
# About 40 megapixels: decoding allocates width x height x 4 bytes whatever the file size.
DEFAULT_MAX_PIXELS = 40_000_000
USER_AGENT = "MLX-Hub image fetcher"
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True)
class FetchedImage:
    """An image file checked to be a whole PNG, JPEG, WEBP or GIF of at most the allowed pixels."""

    data: bytes
    format: str
    size: tuple[int, int]  # width, height

    @property
    def pixels(self) -> int:
        return self.size[0] * self.size[1]


class ImageError(ValueError):
    """An image the request cannot use; the message is written for the API client."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param  # the request field it came from, set by the caller


async def load_image(
    url: str,
    *,
    max_bytes: int,
    timeout: float,
    allow_private: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    address_guard: AddressGuard | None = None,
    resolver: Resolver | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> FetchedImage:
    """Fetch or decode the image at ``url`` and check it (format, whole file, size in pixels).

    ``max_bytes`` caps the encoded image (decoded base64, or the HTTP body);
    ``timeout`` caps the whole fetch (DNS, connect, redirects, body) in seconds.
    ``allow_private`` turns off the address guard only (for local deployments and
    tests); ``address_guard``, ``resolver`` and ``ssl_context`` replace the default
    address policy, DNS lookup and TLS verification (certifi's CA bundle).
    """
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "data":
        data = _decode_data_url(url, max_bytes=max_bytes)
    elif scheme in ("http", "https"):
        guard = None if allow_private else (address_guard or refusal_reason)
        try:
            async with asyncio.timeout(timeout):
                data = await _fetch(
                    url, max_bytes=max_bytes, timeout=timeout, guard=guard, resolver=resolver, ssl_context=ssl_context
                )
        except TimeoutError:
            raise ImageError(f"Fetching the image timed out after {timeout:g} seconds.") from None
    else:
        raise ImageError("Image URLs must be http(s) URLs or base64 data: URLs.")
    # Verifying a large file takes a while; keep it off the event loop.
    return await asyncio.to_thread(probe_image, data, max_pixels=max_pixels)


def _decode_data_url(url: str, *, max_bytes: int) -> bytes:
    header, separator, payload = url[len("data:") :].partition(",")
    if not separator:
        raise ImageError("A data: URL needs a comma between its media type and its data.")
    media_type, *parameters = (part.strip().lower() for part in header.split(";"))
    if media_type not in ACCEPTED_MEDIA_TYPES:
        raise ImageError(f"Unsupported image type {media_type or 'none'!r}; use PNG, JPEG, WEBP or GIF.")
    if "base64" not in parameters:
        raise ImageError("Image data: URLs must be base64-encoded (data:image/png;base64,...).")
    encoded = unquote_to_bytes(payload) if "%" in payload else payload.encode("ascii", errors="replace")
    encoded = b"".join(encoded.split())  # line breaks some encoders insert
    # Refuse before decoding: 4 base64 characters carry 3 bytes.
    if len(encoded) // 4 * 3 > max_bytes + 3:
        raise ImageError(f"The image is larger than the {max_bytes} bytes allowed.")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("The image data: URL is not valid base64.") from None
    if len(data) > max_bytes:
        raise ImageError(f"The image is larger than the {max_bytes} bytes allowed.")
    if not data:
        raise ImageError("The image data: URL is empty.")
    return data


def probe_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> FetchedImage:
    """Check that ``data`` is a whole PNG, JPEG, WEBP or GIF image of at most ``max_pixels``, without
    decoding its pixels (Pillow reads the header and verifies the file's structure)."""
    from PIL import Image, UnidentifiedImageError

    formats = list(FORMATS)
    try:
        with Image.open(io.BytesIO(data), formats=formats) as probe:
            image_format = probe.format or formats[0]
            width, height = probe.size
            probe.verify()
    except UnidentifiedImageError:
        raise ImageError("The image is not a PNG, JPEG, WEBP or GIF image.") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageError(f"The image could not be decoded: {error}") from None
    if width * height > max_pixels:
        raise ImageError(f"The image is {width} x {height} pixels; at most {max_pixels} pixels are allowed.")
    return FetchedImage(data=data, format=image_format, size=(width, height))


def refusal_reason(address: IPAddress) -> str | None:
    """Why a server must not fetch from ``address`` (None when it is a public address).

    IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4, Teredo) are judged by it.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            # ::ffff:a.b.c.d is a.b.c.d itself: the connection goes out over IPv4.
            reason = refusal_reason(address.ipv4_mapped)
            return f"{reason} (inside {address})" if reason else None
        embedded = address.sixtofour
        if embedded is None and address in NAT64_PREFIX:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        reason = refusal_reason(embedded) if embedded is not None else None
        if reason:
            return f"{reason} (inside {address})"
    checks = (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_site_local", "site-local"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    )
    for attribute, kind in checks:
        if getattr(address, attribute, False):  # IPv4 addresses have no is_site_local
            return f"{address} is a {kind} address"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        # AI_ADDRCONFIG: no IPv6 answers on a host without IPv6, which could not connect to them.
        answers = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG)
    except socket.gaierror:
        raise ImageError(f"The image host {host!r} could not be resolved.") from None
    return list(dict.fromkeys(str(answer[4][0]) for answer in answers))


async def checked_addresses(
    host: str, port: int, *, guard: AddressGuard | None, resolver: Resolver | None
) -> list[str]:
    """The addresses to connect to for ``host``; every address it resolves to must pass ``guard``."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    addresses = [str(literal)] if literal is not None else await (resolver or system_resolver)(host, port)
    if not addresses:
        raise ImageError(f"The image host {host!r} could not be resolved.")
    if guard is not None:
        for address in addresses:
            # A scope id (fe80::1%eth0) is not part of the address itself.
            reason = guard(ipaddress.ip_address(address.split("%", 1)[0]))
            if reason:
                raise ImageError(f"Refused to fetch the image from {host!r}: {reason}.")
    return addresses[:MAX_ADDRESSES_TRIED]


async def _fetch(
    url: str,
    *,
    max_bytes: int,
    timeout: float,
    guard: AddressGuard | None,
    resolver: Resolver | None,
    ssl_context: ssl.SSLContext | None,
) -> bytes:
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL:
        raise ImageError("The image URL is not a valid URL.") from None
    for _ in range(MAX_REDIRECTS + 1):
        if target.scheme not in ("http", "https") or not target.host:
            raise ImageError("Image URLs must be http(s) URLs with a host.")
        if target.userinfo:
            raise ImageError("Image URLs must not carry a user name or password.")
        port = target.port or (443 if target.scheme == "https" else 80)
        addresses = await checked_addresses(target.raw_host.decode("ascii"), port, guard=guard, resolver=resolver)
        outcome: bytes | httpx.URL | None = None
        failure = ""
        for address in addresses:
            try:
                outcome = await _get(target, address, max_bytes=max_bytes, timeout=timeout, ssl_context=ssl_context)
                break
            except httpx.ConnectError as error:
                failure = str(error)  # then the next address the name resolved to, if any
        if outcome is None:
            if "certificate" in failure.lower():
                raise ImageError(f"The TLS certificate of the image host {target.host!r} could not be verified.")
            raise ImageError(f"Could not connect to the image host {target.host!r}.")
        if isinstance(outcome, bytes):
            return outcome
        target = outcome
    raise ImageError(f"The image URL redirected more than {MAX_REDIRECTS} times.")


async def _get(
    target: httpx.URL, address: str, *, max_bytes: int, timeout: float, ssl_context: ssl.SSLContext | None
) -> bytes | httpx.URL:
    """GET ``target`` from the checked ``address``: the body, or where a redirect points."""
    host = target.raw_host.decode("ascii")
    # Connect to the checked address, not the name: the Host header and the TLS
    # server name (SNI, certificate check) still carry the name.
    extensions = {"sni_hostname": host} if target.scheme == "https" else {}
    headers = {
        "Host": target.netloc.decode("ascii"),
        "User-Agent": USER_AGENT,
        "Accept": ", ".join(FORMATS.values()),
        "Accept-Encoding": "identity",
    }
    # A client per request: no connection is reused for another host. trust_env=False:
    # a proxy from the environment would connect on our behalf to unchecked addresses.
    verify: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False, verify=verify) as client:
        try:
            request = client.build_request(
                "GET", target.copy_with(host=address), headers=headers, extensions=extensions
            )
            response = await client.send(request, stream=True)
            try:
                if response.status_code in REDIRECT_STATUSES and "location" in response.headers:
                    return target.join(response.headers["location"])
                return await _read_body(response, max_bytes=max_bytes)
            finally:
                await response.aclose()
        except httpx.ConnectError:
            raise
        except httpx.TimeoutException:
            raise TimeoutError from None
        except httpx.HTTPError as error:
            raise ImageError(f"Fetching the image failed: {type(error).__name__}.") from None


async def _read_body(response: httpx.Response, *, max_bytes: int) -> bytes:
    if response.status_code != 200:
        raise ImageError(f"Fetching the image failed: the server answered HTTP {response.status_code}.")
    media_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type and media_type not in ACCEPTED_MEDIA_TYPES | UNTYPED_MEDIA_TYPES:
        raise ImageError(f"Unsupported image type {media_type!r}; use PNG, JPEG, WEBP or GIF.")
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ImageError(f"The image server sent a {encoding!r}-encoded body; only plain bodies are accepted.")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ImageError(f"The image is larger than the {max_bytes} bytes allowed.")
    body = bytearray()
    async for chunk in response.aiter_raw():
        body.extend(chunk)
        if len(body) > max_bytes:
            raise ImageError(f"The image is larger than the {max_bytes} bytes allowed.")
    return bytes(body)
