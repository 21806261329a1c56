"""Pixel buffers: 8-bit BGRA bytes ↔ QImage, masks, alpha checks.

Every buffer here is 8-bit sRGB BGRA (4 bytes/pixel): Krita converts other colour models and
depths itself (see colour_io.py), so the plugin never widens or narrows samples. On little-endian machines ``QImage.Format.Format_ARGB32`` has exactly the 8-bit
layout (straight alpha), so conversions are copies, not per-pixel Python loops. The results are
byte-for-byte the same under PyQt5 and PyQt6 (tests/plugin/test_plugin_qt_binding.py).
"""

from __future__ import annotations

from .qt import QBuffer, QByteArray, QImage, QIODevice, QPainter, QRect


class PixelError(ValueError):
    """A buffer whose size does not match the width and height given with it."""


def _check_size(data: bytes, width: int, height: int, bytes_per_pixel: int) -> None:
    if width <= 0 or height <= 0:
        raise PixelError(f"size must be positive, got {width}x{height}")
    expected = width * height * bytes_per_pixel
    if len(data) != expected:
        raise PixelError(
            f"buffer has {len(data)} bytes, expected {expected} for {width}x{height}"
            f" at {bytes_per_pixel} bytes/pixel"
        )


def _image_bytes(image: QImage, bytes_per_pixel: int) -> bytes:
    """Tightly packed rows of an image (drops any row padding)."""
    row = image.width() * bytes_per_pixel
    stride = image.bytesPerLine()
    ptr = image.constBits()
    if ptr is None:
        raise PixelError("image has no pixel data")
    data = ptr.asstring(image.sizeInBytes())
    if stride == row:
        return data
    return b"".join(data[y * stride : y * stride + row] for y in range(image.height()))


def bgra_to_qimage(data: bytes, width: int, height: int) -> QImage:
    """8-bit BGRA bytes → an ARGB32 QImage that owns its memory."""
    _check_size(data, width, height, 4)
    return QImage(data, width, height, width * 4, QImage.Format.Format_ARGB32).copy()


def qimage_to_bgra(image: QImage) -> bytes:
    """Any QImage → 8-bit BGRA bytes, straight alpha."""
    if image.isNull():
        raise PixelError("image is empty (could not be decoded?)")
    if image.format() != QImage.Format.Format_ARGB32:
        image = image.convertToFormat(QImage.Format.Format_ARGB32)
    return _image_bytes(image, 4)


def apply_mask(data: bytes, mask: bytes, width: int, height: int) -> bytes:
    """Multiply alpha by an 8-bit mask (255 keeps, 0 clears): transparent outside a selection.

    Alpha becomes ``(alpha * mask + 127) // 255``; the colour bytes are untouched."""
    _check_size(mask, width, height, 1)
    image = bgra_to_qimage(data, width, height)
    alpha = QImage(mask, width, height, width, QImage.Format.Format_Alpha8).copy()
    painter = QPainter(image)
    painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_DestinationIn)
    painter.drawImage(0, 0, alpha)
    painter.end()
    # Painting goes through premultiplied alpha, which rounds the colour of nearly transparent
    # pixels; keep the colour bytes as they were and take only the (exact) alpha from Qt.
    out = bytearray(data)
    out[3::4] = qimage_to_bgra(image)[3::4]
    return bytes(out)


def crop_gray(mask: bytes, width: int, height: int, rect: QRect) -> bytes:
    """Cut a window out of an 8-bit mask; parts outside the mask read as 0."""
    _check_size(mask, width, height, 1)
    image = QImage(mask, width, height, width, QImage.Format.Format_Grayscale8).copy(rect)
    return _image_bytes(image, 1)


def alpha_channel(data: bytes) -> bytes:
    return data[3::4]


def is_fully_transparent(data: bytes) -> bool:
    alpha = alpha_channel(data)
    return alpha.count(0) == len(alpha)


_ZERO_TO_ONE = bytes([1] + [0] * 255)
_NONZERO_TO_ONE = bytes([0] + [1] * 255)


def transparent_under_mask(data: bytes, mask: bytes) -> bool:
    """True when any selected pixel (mask > 0) is fully transparent (alpha == 0)."""
    alpha = alpha_channel(data)
    if len(alpha) != len(mask):
        raise PixelError(f"image has {len(alpha)} pixels, mask has {len(mask)}")
    clear = int.from_bytes(alpha.translate(_ZERO_TO_ONE), "little")
    selected = int.from_bytes(mask.translate(_NONZERO_TO_ONE), "little")
    return (clear & selected) != 0


def encode_png(image: QImage) -> bytes:
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise PixelError("PNG encoding failed")
    buffer.close()
    return bytes(data.data())


def decode_image(data: bytes) -> QImage:
    image = QImage()
    if not image.loadFromData(data):
        raise PixelError(f"could not decode an image from {len(data)} bytes")
    return image
