"""Ingest across several requests (as STOW-RS clients send) and the import_dicom command."""
import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from ct_factory import write_ct_series
from portal.accounts.models import Site
from portal.imaging.ingest import IngestError, ingest_files
from portal.imaging.models import ROI, Instance, Series, StructureSet

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture
def site():
    return Site.objects.create(code="s1", name="S1")


def test_rtstruct_after_its_ct_in_a_later_upload(realdata_dir, site):
    base = realdata_dir / "ibsi-sts" / "dicom" / "STS_019" / "CT"
    ingest_files(sorted((base / "image").glob("*.dcm")), site=site)
    report = ingest_files([base / "mask" / "RS.dcm"], site=site)
    assert any("15 ContourImageSequence" in w["problem"] for w in report.warnings)
    assert ROI.objects.get().voxel_count == 5564
    assert StructureSet.objects.get().ct_series.modality == "CT"


def test_series_sent_one_instance_at_a_time(site, tmp_path):
    paths = write_ct_series(tmp_path / "one", 4)
    # In order along the normal (either direction) each step stays one gap-free volume.
    for path in [paths[2], paths[3], paths[1], paths[0]]:
        ingest_files([path], site=site)
    series = Series.objects.get()
    assert series.num_slices == 4
    order = list(series.instances.order_by("slice_index").values_list("instance_number", flat=True))
    assert order == [1, 2, 3, 4]
    assert list(series.instances.order_by("slice_index").values_list("slice_index", flat=True)) == [0, 1, 2, 3]


def test_adding_a_gap_to_a_stored_series_is_rejected(site, tmp_path):
    paths = write_ct_series(tmp_path / "g", 5)
    ingest_files(paths[:2], site=site)
    with pytest.raises(IngestError) as info:
        ingest_files([paths[4]], site=site)
    assert "not evenly spaced" in info.value.errors[0]["problem"]
    assert Instance.objects.count() == 2


def test_import_dicom_command(realdata_dir, site):
    out = io.StringIO()
    call_command("import_dicom", str(realdata_dir / "rtutils-mim-phantom" / "ct_1.dcm"),
                 str(realdata_dir / "rtutils-mim-phantom" / "ct_2.dcm"),
                 str(realdata_dir / "rtutils-mim-phantom" / "rt.dcm"), "--site", "s1", stdout=out)
    assert "stored 3 instance(s)" in out.getvalue() and "frame of reference mismatch" in out.getvalue()
    err = io.StringIO()
    with pytest.raises(CommandError, match="nothing was stored"):
        call_command("import_dicom", str(realdata_dir / "dicompyler-breast"), "--site", "s1", stderr=err)
    assert "modality RTPLAN is not accepted" in err.getvalue()
    with pytest.raises(CommandError, match="nothing was stored"):
        call_command("import_dicom", str(realdata_dir / "dicompyler-breast"), "--site", "s1", "--skip-unsupported", stderr=err)
    assert "is incomplete" in err.getvalue()
    assert Instance.objects.count() == 3
    with pytest.raises(CommandError, match="unknown site"):
        call_command("import_dicom", str(realdata_dir), "--site", "nope")


def test_rtstruct_of_another_patient_rejected(realdata_dir, site, tmp_path):
    import pydicom

    base = realdata_dir / "ibsi-sts" / "dicom" / "STS_019" / "CT"
    ingest_files(sorted((base / "image").glob("*.dcm")), site=site)
    rs = pydicom.dcmread(base / "mask" / "RS.dcm")
    rs.PatientID = "SOMEONE-ELSE"
    other = tmp_path / "rs.dcm"
    rs.save_as(other)
    with pytest.raises(IngestError) as info:
        ingest_files([other], site=site)
    assert info.value.errors[0]["tag"] == "PatientID"
    assert StructureSet.objects.count() == 0


def test_ingest_bytes_for_stow(site, tmp_path, settings):
    from portal.imaging.ingest import ingest_bytes

    parts = [p.read_bytes() for p in write_ct_series(tmp_path / "stow", 3)]
    assert ingest_bytes(parts, site=site).instances == 3
    with pytest.raises(IngestError) as info:
        ingest_bytes([b"garbage"], site=site)
    assert info.value.errors[0]["file"] == "part 1"
    assert not list(Path(settings.CONTEXTRT_UPLOAD_TMP).glob("ingest-*"))


def test_same_files_in_two_sites_are_independent_copies(realdata_dir, site):
    other = Site.objects.create(code="s2", name="S2")
    files = [realdata_dir / "rtutils-mim-phantom" / n for n in ("ct_1.dcm", "ct_2.dcm", "rt.dcm")]
    ingest_files(files, site=site)
    report = ingest_files(files, site=other)
    assert report.instances == 3 and report.skipped_identical == 0
    assert Series.objects.filter(modality="CT").count() == 2
    sets = StructureSet.objects.all()
    assert {s.ct_series.study.patient.site.code for s in sets} == {"s1", "s2"}
    assert all(s.ct_series.study.patient == s.instance.series.study.patient for s in sets)
    # An RTSTRUCT sent to s2 alone cannot reach the CT stored in s1 (found through s2's own copy only).
    third = Site.objects.create(code="s3", name="S3")
    with pytest.raises(IngestError, match="neither in this upload nor stored"):
        ingest_files(files[2:], site=third)


def test_shared_uids_across_uploads_map_consistently(site, tmp_path):
    """UIDs other than study/series/instance (e.g. IrradiationEventUID, scout references) reuse stored pseudonyms."""
    import pydicom

    paths = write_ct_series(tmp_path / "shared", 3)
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.IrradiationEventUID = "1.2.3.999.1"
        ref = pydicom.Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.3.999.2"
        ds.ReferencedImageSequence = [ref]
        ds.save_as(p)
    ingest_files(paths[:2], site=site)
    ingest_files(paths[2:], site=site)
    from portal.imaging import storage

    stored = [pydicom.dcmread(storage.absolute(i.file_path)) for i in Instance.objects.order_by("slice_index")]
    assert len({str(d.IrradiationEventUID) for d in stored}) == 1 and stored[0].IrradiationEventUID != "1.2.3.999.1"
    assert len({d.ReferencedImageSequence[0].ReferencedSOPInstanceUID for d in stored}) == 1
    assert stored[0].ReferencedImageSequence[0].ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"  # class UIDs kept
