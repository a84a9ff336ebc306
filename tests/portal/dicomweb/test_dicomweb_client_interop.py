"""Interoperability with the real Python dicomweb-client against the running ASGI server (fast path + Django)."""
import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from dicomweb_factory import ct_datasets
from portal.imaging import storage
from portal.imaging.models import Instance

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def dicomweb_client(url, token):
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    return DICOMwebClient(url=url, session=session)


def test_search_retrieve_and_store_with_dicomweb_client(live_dicomweb, stored, tokens):
    client = dicomweb_client(live_dicomweb, tokens["coord"])
    series = stored["int"]
    studies = client.search_for_studies()
    assert [s["0020000D"]["Value"][0] for s in studies] == [series.study.study_uid]
    found = client.search_for_series(study_instance_uid=series.study.study_uid, search_filters={"Modality": "CT"})
    assert [s["0020000E"]["Value"][0] for s in found] == [series.series_uid]
    instances = client.search_for_instances(study_instance_uid=series.study.study_uid, series_instance_uid=series.series_uid)
    assert len(instances) == 3

    retrieved = client.retrieve_series(series.study.study_uid, series.series_uid)
    rows = list(series.instances.order_by("slice_index"))
    assert [ds.SOPInstanceUID for ds in retrieved] == [r.sop_uid for r in rows]
    for ds, row in zip(retrieved, rows):
        assert np.array_equal(ds.pixel_array, pydicom.dcmread(storage.absolute(row.file_path)).pixel_array)

    sop = rows[1].sop_uid
    on_disk = pydicom.dcmread(storage.absolute(rows[1].file_path))
    frames = client.retrieve_instance_frames(series.study.study_uid, series.series_uid, sop, frame_numbers=[1])
    assert np.array_equal(np.frombuffer(frames[0], "<i2").reshape(on_disk.Rows, on_disk.Columns), on_disk.pixel_array)
    metadata = client.retrieve_series_metadata(series.study.study_uid, series.series_uid)
    assert len(metadata) == 3
    bulk_uri = metadata[1]["7FE00010"]["BulkDataURI"]
    assert bulk_uri.startswith(live_dicomweb), bulk_uri
    assert client.retrieve_bulkdata(bulk_uri)[0] == on_disk.PixelData
    instance = client.retrieve_instance(series.study.study_uid, series.series_uid, sop)
    assert instance.SOPInstanceUID == sop

    new = ct_datasets(2, patient="PAT-CLIENT")
    result = client.store_instances(new)
    assert sorted(i.ReferencedSOPInstanceUID for i in result.ReferencedSOPSequence) == sorted(ds.SOPInstanceUID for ds in new)
    stored_study = result.RetrieveURL.rsplit("/", 1)[1]
    assert len(client.search_for_instances(study_instance_uid=stored_study)) == 2
    assert Instance.objects.filter(series__study__study_uid=stored_study).count() == 2


def test_fast_path_enforces_auth_and_scope(live_dicomweb, stored, tokens, users):
    ext = stored["ext"]
    inst = ext.instances.first()
    base = f"{live_dicomweb}/studies/{ext.study.study_uid}/series/{ext.series_uid}"
    urls = [f"{base}/instances/{inst.sop_uid}/frames/1", f"{base}/instances/{inst.sop_uid}/bulkdata/7FE00010",
            f"{base}/instances/{inst.sop_uid}", base, f"{live_dicomweb}/studies/{ext.study.study_uid}"]
    for url in urls:
        assert requests.get(url).status_code == 401, url
        assert requests.get(url, headers={"Authorization": "Token wrong"}).status_code == 401, url
        assert requests.get(url, headers={"Authorization": f"Token {tokens['coord']}"}).status_code == 404, url
        assert requests.get(url, headers={"Authorization": f"Token {tokens['coord_ext']}"}).status_code == 200, url
    # a session cookie works on the fast path too
    browser = requests.Session()
    from django.test import Client

    django_client = Client()
    django_client.force_login(users["coord_ext"])
    browser.cookies.set("sessionid", django_client.cookies["sessionid"].value)
    frame = browser.get(urls[0], headers={"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"})
    assert frame.status_code == 200 and "transfer-syntax=1.2.840.10008.1.2.1" in frame.text[:300]
    assert browser.get(urls[0].replace("/frames/1", "/frames/9")).status_code == 404
    assert browser.get(urls[0].replace("/frames/1", "/frames/0")).status_code == 400
    jpeg = 'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.4.50'
    assert browser.get(urls[0], headers={"Accept": jpeg}).status_code == 406


def test_fast_path_search_and_metadata_rules(live_dicomweb, stored, tokens):
    coord = {"Authorization": f"Token {tokens['coord']}"}
    ext = stored["ext"]
    for url in [f"{live_dicomweb}/studies", f"{live_dicomweb}/series", f"{live_dicomweb}/studies/{ext.study.study_uid}/metadata"]:
        assert requests.get(url).status_code == 401, url
    bad = requests.get(f"{live_dicomweb}/studies", params={"StudyDate": "2020"}, headers=coord)
    assert bad.status_code == 400 and "StudyDate" in bad.json()["error"]
    assert requests.get(f"{live_dicomweb}/studies", params={"limit": "x"}, headers=coord).status_code == 400
    assert requests.get(f"{live_dicomweb}/instances", params={"SeriesInstanceUID": ext.series_uid}, headers=coord).json() == []
    assert requests.get(f"{live_dicomweb}/studies/{ext.study.study_uid}/metadata", headers=coord).status_code == 404
    mine = requests.get(f"{live_dicomweb}/series", params={"Modality": "CT", "includefield": "all"}, headers=coord)
    assert mine.status_code == 200 and mine.headers["Content-Type"] == "application/dicom+json"
    assert [s["0020000E"]["Value"][0] for s in mine.json()] == [stored["int"].series_uid]
    spoofed = requests.get(f"{live_dicomweb}/studies", headers=dict(coord, Host="evil.example"))
    assert spoofed.status_code == 400


def test_series_retrieve_split_over_several_writes(live_dicomweb, stored, tokens, monkeypatch):
    """A retrieve larger than one write block arrives whole, parts in slice order, byte-identical to the stored files."""
    from portal.imaging import fastpath

    monkeypatch.setattr(fastpath, "RETRIEVE_BLOCK", 1500)  # a 32x32 CT file is ~2.5 KB: one write per part or so
    series = stored["int"]
    retrieved = dicomweb_client(live_dicomweb, tokens["coord"]).retrieve_series(series.study.study_uid, series.series_uid)
    rows = list(series.instances.order_by("slice_index"))
    assert [ds.SOPInstanceUID for ds in retrieved] == [r.sop_uid for r in rows]
    for ds, row in zip(retrieved, rows):
        assert ds.PixelData == pydicom.dcmread(storage.absolute(row.file_path)).PixelData
