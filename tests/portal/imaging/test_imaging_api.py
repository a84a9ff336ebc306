"""REST upload and catalogue: authentication, roles, site scoping, CSRF, admin-only re-identification map, schema."""
import io
import zipfile

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from ct_factory import write_ct_series
from portal.accounts.models import Role, Site
from portal.accounts.services import create_account
from portal.cases.models import Case
from portal.imaging.models import Instance, Series

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture
def sites():
    return Site.objects.create(code="int", name="Internal"), Site.objects.create(code="ext", name="External")


@pytest.fixture
def users(sites):
    return {
        "coord": create_account("coord", "pw-long-123", Role.COORDINATOR, ["int"]),
        "coord_ext": create_account("coordx", "pw-long-123", Role.COORDINATOR, ["ext"]),
        "trainee": create_account("trainee", "pw-long-123", Role.TRAINEE, ["int"]),
        "admin": create_account("root", "pw-long-123", Role.ADMIN),
    }


def api_for(user):
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def upload(client, paths, site="int", **extra):
    files = [open(p, "rb") for p in paths]
    try:
        return client.post("/api/imaging/upload/", {"site": site, "files": files, **extra}, format="multipart")
    finally:
        for f in files:
            f.close()


def test_upload_files_and_scoped_catalogue(users, tmp_path):
    resp = upload(api_for(users["coord"]), write_ct_series(tmp_path / "a", 3))
    assert resp.status_code == 201, resp.content
    assert resp.json()["instances"] == 3 and len(resp.json()["patients"]) == 1
    upload(api_for(users["coord_ext"]), write_ct_series(tmp_path / "b", 2), site="ext")
    series = api_for(users["coord"]).get("/api/imaging/series/").json()
    assert series["count"] == 1 and series["results"][0]["site"] == "int" and series["results"][0]["num_slices"] == 3
    assert api_for(users["admin"]).get("/api/imaging/series/").json()["count"] == 2
    assert api_for(users["trainee"]).get("/api/imaging/series/").json()["count"] == 0
    assert api_for(users["coord"]).get("/api/imaging/patients/").json()["count"] == 1
    assert api_for(users["coord"]).get("/api/imaging/studies/").json()["count"] == 1
    other = Series.objects.get(study__patient__site__code="ext")
    assert api_for(users["coord"]).get(f"/api/imaging/series/{other.series_uid}/").status_code == 404
    # A trainee sees a series once it belongs to a teaching case at its site.
    mine = Series.objects.get(study__patient__site__code="int")
    Case.objects.create(label="T1", site=mine.study.patient.site, cancer_type="breast", ct_series=mine, teaching=True)
    detail = api_for(users["trainee"]).get(f"/api/imaging/series/{mine.series_uid}/")
    assert detail.status_code == 200 and detail.json()["structure_sets"] == []


def test_upload_zip_and_errors(users, tmp_path):
    paths = write_ct_series(tmp_path / "z", 2)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in paths:
            zf.write(p, p.name)
    buf.seek(0)
    buf.name = "series.zip"
    client = api_for(users["coord"])
    assert client.post("/api/imaging/upload/", {"site": "int", "archive": buf}, format="multipart").status_code == 201
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"hello")
    resp = upload(client, [bad])
    assert resp.status_code == 400 and resp.json()["errors"][0]["file"] == "bad.dcm"
    assert "not a DICOM file" in resp.json()["errors"][0]["problem"]
    assert upload(client, []).status_code == 400


def test_upload_permissions(users, tmp_path):
    paths = write_ct_series(tmp_path / "p", 2)
    assert upload(APIClient(), paths).status_code in (401, 403)
    assert upload(api_for(users["trainee"]), paths).status_code == 403
    wrong_site = upload(api_for(users["coord"]), paths, site="ext")
    assert wrong_site.status_code == 400 and wrong_site.json()["errors"][0]["field"] == "site"
    assert Instance.objects.count() == 0


def test_oversized_request_413(users, tmp_path, settings):
    settings.CONTEXTRT_MAX_UPLOAD_BYTES = 2000
    resp = upload(api_for(users["coord"]), write_ct_series(tmp_path / "o", 3))
    assert resp.status_code == 413 and "exceeds the upload limit" in resp.json()["errors"][0]["problem"]
    assert Instance.objects.count() == 0


def test_session_upload_needs_csrf(users, tmp_path):
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["coord"])
    paths = write_ct_series(tmp_path / "c", 2)
    with open(paths[0], "rb") as f1, open(paths[1], "rb") as f2:
        resp = client.post("/api/imaging/upload/", {"site": "int", "files": [f1, f2]})
    assert resp.status_code == 403 and "CSRF" in resp.content.decode()
    client.get("/accounts/login/")
    token = client.cookies["csrftoken"].value
    with open(paths[0], "rb") as f1, open(paths[1], "rb") as f2:
        resp = client.post("/api/imaging/upload/", {"site": "int", "files": [f1, f2]}, HTTP_X_CSRFTOKEN=token)
    assert resp.status_code == 201


def test_reidentification_map_admin_only(users, tmp_path):
    upload(api_for(users["coord"]), write_ct_series(tmp_path / "r", 2, patient="MRN-42"))
    assert api_for(users["coord"]).get("/api/imaging/reidentification/").status_code == 403
    rows = api_for(users["admin"]).get("/api/imaging/reidentification/?kind=patient_id").json()["results"]
    assert rows[0]["original"] == "int:MRN-42" and rows[0]["pseudonym"].startswith("CRT-")
    # Django admin: superuser sees the map, a staff non-superuser does not.
    admin_client = Client()
    admin_client.force_login(users["admin"])
    assert admin_client.get("/admin/imaging/reidentificationentry/").status_code == 200
    staff = users["coord"]
    staff.is_staff = True
    staff.save()
    staff_client = Client()
    staff_client.force_login(staff)
    assert staff_client.get("/admin/imaging/reidentificationentry/").status_code == 403


def test_schema_generates(users):
    resp = APIClient().get("/api/schema/?format=json")
    assert resp.status_code == 200
    paths = resp.json()["paths"]
    assert "/api/imaging/upload/" in paths and "/api/auth/token/" in paths and "/api/imaging/series/{series_uid}/" in paths
