"""WADO-RS rendered resources (PS3.18 8.3.5): one frame of a stored grayscale instance as an 8-bit PNG,
windowed with the ``window`` query parameter (``center,width[,linear|linear-exact|sigmoid]``) or the
``windowcenter``/``windowwidth`` pair, defaulting to the instance's own VOI window or its value range."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from portal.imaging.dicomweb_json import first_value


class RenderError(ValueError):
    """Bad rendering parameter or an instance that cannot be rendered (message names the problem)."""


def parse_window(params, metadata: dict) -> tuple[float | None, float | None, str]:
    center = width = None
    function = "linear"
    if params.get("window"):
        pieces = params.get("window").split(",")
        if len(pieces) not in (2, 3):
            raise RenderError("window must be 'center,width' or 'center,width,function'")
        center, width = _number("window center", pieces[0]), _number("window width", pieces[1])
        if len(pieces) == 3:
            function = pieces[2].strip().lower()
            if function not in ("linear", "linear-exact", "sigmoid"):
                raise RenderError(f"window function {pieces[2]!r} is not linear, linear-exact or sigmoid")
    elif params.get("windowcenter") is not None or params.get("windowwidth") is not None:
        if params.get("windowcenter") is None or params.get("windowwidth") is None:
            raise RenderError("windowcenter and windowwidth must be given together")
        center, width = _number("windowcenter", params.get("windowcenter")), _number("windowwidth", params.get("windowwidth"))
    else:
        center, width = first_value(metadata, "00281050"), first_value(metadata, "00281051")
        center = float(center) if center is not None else None
        width = float(width) if width is not None else None
    if width is not None and width <= 0:
        raise RenderError("window width must be positive")
    return center, width, function


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise RenderError(f"{name} must be a number, got {text!r}") from None
    if not np.isfinite(value):
        raise RenderError(f"{name} must be finite")
    return value


def frame_array(frame: bytes, metadata: dict) -> np.ndarray:
    """Modality values (rescale applied) of one uncompressed grayscale frame."""
    rows, cols = int(first_value(metadata, "00280010")), int(first_value(metadata, "00280011"))
    samples = int(first_value(metadata, "00280002") or 1)
    if samples != 1:
        raise RenderError("only single-sample (grayscale) images can be rendered")
    bits = int(first_value(metadata, "00280100") or 16)
    signed = int(first_value(metadata, "00280103") or 0) == 1
    dtype = {8: np.int8 if signed else np.uint8, 16: np.int16 if signed else np.uint16, 32: np.int32 if signed else np.uint32}.get(bits)
    if dtype is None:
        raise RenderError(f"BitsAllocated {bits} cannot be rendered")
    pixels = np.frombuffer(frame, dtype=np.dtype(dtype).newbyteorder("<"), count=rows * cols).reshape(rows, cols)
    slope = float(first_value(metadata, "00281053") or 1.0)
    intercept = float(first_value(metadata, "00281052") or 0.0)
    return pixels.astype(np.float32) * slope + intercept


def window_to_uint8(values: np.ndarray, center, width, function: str = "linear", invert: bool = False) -> np.ndarray:
    if center is None or width is None:
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    elif function == "linear-exact":
        scaled = (values - (center - width / 2)) / width
    elif function == "sigmoid":
        scaled = 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    else:  # PS3.3 C.11.2.1.2.1 linear
        scaled = (values - (center - 0.5)) / (width - 1) + 0.5 if width > 1 else (values >= center).astype(np.float32)
    out = np.clip(scaled, 0.0, 1.0) * 255.0
    if invert:
        out = 255.0 - out
    return np.rint(out).astype(np.uint8)


def render_png(frame: bytes, metadata: dict, params) -> bytes:
    center, width, function = parse_window(params, metadata)
    values = frame_array(frame, metadata)
    invert = str(first_value(metadata, "00280004") or "").upper() == "MONOCHROME1"
    image = Image.fromarray(window_to_uint8(values, center, width, function, invert), mode="L")
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
