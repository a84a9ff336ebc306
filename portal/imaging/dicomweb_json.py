"""DICOM JSON (PS3.18 F.2) for DICOMweb: attribute ids, per-level QIDO return attributes, metadata with BulkDataURIs.

Stored instances carry their DICOM JSON without bulk data (``Instance.metadata``,
written at ingest); this module selects from it, adds the computed attributes
(counts, RetrieveURL, ModalitiesInStudy) and points PixelData at the bulk-data
endpoint. Plain functions, no request handling.
"""
from __future__ import annotations

import json
import re

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

_HEX_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")

PIXEL_DATA = "7FE00010"


class AttributeError400(ValueError):
    """A query named an attribute that is neither a DICOM keyword nor an 8-digit tag."""


def attribute_tag(name: str) -> str:
    """'PatientID' or '00100020' -> '00100020'; anything else raises AttributeError400 naming it."""
    name = name.strip()
    if _HEX_TAG.match(name):
        return name.upper()
    tag = tag_for_keyword(name)
    if tag is None:
        raise AttributeError400(f"unknown DICOM attribute {name!r} (use a keyword such as PatientID or a tag such as 00100020)")
    return f"{tag:08X}"


def attribute_vr(tag: str) -> str:
    try:
        return dictionary_VR(int(tag, 16))
    except KeyError:
        return "UN"


def attribute_keyword(tag: str) -> str:
    return keyword_for_tag(int(tag, 16)) or tag


# Return attributes per query level (PS3.18 Tables 10.6.3-3 to 10.6.3-5).
STUDY_TAGS = [
    "00080005", "00080020", "00080030", "00080050", "00080090", "00080201", "00081030",
    "00100010", "00100020", "00100030", "00100040", "0020000D", "00200010",
]
SERIES_TAGS = ["00080060", "0008103E", "0020000E", "00200011", "00200052", "00400244", "00400245", "00400275"]
INSTANCE_TAGS = ["00080016", "00080018", "00200013", "00280008", "00280010", "00280011", "00280100"]


def element(vr: str, *values) -> dict:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


LO_MAX = 64  # characters in one LO (Long String) value, PS3.5 6.2


def lo_text(text: str, limit: int = LO_MAX) -> str:
    """``text`` as one valid LO value: one line, no backslash (the value separator), at most ``limit`` characters.

    Longer text is cut at a word boundary where one is near and marked with "..."; callers that need the
    whole text carry it elsewhere (STOW puts it in the ``Warning`` header).
    """
    text = " ".join(str(text).replace("\\", "/").split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 3]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "..."


def first_value(metadata: dict, tag: str):
    item = metadata.get(tag)
    if not item:
        return None
    values = item.get("Value") or []
    return values[0] if values else None


def select(metadata: dict, tags) -> dict:
    """The listed attributes present in ``metadata`` (missing ones are left out, per QIDO)."""
    return {tag: metadata[tag] for tag in tags if tag in metadata}


def pixel_data_vr(metadata: dict) -> str:
    bits = first_value(metadata, "00280100") or 16
    return "OW" if int(bits) > 8 else "OB"


def with_bulkdata_uri(metadata: dict, instance_url: str, has_pixels: bool) -> dict:
    """Instance metadata as WADO-RS returns it: PixelData as a BulkDataURI that the bulk-data endpoint resolves."""
    if not has_pixels:
        return metadata
    out = dict(metadata)
    out[PIXEL_DATA] = {"vr": pixel_data_vr(metadata), "BulkDataURI": f"{instance_url}/bulkdata/{PIXEL_DATA}"}
    return out


def dumps(data) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def sorted_dataset(attributes: dict) -> dict:
    """DICOM JSON objects list attributes in tag order."""
    return {tag: attributes[tag] for tag in sorted(attributes)}
