"""load_cohort / load_demo / create_demo_users: what a cohort becomes in the catalogue, idempotence, bad manifests."""
import json
import shutil
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from portal.accounts import scoping
from portal.accounts.models import Site
from portal.cases.loading import CohortError, load_cohort
from portal.cases.models import Case, ClinicalContextVersion
from portal.imaging.models import Instance, ROI

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def test_cohort_becomes_sites_cases_ground_truth_and_contexts(cases, small_cohort):
    manifest = json.loads((small_cohort / "cohort.json").read_text())
    assert set(cases) == {c["id"] for c in manifest["cases"]}
    for entry in manifest["cases"]:
        case = cases[entry["id"]]
        assert case.site.code == entry["site"] and case.cancer_type == entry["cancer_type"]
        assert f"split:{entry['split']}" in case.tags
        assert case.ct_series.num_slices == entry["ct_files"] and case.ct_series.modality == "CT"
        assert case.ground_truth.name == "CTV" and case.ground_truth.voxel_count == entry["ctv_voxels"]
        assert case.ground_truth.structure_set.source == "ground_truth"
        version = case.current_context
        assert version.version == 1 and version.data == entry["context"] and version.prompt_text
    assert cases["BR-INT-0000"].cohort == "train" and cases["BR-INT-0000"].teaching
    assert cases["BR-EX1-0000"].cohort == "external" and not cases["BR-EX1-0000"].teaching
    assert Site.objects.get(code="internal").name == manifest["sites"]["internal"]["institution"]


def test_loading_again_duplicates_nothing(cases, small_cohort):
    counts = (Case.objects.count(), Instance.objects.count(), ROI.objects.count(), ClinicalContextVersion.objects.count())
    out = StringIO()
    call_command("load_cohort", str(small_cohort), stdout=out)
    assert "0 case(s) loaded, 2 already present" in out.getvalue()
    assert counts == (Case.objects.count(), Instance.objects.count(), ROI.objects.count(),
                      ClinicalContextVersion.objects.count())


def test_load_demo_on_an_existing_cohort_folder_is_idempotent_and_prints_logins(cases, small_cohort):
    out = StringIO()
    call_command("load_demo", "--folder", str(small_cohort), stdout=out)
    call_command("load_demo", "--folder", str(small_cohort), stdout=out)
    text = out.getvalue()
    assert text.count("2 already present") == 2
    users = get_user_model().objects.filter(username__in=["admin", "coordinator", "oncologist", "trainee"])
    assert users.count() == 4
    roles = {u.username: scoping.role_of(u) for u in users}
    assert roles == {"admin": "admin", "coordinator": "coordinator", "oncologist": "oncologist", "trainee": "trainee"}
    assert "coordinator-demo-2026" in text
    # The demo logins work and see what their role allows.
    from django.contrib.auth import authenticate

    trainee = authenticate(username="trainee", password="trainee-demo-2026")
    assert trainee is not None
    assert list(scoping.scope_cases(trainee, Case.objects.all()).values_list("label", flat=True)) == ["BR-INT-0000"]
    ext2 = get_user_model().objects.get(username="coordinator_ext2")
    assert not scoping.scope_cases(ext2, Case.objects.all()).exists()


def test_create_demo_users_twice_keeps_one_user_per_name(db):
    call_command("create_demo_users", stdout=StringIO())
    out = StringIO()
    call_command("create_demo_users", stdout=out)
    assert get_user_model().objects.filter(username="coordinator").count() == 1
    assert "trainee" in out.getvalue() and "oncologist" in out.getvalue()


def test_bad_manifests_name_the_problem(db, tmp_path, small_cohort):
    before = Case.objects.count()
    with pytest.raises(CohortError, match="cohort.json"):
        load_cohort(tmp_path)
    (tmp_path / "cohort.json").write_text("{not json")
    with pytest.raises(CohortError, match="not valid JSON"):
        load_cohort(tmp_path)
    manifest = json.loads((small_cohort / "cohort.json").read_text())
    entry = dict(manifest["cases"][0], ct_dir="../../etc")
    (tmp_path / "cohort.json").write_text(json.dumps({**manifest, "cases": [entry]}))
    with pytest.raises(CohortError, match="outside the cohort folder"):
        load_cohort(tmp_path)
    entry = dict(manifest["cases"][0], site="mars")
    (tmp_path / "cohort.json").write_text(json.dumps({**manifest, "cases": [entry]}))
    with pytest.raises(CohortError, match="site 'mars'"):
        load_cohort(tmp_path)
    with pytest.raises(CommandError, match="cohort.json"):
        call_command("load_cohort", str(tmp_path / "nowhere"))
    assert Case.objects.count() == before


def test_a_rejected_case_leaves_nothing_half_stored(db, tmp_path, small_cohort):
    """A case whose RTSTRUCT is not DICOM is rejected by ingest: no series, no case, no site rows for it."""
    manifest = json.loads((small_cohort / "cohort.json").read_text())
    entry = dict(manifest["cases"][0], id="BR-INT-0999")  # a label not yet in the catalogue
    folder = tmp_path / "cohort"
    shutil.copytree(small_cohort / entry["ct_dir"], folder / entry["ct_dir"])
    (folder / entry["rtstruct"]).write_bytes(b"not a dicom file")
    (folder / "cohort.json").write_text(json.dumps({**manifest, "cases": [entry]}))
    instances = Instance.objects.count()
    from portal.imaging.ingest import IngestError

    with pytest.raises(IngestError, match="rtstruct.dcm"):
        load_cohort(folder)
    assert Instance.objects.count() == instances and not Case.objects.filter(label=entry["id"]).exists()
