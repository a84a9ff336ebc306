"""Reading and checking uploaded DICOM files one by one (before anything is stored).

Every problem becomes an ``IngestProblem`` naming the file and, where known,
the tag or UID, so the uploader can find it. Series- and reference-level checks
live in ``portal.imaging.ingest``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian

ACCEPTED_MODALITIES = ("CT", "RTSTRUCT")
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
UNCOMPRESSED = {ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian}


@dataclass
class IngestProblem(Exception):
    file: str
    problem: str
    tag: str | None = None
    uid: str | None = None

    def as_dict(self) -> dict:
        out = {"file": self.file, "problem": self.problem}
        if self.tag:
            out["tag"] = self.tag
        if self.uid:
            out["uid"] = self.uid
        return out


@dataclass
class ParsedFile:
    name: str  # as the uploader named it (for messages only, never for paths)
    path: Path
    dataset: Dataset
    sha256: str
    modality: str
    sop_uid: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_dicom(path: Path, name: str) -> Dataset:
    """Parse a whole file; raise IngestProblem for non-DICOM or truncated input."""
    try:
        ds = _dcmread(path)
    except InvalidDicomError:
        # Files without the 128-byte preamble (common in older exports, e.g. the IBSI set) are
        # accepted only when they parse as a dataset that has SOP identity attributes.
        try:
            ds = _dcmread(path, force=True)
        except Exception:
            raise IngestProblem(name, "not a DICOM file (no DICM preamble and not parseable as a dataset)")
        if "SOPInstanceUID" not in ds or "SOPClassUID" not in ds:
            raise IngestProblem(name, "not a DICOM file (no DICM preamble and no SOPClassUID/SOPInstanceUID)")
    except (EOFError, OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise IngestProblem(name, f"unreadable or truncated DICOM file: {exc}")
    try:
        # Touch every element but the pixels so a file cut short inside a value fails here, not later.
        _touch(ds)
    except Exception as exc:
        raise IngestProblem(name, f"unreadable or truncated DICOM file: {exc}")
    return ds


PIXEL_DATA = 0x7FE00010
# Values above this size (in practice PixelData) stay in the file until written to the store, so an upload's
# memory use does not grow with its pixel volume.
DEFER_BYTES = 256 * 1024


def _dcmread(path: Path, force: bool = False) -> Dataset:
    ds = pydicom.dcmread(path, force=force, defer_size=DEFER_BYTES)
    if _transfer_syntax(ds) == DeflatedExplicitVRLittleEndian:  # deferred reads cannot seek into a deflated stream
        ds = pydicom.dcmread(path, force=force)
    return ds


def _touch(ds: Dataset) -> None:
    for tag in list(ds.keys()):
        if tag == PIXEL_DATA:
            continue
        elem = ds[tag]
        if elem.VR == "SQ":
            for item in elem.value or []:
                _touch(item)


def pixel_data_length(ds: Dataset, path: Path) -> int | None:
    """Bytes of PixelData actually present (without loading a deferred value); None when encapsulated."""
    raw = ds.get_item(PIXEL_DATA)
    if getattr(raw, "value", b"") is None and hasattr(raw, "value_tell"):  # deferred RawDataElement
        if raw.length == 0xFFFFFFFF:
            return None
        return max(0, min(int(raw.length), Path(path).stat().st_size - int(raw.value_tell)))
    return len(ds.PixelData)


def _require(ds: Dataset, name: str, keywords) -> None:
    for keyword in keywords:
        if keyword not in ds or ds[keyword].value in (None, ""):
            raise IngestProblem(name, f"required attribute {keyword} is missing or empty", tag=keyword,
                                uid=str(ds.get("SOPInstanceUID", "")) or None)


def _transfer_syntax(ds: Dataset):
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    return uid or ImplicitVRLittleEndian


def check_ct_pixels(ds: Dataset, name: str, path: Path) -> None:
    """Pixel data present, complete, 16-bit greyscale; compressed data decoded to explicit VR little endian."""
    uid = str(ds.SOPInstanceUID)
    if "PixelData" not in ds:
        raise IngestProblem(name, "CT image has no PixelData", tag="PixelData (7FE0,0010)", uid=uid)
    _require(ds, name, ["Rows", "Columns", "BitsAllocated", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"])
    if int(ds.get("SamplesPerPixel", 1)) != 1 or int(ds.BitsAllocated) != 16:
        raise IngestProblem(name, "only 16-bit greyscale CT images are accepted", tag="BitsAllocated", uid=uid)
    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        raise IngestProblem(name, "multi-frame (Enhanced) CT is not accepted; export single-frame CT Image Storage",
                            tag="NumberOfFrames", uid=uid)
    syntax = _transfer_syntax(ds)
    if syntax == ExplicitVRBigEndian:
        raise IngestProblem(name, "Explicit VR Big Endian (retired) is not accepted", tag="TransferSyntaxUID", uid=uid)
    if syntax not in UNCOMPRESSED:
        try:
            ds.decompress(generate_instance_uid=False)  # keep the SOP Instance UID: references must still resolve
        except Exception as exc:
            raise IngestProblem(name, f"compressed pixel data ({syntax.name if hasattr(syntax, 'name') else syntax}) "
                                      f"could not be decoded: {exc}", tag="TransferSyntaxUID", uid=uid)
    expected = int(ds.Rows) * int(ds.Columns) * 2
    present = pixel_data_length(ds, path)
    if present is None:
        raise IngestProblem(name, "PixelData is encapsulated but the transfer syntax says uncompressed",
                            tag="PixelData (7FE0,0010)", uid=uid)
    if present < expected:
        raise IngestProblem(name, f"PixelData is truncated: {present} bytes where {expected} are expected",
                            tag="PixelData (7FE0,0010)", uid=uid)


def parse_upload_file(path: Path, name: str, *, skip_unsupported: bool = False) -> ParsedFile | None:
    """Read and check one file; returns None for an unsupported modality when ``skip_unsupported``."""
    ds = read_dicom(path, name)
    _require(ds, name, ["SOPInstanceUID", "SOPClassUID", "Modality", "StudyInstanceUID", "SeriesInstanceUID"])
    modality = str(ds.Modality).upper()
    uid = str(ds.SOPInstanceUID)
    if modality not in ACCEPTED_MODALITIES:
        if skip_unsupported:
            return None
        raise IngestProblem(name, f"modality {modality} is not accepted (accepted: CT image series and RTSTRUCT; "
                                  "RTPLAN, RTDOSE, MR, PT, SEG and others are rejected)", tag="Modality", uid=uid)
    if modality == "CT":
        if str(ds.SOPClassUID) != CT_IMAGE_STORAGE:
            raise IngestProblem(name, f"CT with SOP class {ds.SOPClassUID} is not accepted (CT Image Storage only)",
                                tag="SOPClassUID", uid=uid)
        _require(ds, name, ["FrameOfReferenceUID"])
        check_ct_pixels(ds, name, path)
    else:
        if str(ds.SOPClassUID) != RT_STRUCTURE_SET_STORAGE:
            raise IngestProblem(name, f"RTSTRUCT with SOP class {ds.SOPClassUID} is not RT Structure Set Storage",
                                tag="SOPClassUID", uid=uid)
        _require(ds, name, ["StructureSetROISequence"])
    return ParsedFile(name=name, path=path, dataset=ds, sha256=sha256_of(path), modality=modality, sop_uid=uid)
