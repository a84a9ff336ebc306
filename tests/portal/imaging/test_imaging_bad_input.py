"""Bad-input corpus: each upload is rejected with a clear error and leaves database and storage unchanged."""
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest

from ct_factory import write_ct_series
from portal.accounts.models import Site
from portal.imaging.ingest import IngestError, ingest_files, ingest_zip
from portal.imaging.models import Instance, Series

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def snapshot(settings):
    from portal.imaging import models

    files = sorted(str(p) for p in Path(settings.CONTEXTRT_STORAGE).rglob("*") if p.is_file())
    counts = {m.__name__: m.objects.count() for m in (models.Patient, models.Study, models.Series, models.Instance,
                                                        models.StructureSet, models.ROI, models.ReidentificationEntry)}
    return files, counts


@pytest.fixture
def site():
    return Site.objects.create(code="s", name="S")


@pytest.fixture
def stored_first(site, tmp_path):
    """A valid series already in the store, so 'unchanged' is checked against a non-empty state."""
    ingest_files(write_ct_series(tmp_path / "ok", 3, patient="KEEP"), site=site)


def rejected(settings, site, paths, **kwargs):
    before = snapshot(settings)
    with pytest.raises(IngestError) as info:
        ingest_files(paths, site=site, **kwargs)
    assert snapshot(settings) == before
    assert not list(Path(settings.CONTEXTRT_UPLOAD_TMP).glob("ingest-*"))  # staging cleaned up
    return info.value.errors


def test_truncated_file(settings, site, stored_first, tmp_path):
    paths = write_ct_series(tmp_path / "t", 3)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) - 300])
    (error,) = rejected(settings, site, paths)
    assert error["file"] == str(paths[1]) and "truncated" in error["problem"]


