"""DICOMweb views through Django's request machinery: QIDO matching, metadata, frames, rendered, bulk data, STOW, auth."""
import io

import numpy as np
import pydicom
import pytest
from django.test import Client
from PIL import Image

from dicomweb_factory import ct_datasets
from portal.imaging import storage
from portal.imaging.models import Instance, Series

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

JSON = "application/dicom+json"


def client_for(token):
    return Client(HTTP_AUTHORIZATION=f"Token {token}")


def values(dataset, tag):
    return (dataset.get(tag) or {}).get("Value", [])


def parts_of(response):
    """Split a multipart/related response into (headers, bytes) pairs."""
    ctype = response["Content-Type"]
    boundary = ctype.split("boundary=")[1].split(";")[0].strip('"')
    body = b"".join(response.streaming_content) if response.streaming else response.content
    out = []
    for chunk in body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        out.append((head.decode(), data[:-2] if data.endswith(b"\r\n") else data))
    return out


def test_search_studies_scoped_and_matching(stored, tokens):
    coord = client_for(tokens["coord"])
    found = coord.get("/dicomweb/studies", HTTP_ACCEPT=JSON)
    assert found.status_code == 200 and found["Content-Type"] == JSON
    studies = found.json()
    assert len(studies) == 1
    study_uid = stored["int"].study.study_uid
    assert values(studies[0], "0020000D") == [study_uid]
    assert values(studies[0], "00201206") == [1] and values(studies[0], "00201208") == [3]
    assert values(studies[0], "00080061") == ["CT"]
    assert values(studies[0], "00081190")[0].endswith(f"/dicomweb/studies/{study_uid}")
    admin = client_for(tokens["admin"])
    assert len(admin.get("/dicomweb/studies").json()) == 2
    # the patient name is the pseudonym after de-identification; match it with a wildcard on its start
    pseudo = stored["ext"].study.patient.pseudo_id
    by_id = admin.get("/dicomweb/studies", {"PatientID": pseudo}).json()
    assert [values(s, "00100020") for s in by_id] == [[pseudo]]
    by_name = admin.get("/dicomweb/studies", {"PatientName": pseudo[:3].lower() + "*"}).json()
    assert len(by_name) == 2  # both pseudonyms share the prefix; PN matching ignores case
    ext_date = stored["ext"].study.study_date.strftime("%Y%m%d")
    ranged = admin.get("/dicomweb/studies", {"StudyDate": f"{ext_date}-{ext_date}"}).json()
    assert [values(s, "0020000D") for s in ranged] == [[stored["ext"].study.study_uid]]
    assert admin.get("/dicomweb/studies", {"StudyDate": f"-{ext_date}"}).status_code == 200
    assert admin.get("/dicomweb/studies", {"StudyInstanceUID": f"{study_uid},{stored['ext'].study.study_uid}"}).json().__len__() == 2
    assert admin.get("/dicomweb/studies", {"ModalitiesInStudy": "MR"}).json() == []
    wildcard = admin.get("/dicomweb/studies", {"PatientID": pseudo[:-2] + "?*"}).json()
    assert [values(s, "0020000D") for s in wildcard] == [[stored["ext"].study.study_uid]]
    # keys without a catalogue column are matched on the stored DICOM JSON (times are kept by de-identification)
    assert len(admin.get("/dicomweb/studies", {"StudyTime": "1000-1100"}).json()) == 2
    assert admin.get("/dicomweb/studies", {"StudyTime": "1200-"}).json() == []
    assert len(admin.get("/dicomweb/series", {"SliceThickness": "2.5", "limit": "1", "offset": "1"}).json()) == 1


