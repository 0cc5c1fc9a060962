"""Encoded images (as they cross from the web side) decoded for a vision model, on the engine thread."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from inference.engine.types import EngineError

if TYPE_CHECKING:
    from PIL import Image


def decode_rgb(data: bytes, *, param: str = "messages") -> Image.Image:
    """The image as RGB; the web side has already checked its format and its size in pixels."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        image: Image.Image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise EngineError(
            f"The image could not be decoded: {error}", status=400, code="invalid_image", param=param
        ) from None
    image = ImageOps.exif_transpose(image) or image  # photos stored sideways with an orientation tag
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become white, not whatever color they happen to store.
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")