def test_non_dicom(settings, site, stored_first, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("patient list\n" * 50)
    (error,) = rejected(settings, site, write_ct_series(tmp_path / "n", 2) + [text])
    assert error["file"] == str(text) and "not a DICOM file" in error["problem"]


def test_wrong_modality(settings, site, stored_first, tmp_path):
    paths = write_ct_series(tmp_path / "m", 2)
    ds = pydicom.dcmread(paths[0])
    ds.Modality = "MR"
    ds.save_as(paths[0])
    (error,) = rejected(settings, site, paths)
    assert error["tag"] == "Modality" and "modality MR is not accepted" in error["problem"]


def test_missing_pixel_data(settings, site, stored_first, tmp_path):
    paths = write_ct_series(tmp_path / "p", 2)
    ds = pydicom.dcmread(paths[1])
    del ds.PixelData
    ds.save_as(paths[1])
    (error,) = rejected(settings, site, paths)
    assert "no PixelData" in error["problem"] and error["uid"] == ds.SOPInstanceUID


def test_missing_slice(settings, site, stored_first, tmp_path):
    paths = write_ct_series(tmp_path / "s", 5)
    removed = paths.pop(2)
    (error,) = rejected(settings, site, paths)
    assert "not evenly spaced" in error["problem"] and "missing or extra slice" in error["problem"]
    assert removed.name not in error["problem"]


def test_mixed_series(settings, site, stored_first, tmp_path):
    series_uid = pydicom.uid.generate_uid()
    a = write_ct_series(tmp_path / "a", 3, series_uid=series_uid, frame_uid="1.2.3.4", study_uid="1.2.3.5")
    b = write_ct_series(tmp_path / "b", 3, series_uid=series_uid, frame_uid="1.2.3.4", study_uid="1.2.3.5",
                        pixel_spacing=(0.5, 0.5), prefix="other")
    (error,) = rejected(settings, site, a + b[:1])
    assert "PixelSpacing differs" in error["problem"] and series_uid in error["problem"]


def test_rtstruct_without_its_ct(settings, site, stored_first, realdata_dir):
    rs = realdata_dir / "rtutils-mim-phantom" / "rt.dcm"
    (error,) = rejected(settings, site, [rs])
    assert error["tag"] == "RTReferencedSeriesSequence" and "neither in this upload nor stored" in error["problem"]
    assert error["uid"] in error["problem"]


def test_same_sop_uid_different_content(settings, site, stored_first, tmp_path):
    paths = write_ct_series(tmp_path / "d", 3)
    ds = pydicom.dcmread(paths[0])
    ds.PixelData = (np.frombuffer(ds.PixelData, np.int16) + 1).astype(np.int16).tobytes()
    clash = tmp_path / "clash.dcm"
    ds.save_as(clash)
    errors = rejected(settings, site, paths + [clash])
    assert any(e["uid"] == ds.SOPInstanceUID and "different content" in e["problem"] for e in errors)


def test_identical_duplicate_in_one_upload_is_ingested_once(site, tmp_path):
    paths = write_ct_series(tmp_path / "i", 3)
    copy = tmp_path / "copy.dcm"
    shutil.copy(paths[0], copy)
    report = ingest_files(paths + [copy], site=site)
    assert report.instances == 3 and Instance.objects.count() == 3


@pytest.mark.parametrize("bad_name", ["../evil.dcm", "/etc/evil.dcm", "a/../../evil.dcm", "C:/evil.dcm"])
def test_zip_with_traversal_or_absolute_path(settings, site, stored_first, tmp_path, bad_name):
    paths = write_ct_series(tmp_path / "z", 2)
    archive = tmp_path / "up.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in paths:
            zf.write(p, f"series/{p.name}")
        zf.writestr(bad_name, b"x")
    before = snapshot(settings)
    with pytest.raises(IngestError) as info:
        ingest_zip(archive, site=site)
    assert snapshot(settings) == before
    assert bad_name in info.value.errors[0]["file"] and "'..'" in info.value.errors[0]["problem"]
    assert not (tmp_path / "evil.dcm").exists()


def test_good_zip(site, tmp_path):
    paths = write_ct_series(tmp_path / "g", 3)
    archive = tmp_path / "up.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in paths:
            zf.write(p, f"nested/dir/{p.name}")
    assert ingest_zip(archive, site=site).instances == 3


def test_oversized_upload_and_too_many_files(settings, site, stored_first, tmp_path):
    paths = write_ct_series(tmp_path / "o", 3)
    settings.CONTEXTRT_MAX_UPLOAD_BYTES = 1000
    (error,) = rejected(settings, site, paths)
    assert "exceed the limit of 1000" in error["problem"]
    settings.CONTEXTRT_MAX_UPLOAD_BYTES = 10**9
    settings.CONTEXTRT_MAX_UPLOAD_FILES = 2
    (error,) = rejected(settings, site, paths)
    assert "3 files exceed the limit of 2" in error["problem"]


def test_zip_bomb_limit(settings, site, tmp_path):
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dcm", b"\0" * 200_000)
    settings.CONTEXTRT_MAX_UPLOAD_BYTES = 50_000
    with pytest.raises(IngestError) as info:
        ingest_zip(archive, site=site)
    assert "exceed" in info.value.errors[0]["problem"]


def test_compressed_input_is_decoded(site, tmp_path, settings):
    from pydicom.uid import RLELossless

    paths = write_ct_series(tmp_path / "c", 2)
    originals = []
    for p in paths:
        ds = pydicom.dcmread(p)
        originals.append(ds.pixel_array.copy())
        ds.compress(RLELossless)
        ds.save_as(p)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == RLELossless
    ingest_files(paths, site=site)
    from portal.imaging import storage
    from portal.imaging.volume import load_ct_volume

    series = Series.objects.get()
    for inst in series.instances.order_by("slice_index"):
        stored = pydicom.dcmread(storage.absolute(inst.file_path))
        assert stored.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert np.array_equal(stored.pixel_array, originals[inst.slice_index])
    hu, _ = load_ct_volume(series)
    assert np.array_equal(hu[1], originals[1].astype(np.int32) - 1024)


def test_undecodable_compression_rejected(settings, site, stored_first, tmp_path):
    paths = write_ct_series(tmp_path / "u", 2)
    ds = pydicom.dcmread(paths[0])
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"  # JPEG baseline header over raw bytes: cannot decode
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([b"\xff\xd8 not a jpeg"])
    ds["PixelData"].VR = "OB"
    ds.save_as(paths[0], enforce_file_format=True)
    (error,) = rejected(settings, site, paths)
    assert error["tag"] == "TransferSyntaxUID" and "could not be decoded" in error["problem"]


def test_deidentification_of_synthetic_headers(site, tmp_path):
    from portal.imaging import storage

    ingest_files(write_ct_series(tmp_path / "h", 2, patient="MRN-777"), site=site)
    inst = Instance.objects.first()
    ds = pydicom.dcmread(storage.absolute(inst.file_path))
    assert "MRN-777" not in str(ds) and "Doe" not in str(ds) and "House" not in str(ds) and "ACC123" not in str(ds)
    assert ds.PatientBirthDate == "" and ds.StudyDate != "20200315" and len(ds.StudyDate) == 8
    # Same patient again: same pseudonym and the same date shift.
    ingest_files(write_ct_series(tmp_path / "h2", 2, patient="MRN-777"), site=site)
    later = pydicom.dcmread(storage.absolute(Instance.objects.order_by("-pk").first().file_path))
    assert later.PatientID == ds.PatientID and later.StudyDate == ds.StudyDate


def test_truncated_large_file_with_deferred_pixels(settings, site, stored_first, realdata_dir, tmp_path):
    source = realdata_dir / "rtutils-mim-phantom" / "ct_1.dcm"  # 512x512: its pixels are read lazily
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(source.read_bytes()[:-1000])
    (error,) = rejected(settings, site, [cut])
    assert "PixelData is truncated" in error["problem"] and "523288 bytes where 524288" in error["problem"]