def test_limit_offset_includefield_and_fuzzymatching(stored, tokens):
    admin = client_for(tokens["admin"])
    first = admin.get("/dicomweb/studies", {"limit": 1}).json()
    second = admin.get("/dicomweb/studies", {"limit": 1, "offset": 1}).json()
    assert len(first) == len(second) == 1 and first[0]["0020000D"] != second[0]["0020000D"]
    assert admin.get("/dicomweb/studies", {"offset": 2}).json() == []
    series = stored["int"]
    instances = admin.get(f"/dicomweb/studies/{series.study.study_uid}/series/{series.series_uid}/instances",
                          {"includefield": "00280030,SliceThickness"}).json()
    assert len(instances) == 3 and all("00280030" in i and "00180050" in i for i in instances)
    assert [values(i, "00200013") for i in instances] == [[1], [2], [3]]
    everything = admin.get("/dicomweb/instances", {"includefield": "all", "SOPInstanceUID": values(instances[0], "00080018")[0]}).json()
    assert len(everything) == 1 and "00200032" in everything[0] and "7FE00010" not in everything[0]
    fuzzy = admin.get("/dicomweb/series", {"fuzzymatching": "true", "Modality": "CT"})
    assert fuzzy.status_code == 200 and len(fuzzy.json()) == 2 and "fuzzymatching" in fuzzy["Warning"]
    nested = admin.get(f"/dicomweb/studies/{series.study.study_uid}/series").json()
    assert [values(s, "0020000E") for s in nested] == [[series.series_uid]]
    assert values(nested[0], "00201209") == [3]


@pytest.mark.parametrize("params, named", [
    ({"limit": "-1"}, "limit"), ({"offset": "x"}, "offset"), ({"NotAnAttribute": "1"}, "NotAnAttribute"),
    ({"StudyDate": "2020-13-45"}, "StudyDate"), ({"StudyDate": "20201345"}, "StudyDate"),
    ({"StudyInstanceUID": "1.2.abc"}, "StudyInstanceUID"), ({"includefield": "Nope"}, "Nope"),
    ({"fuzzymatching": "maybe"}, "fuzzymatching"), ({"SeriesNumber": "two"}, "SeriesNumber"),
])
def test_bad_query_parameters_are_400_with_a_message(stored, tokens, params, named):
    response = client_for(tokens["admin"]).get("/dicomweb/studies", params)
    assert response.status_code == 400 and named in response.json()["error"]


def test_metadata_matches_pydicom_and_bulkdata_resolves(stored, tokens):
    series = stored["int"]
    coord = client_for(tokens["coord"])
    base = f"/dicomweb/studies/{series.study.study_uid}/series/{series.series_uid}"
    response = coord.get(f"{base}/metadata", HTTP_ACCEPT=JSON)
    assert response.status_code == 200 and response["Content-Type"] == JSON
    metadata = response.json()
    rows = list(series.instances.order_by("slice_index"))
    assert len(metadata) == 3
    for meta, row in zip(metadata, rows):
        on_disk = pydicom.dcmread(storage.absolute(row.file_path))
        ds = pydicom.Dataset.from_json({k: v for k, v in meta.items() if k != "7FE00010"})
        assert ds.SOPInstanceUID == on_disk.SOPInstanceUID and ds.Rows == on_disk.Rows
        assert [float(v) for v in ds.ImagePositionPatient] == [float(v) for v in on_disk.ImagePositionPatient]
        uri = meta["7FE00010"]["BulkDataURI"]
        assert meta["7FE00010"]["vr"] == "OW" and "/bulkdata/7FE00010" in uri
        bulk = coord.get(uri.split("://", 1)[1].split("/", 1)[1].join(["/", ""]),
                         HTTP_ACCEPT='multipart/related; type="application/octet-stream"')
        assert bulk.status_code == 200
        (headers, data), = parts_of(bulk)
        assert data == on_disk.PixelData and "transfer-syntax=1.2.840.10008.1.2.1" in headers
    one = coord.get(f"{base}/instances/{rows[0].sop_uid}/metadata").json()
    assert len(one) == 1 and one[0]["00080018"]["Value"] == [rows[0].sop_uid]
    assert len(coord.get(f"/dicomweb/studies/{series.study.study_uid}/metadata").json()) == 3


