"""multipart/related for DICOMweb (PS3.18 8.6): the part framing of WADO-RS responses, STOW-RS request parsing,
and Accept negotiation. Byte-level helpers shared by the Django views and the raw-ASGI fast path."""
from __future__ import annotations

import mmap
import re
import secrets
from dataclasses import dataclass

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"


def new_boundary() -> str:
    # 128 random bits as 32 hex digits (as uuid4().hex gave, without building a UUID on every frame request).
    return secrets.token_hex(16)


def content_type(part_type: str, boundary: str, transfer_syntax: str | None = None) -> str:
    extra = f"; transfer-syntax={transfer_syntax}" if transfer_syntax else ""
    return f'multipart/related; type="{part_type}"; boundary={boundary}{extra}'


def part_header(boundary: str, part_type: str, first: bool, location: str | None = None) -> bytes:
    """The delimiter and headers that precede one part's bytes."""
    lines = ("" if first else "\r\n") + f"--{boundary}\r\nContent-Type: {part_type}\r\n"
    if location:
        lines += f"Content-Location: {location}\r\n"
    return (lines + "\r\n").encode()


def closing(boundary: str) -> bytes:
    return f"\r\n--{boundary}--\r\n".encode()


def octet_part_type(transfer_syntax: str = EXPLICIT_VR_LE) -> str:
    return f"application/octet-stream; transfer-syntax={transfer_syntax}"


# ---------------------------------------------------------------- Accept negotiation


@dataclass
class MediaRange:
    type: str
    params: dict


def parse_accept(header: str | None) -> list[MediaRange]:
    if not header or not header.strip():
        return [MediaRange("*/*", {})]
    out = []
    # Commas separate media ranges, but a quoted parameter (type="...") never contains one in practice.
    for item in header.split(","):
        pieces = [p.strip() for p in item.split(";")]
        if not pieces[0]:
            continue
        params = {}
        for p in pieces[1:]:
            name, _, value = p.partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        out.append(MediaRange(pieces[0].lower(), params))
    return out or [MediaRange("*/*", {})]


def _syntax_ok(params: dict, offered: tuple[str, ...]) -> bool:
    syntax = params.get("transfer-syntax")
    return syntax in (None, "", "*") or syntax in offered


def accepts_multipart(accept: str | None, part_type: str, offered_syntaxes: tuple[str, ...] = (EXPLICIT_VR_LE,)) -> bool:
    """Whether the client accepts multipart/related parts of ``part_type`` in one of ``offered_syntaxes``.

    Like most origin servers, a bare ``type`` parameter matching is enough; an
    explicitly requested transfer syntax other than the ones offered is refused
    (406) because frames are only served uncompressed.
    """
    for media in parse_accept(accept):
        if media.type in ("*/*", "multipart/*") and "type" not in media.params:
            return True
        if media.type == "multipart/related":
            wanted = media.params.get("type", part_type).lower()
            if wanted in (part_type, "*/*", "*") and _syntax_ok(media.params, offered_syntaxes):
                return True
        # A single-part request for octet-stream / dicom is answered in the multipart form clients expect.
        if media.type == part_type and _syntax_ok(media.params, offered_syntaxes):
            return True
    return False


def accepts(accept: str | None, *types: str) -> bool:
    for media in parse_accept(accept):
        if media.type in ("*/*",) or media.type in types:
            return True
        if media.type.endswith("/*") and any(t.startswith(media.type[:-1]) for t in types):
            return True
    return False


# ---------------------------------------------------------------- STOW-RS request parsing


class MultipartError(ValueError):
    pass


@dataclass
class Part:
    headers: dict
    start: int
    end: int  # byte range in the body buffer

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


def request_boundary(content_type_header: str) -> tuple[str, str]:
    """(boundary, type parameter) of a multipart/related Content-Type; MultipartError if it is not one."""
    media, *params = [p.strip() for p in (content_type_header or "").split(";")]
    if media.lower() != "multipart/related":
        raise MultipartError(f"Content-Type must be multipart/related; type=\"application/dicom\", got {media or 'none'!r}")
    values = {}
    for p in params:
        name, _, value = p.partition("=")
        values[name.strip().lower()] = value.strip().strip('"')
    boundary = values.get("boundary")
    if not boundary:
        raise MultipartError("the multipart/related Content-Type has no boundary parameter")
    return boundary, values.get("type", "").lower()


def split_parts(body: bytes | mmap.mmap, boundary: str) -> list[Part]:
    """Part byte ranges of a multipart body (RFC 2046), without copying the parts."""
    marker = b"--" + boundary.encode()
    pos = body.find(marker)
    if pos < 0:
        raise MultipartError("the multipart body does not contain its boundary")
    parts = []
    while True:
        pos += len(marker)
        if body[pos:pos + 2] == b"--":
            break  # closing delimiter
        line_end = body.find(b"\r\n", pos)
        if line_end < 0:
            raise MultipartError("truncated multipart body")
        header_end = body.find(b"\r\n\r\n", line_end)
        if header_end == line_end:  # no headers at all
            headers_raw = b""
        elif header_end < 0:
            raise MultipartError("a multipart part has no end of headers")
        else:
            headers_raw = body[line_end + 2:header_end]
        headers = {}
        for line in bytes(headers_raw).decode("latin-1").split("\r\n"):
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        start = header_end + 4
        nxt = body.find(b"\r\n" + marker, start)
        if nxt < 0:
            raise MultipartError("the multipart body has no closing boundary")
        parts.append(Part(headers=headers, start=start, end=nxt))
        pos = nxt + 2
    return parts


_FRAME_LIST = re.compile(r"^[0-9]+(,[0-9]+)*$")


def parse_frame_list(text: str) -> list[int]:
    """'1,3' -> [1, 3]; ValueError naming the problem for anything else (frame numbers start at 1)."""
    if not _FRAME_LIST.match(text or ""):
        raise ValueError(f"frame list {text!r} must be comma-separated frame numbers such as 1 or 1,2,3")
    numbers = [int(t) for t in text.split(",")]
    if any(n < 1 for n in numbers):
        raise ValueError("frame numbers start at 1")
    if len(numbers) > 10000:
        raise ValueError("too many frames requested at once")
    return numbers