def test_frames_and_rendered_match_pydicom(stored, tokens):
    series = stored["int"]
    coord = client_for(tokens["coord"])
    row = series.instances.order_by("slice_index")[1]
    on_disk = pydicom.dcmread(storage.absolute(row.file_path))
    url = f"/dicomweb/studies/{series.study.study_uid}/series/{series.series_uid}/instances/{row.sop_uid}"
    accept = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    response = coord.get(f"{url}/frames/1", HTTP_ACCEPT=accept)
    assert response.status_code == 200 and response["Content-Type"].startswith("multipart/related")
    (headers, data), = parts_of(response)
    assert "application/octet-stream" in headers and "transfer-syntax=1.2.840.10008.1.2.1" in headers
    assert np.array_equal(np.frombuffer(data, dtype="<i2").reshape(on_disk.Rows, on_disk.Columns), on_disk.pixel_array)
    assert len(parts_of(coord.get(f"{url}/frames/1,1", HTTP_ACCEPT=accept))) == 2
    assert coord.get(f"{url}/frames/2", HTTP_ACCEPT=accept).status_code == 404
    assert coord.get(f"{url}/frames/0", HTTP_ACCEPT=accept).status_code == 400
    assert coord.get(f"{url}/frames/a", HTTP_ACCEPT=accept).status_code == 400
    jpeg_only = 'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.4.50'
    assert coord.get(f"{url}/frames/1", HTTP_ACCEPT=jpeg_only).status_code == 406

    png = coord.get(f"{url}/rendered", {"window": "0,400"}, HTTP_ACCEPT="image/png")
    assert png.status_code == 200 and png["Content-Type"] == "image/png"
    image = np.asarray(Image.open(io.BytesIO(png.content)))
    hu = on_disk.pixel_array.astype(float) * float(on_disk.RescaleSlope) + float(on_disk.RescaleIntercept)
    expected = np.rint(np.clip(((hu - (0 - 0.5)) / (400 - 1) + 0.5), 0, 1) * 255).astype(np.uint8)
    assert image.shape == (on_disk.Rows, on_disk.Columns) and np.array_equal(image, expected)
    other = np.asarray(Image.open(io.BytesIO(coord.get(f"{url}/rendered", {"windowcenter": "-500", "windowwidth": "1000"}).content)))
    assert not np.array_equal(image, other)
    assert coord.get(f"{url}/rendered", {"window": "40"}).status_code == 400
    assert coord.get(f"{url}/rendered", {"window": "40,-5"}).status_code == 400


def test_retrieve_series_and_instance_are_the_stored_files(stored, tokens):
    series = stored["int"]
    coord = client_for(tokens["coord"])
    response = coord.get(f"/dicomweb/studies/{series.study.study_uid}/series/{series.series_uid}",
                         HTTP_ACCEPT='multipart/related; type="application/dicom"')
    assert response.status_code == 200 and 'type="application/dicom"' in response["Content-Type"]
    parts = parts_of(response)
    rows = list(series.instances.order_by("slice_index"))
    assert [data for _, data in parts] == [storage.absolute(r.file_path).read_bytes() for r in rows]
    one = coord.get(f"/dicomweb/studies/{series.study.study_uid}/series/{series.series_uid}/instances/{rows[2].sop_uid}")
    (_, data), = parts_of(one)
    assert pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID == rows[2].sop_uid
    assert coord.get(f"/dicomweb/studies/{series.study.study_uid}/series/{series.series_uid}",
                     HTTP_ACCEPT='multipart/related; type="image/jpeg"').status_code == 406


def test_anonymous_401_other_site_404_on_every_endpoint(stored, tokens):
    ext = stored["ext"]
    inst = ext.instances.first()
    base = f"/dicomweb/studies/{ext.study.study_uid}"
    urls = [base, f"{base}/metadata", f"{base}/series/{ext.series_uid}", f"{base}/series/{ext.series_uid}/metadata",
            f"{base}/series/{ext.series_uid}/instances/{inst.sop_uid}",
            f"{base}/series/{ext.series_uid}/instances/{inst.sop_uid}/metadata",
            f"{base}/series/{ext.series_uid}/instances/{inst.sop_uid}/frames/1",
            f"{base}/series/{ext.series_uid}/instances/{inst.sop_uid}/rendered",
            f"{base}/series/{ext.series_uid}/instances/{inst.sop_uid}/bulkdata/7FE00010"]
    anonymous, coord = Client(), client_for(tokens["coord"])
    for url in urls + ["/dicomweb/studies", "/dicomweb/series", "/dicomweb/instances"]:
        response = anonymous.get(url)
        assert response.status_code == 401 and "Token" in response["WWW-Authenticate"], url
    assert Client(HTTP_AUTHORIZATION="Token not-a-key").get("/dicomweb/studies").status_code == 401
    for url in urls:
        assert coord.get(url).status_code == 404, url
        assert client_for(tokens["coord_ext"]).get(url).status_code == 200, url
    assert coord.get("/dicomweb/instances", {"SeriesInstanceUID": ext.series_uid}).json() == []
    # a trainee sees only teaching cases: nothing here
    assert client_for(tokens["trainee"]).get("/dicomweb/studies").json() == []
    assert client_for(tokens["trainee"]).get(urls[6]).status_code == 404
    # the worker machine account reads everything
    assert client_for(tokens["worker"]).get(urls[6]).status_code == 200


def test_session_login_reads_and_needs_csrf_to_store(stored, users, tmp_path):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(users["coord"])
    assert len(browser.get("/dicomweb/studies").json()) == 1
    body, ctype = multipart_dicom([_encode(ds) for ds in ct_datasets(2)])
    response = browser.post("/dicomweb/studies", data=body, content_type=ctype)
    assert response.status_code == 403 and "CSRF" in response.json()["error"]


def _encode(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def multipart_dicom(parts, part_type="application/dicom"):
    boundary = "b0undary-42"
    body = b"".join(f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode() + p + b"\r\n" for p in parts)
    return body + f"--{boundary}--\r\n".encode(), f'multipart/related; type="{part_type}"; boundary={boundary}'


def test_stow_stores_through_ingest_and_reports_uids(stored, tokens):
    datasets = ct_datasets(3, patient="PAT-STOW")
    body, ctype = multipart_dicom([_encode(ds) for ds in datasets])
    before = Instance.objects.count()
    studies_before = len(client_for(tokens["coord"]).get("/dicomweb/studies").json())
    response = client_for(tokens["coord"]).post("/dicomweb/studies", data=body, content_type=ctype, HTTP_ACCEPT=JSON)
    assert response.status_code == 200, response.content
    result = pydicom.Dataset.from_json(response.json())
    assert sorted(item.ReferencedSOPInstanceUID for item in result.ReferencedSOPSequence) == sorted(ds.SOPInstanceUID for ds in datasets)
    assert Instance.objects.count() == before + 3
    # the same search right after the store sees the new study (cached answers are per catalogue generation)
    assert len(client_for(tokens["coord"]).get("/dicomweb/studies").json()) == studies_before + 1
    url = result.ReferencedSOPSequence[0].RetrieveURL
    stored_sop = url.rsplit("/", 1)[1]
    assert stored_sop != datasets[0].SOPInstanceUID  # de-identified on ingest
    assert Instance.objects.get(sop_uid=stored_sop).series.study.patient.site.code == "int"
    assert client_for(tokens["coord"]).get(url.split("/dicomweb", 1)[1].join(["/dicomweb", "/metadata"])).status_code == 200


def test_stow_of_a_bad_file_is_rejected_with_nothing_stored(stored, tokens, settings):
    good = ct_datasets(2, patient="PAT-BAD")
    no_pixels = ct_datasets(1, patient="PAT-BAD")[0]
    del no_pixels.PixelData
    body, ctype = multipart_dicom([_encode(good[0]), b"this is not DICOM at all", _encode(no_pixels), _encode(good[1])])
    files_before = sorted(p for p in storage.root().rglob("*") if p.is_file())
    counts_before = (Instance.objects.count(), Series.objects.count())
    response = client_for(tokens["coord"]).post("/dicomweb/studies", data=body, content_type=ctype)
    assert response.status_code == 409
    result = pydicom.Dataset.from_json(response.json())
    reasons = [item.FailureReason for item in result.FailedSOPSequence]
    assert len(reasons) == 4 and reasons.count(0xC000) == 2 and reasons.count(0x0110) == 2
    comments = " ".join(str(item.get("ErrorComment", "")) for item in result.FailedSOPSequence)
    assert "part 2" in comments and "part 3" in comments
    assert (Instance.objects.count(), Series.objects.count()) == counts_before
    assert sorted(p for p in storage.root().rglob("*") if p.is_file()) == files_before
    assert not any(settings.CONTEXTRT_UPLOAD_TMP.iterdir())


def test_stow_request_errors(stored, tokens):
    coord = client_for(tokens["coord"])
    assert coord.post("/dicomweb/studies", data=b"x", content_type="application/dicom").status_code == 415
    body, ctype = multipart_dicom([b"{}"], part_type="application/dicom+json")
    assert coord.post("/dicomweb/studies", data=body, content_type=ctype).status_code == 415
    body, ctype = multipart_dicom([_encode(ds) for ds in ct_datasets(1)])
    assert client_for(tokens["trainee"]).post("/dicomweb/studies", data=body, content_type=ctype).status_code == 403
    assert client_for(tokens["admin"]).post("/dicomweb/studies", data=body, content_type=ctype).status_code == 400  # which site?
    assert client_for(tokens["admin"]).post("/dicomweb/studies?site=ext", data=body, content_type=ctype).status_code == 200
    other = ct_datasets(1)
    body, ctype = multipart_dicom([_encode(other[0])])
    wrong_study = coord.post("/dicomweb/studies/1.2.3.4", data=body, content_type=ctype)
    assert wrong_study.status_code == 409
    assert pydicom.Dataset.from_json(wrong_study.json()).FailedSOPSequence[0].FailureReason == 0xA900


def test_stow_failure_comments_are_valid_lo_and_full_problems_are_in_the_warning_header(stored, tokens):
    """ErrorComment (0000,0902) is an LO: at most 64 characters, so pydicom must read the response without a warning."""
    import warnings

    no_pixels = ct_datasets(1, patient="PAT-LO")[0]
    del no_pixels.PixelData
    other_study = ct_datasets(1, patient="PAT-LO2")[0]
    body, ctype = multipart_dicom([b"this is not DICOM at all", _encode(no_pixels)])
    response = client_for(tokens["coord"]).post("/dicomweb/studies", data=body, content_type=ctype)
    assert response.status_code == 409
    data = response.json()
    long_problems = [v for v in values(data, "00000902") if v.endswith("...")]
    assert long_problems, "the test needs a problem longer than 64 characters to mean anything"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydicom's "value length exceeds the maximum length of 64" would raise here
        result = pydicom.Dataset.from_json(data)
        comments = [str(item.ErrorComment) for item in result.FailedSOPSequence] + list(result.ErrorComment)
    assert all(len(c) <= 64 and "\\" not in c for c in comments)
    assert comments[0].startswith("part 1") and comments[1].startswith("part 2")
    # The whole text of each problem is in the Warning header, one 299 warning per problem.
    header = response["Warning"]
    assert header.count('299 ContextRT "') == 2
    for cut in long_problems:
        assert cut[:-3] in header
    assert len(header) > sum(len(c) for c in comments[:2])
    # A mismatched study in the URL: the 0xA900 comment is cut too and still parses silently.
    body, ctype = multipart_dicom([_encode(other_study)])
    wrong = client_for(tokens["coord"]).post("/dicomweb/studies/1.2.3.4", data=body, content_type=ctype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        item = pydicom.Dataset.from_json(wrong.json()).FailedSOPSequence[0]
    assert item.FailureReason == 0xA900 and len(item.ErrorComment) <= 64


@pytest.mark.parametrize("text, expected", [
    ("short", "short"),
    ("a\\b\nc", "a/b c"),
    ("x" * 80, "x" * 61 + "..."),
    ("part 1: " + "word " * 20, "part 1: " + "word " * 9 + "word..."),
])
def test_lo_text_fits_one_lo_value(text, expected):
    from portal.imaging.dicomweb_json import lo_text

    out = lo_text(text)
    assert out == expected and len(out) <= 64
