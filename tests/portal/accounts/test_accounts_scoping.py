"""Role and site scoping of cases and series, checked on real querysets."""
import pytest
from django.contrib.auth import get_user_model

from portal.accounts import scoping
from portal.accounts.models import Role, Site
from portal.accounts.services import AccountError, create_account
from portal.cases.models import Case
from portal.imaging.models import Patient, Series, Study

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _case(site, label, teaching=False):
    patient = Patient.objects.create(pseudo_id=f"P-{label}", site=site)
    study = Study.objects.create(study_uid=f"2.25.{abs(hash(label)) % 10**12}1", patient=patient)
    series = Series.objects.create(series_uid=f"2.25.{abs(hash(label)) % 10**12}2", study=study, modality="CT")
    return Case.objects.create(label=label, site=site, cancer_type="breast", ct_series=series, teaching=teaching)


@pytest.fixture
def world():
    a = Site.objects.create(code="site-a", name="A")
    b = Site.objects.create(code="site-b", name="B")
    cases = {
        "a1": _case(a, "a1"), "a2": _case(a, "a2", teaching=True),
        "b1": _case(b, "b1"), "b2": _case(b, "b2", teaching=True),
    }
    users = {
        "admin": create_account("adm", "pw-123456-x", Role.ADMIN),
        "coord_a": create_account("ca", "pw-123456-x", Role.COORDINATOR, ["site-a"]),
        "trainee_a": create_account("ta", "pw-123456-x", Role.TRAINEE, ["site-a"]),
        "rater": create_account("onc", "pw-123456-x", Role.ONCOLOGIST, ["site-a"]),
        "worker": create_account("wk", "pw-123456-x", Role.WORKER),
    }
    return cases, users


def labels(qs):
    return sorted(c.label for c in qs)


def test_case_scoping_per_role(world):
    cases, users = world
    allc = Case.objects.all()
    assert labels(scoping.scope_cases(users["admin"], allc)) == ["a1", "a2", "b1", "b2"]
    assert labels(scoping.scope_cases(users["worker"], allc)) == ["a1", "a2", "b1", "b2"]
    assert labels(scoping.scope_cases(users["coord_a"], allc)) == ["a1", "a2"]
    assert labels(scoping.scope_cases(users["trainee_a"], allc)) == ["a2"]
    assert labels(scoping.scope_cases(users["rater"], allc)) == []
    from django.contrib.auth.models import AnonymousUser

    assert labels(scoping.scope_cases(AnonymousUser(), allc)) == []
    assert scoping.can_view_case(users["coord_a"], cases["a1"])
    assert not scoping.can_view_case(users["coord_a"], cases["b1"])
    assert not scoping.can_view_case(users["trainee_a"], cases["a1"])


def test_series_and_site_scoping(world):
    cases, users = world
    series = Series.objects.all()
    assert scoping.scope_series(users["coord_a"], series).count() == 2
    assert set(scoping.scope_series(users["trainee_a"], series)) == {cases["a2"].ct_series}
    assert scoping.scope_series(users["rater"], series).count() == 0
    assert scoping.scope_studies(users["coord_a"], Study.objects.all()).count() == 2
    assert scoping.scope_patients(users["trainee_a"], Patient.objects.all()).count() == 1
    assert list(scoping.visible_sites(users["coord_a"]).values_list("code", flat=True)) == ["site-a"]
    assert scoping.managed_sites(users["trainee_a"]).count() == 0
    assert scoping.is_coordinator(users["coord_a"]) and not scoping.is_admin(users["coord_a"])
    assert scoping.is_admin(users["admin"]) and users["admin"].is_superuser


def test_inactive_user_sees_nothing(world):
    cases, users = world
    user = users["coord_a"]
    user.is_active = False
    user.save()
    assert scoping.scope_cases(user, Case.objects.all()).count() == 0


def test_create_account_errors(db):
    with pytest.raises(AccountError, match="unknown role"):
        create_account("x", "pw", "chief")
    with pytest.raises(AccountError, match="unknown site 'nowhere'"):
        create_account("x", "pw", Role.TRAINEE, ["nowhere"])
    assert not get_user_model().objects.filter(username="x").exists()


def test_trainee_without_site_sees_no_teaching_case(world):
    trainee = create_account("lonely", "pw-123456-x", Role.TRAINEE)
    assert scoping.scope_cases(trainee, Case.objects.all()).count() == 0
    assert scoping.scope_series(trainee, Series.objects.all()).count() == 0


def test_trainee_sees_structure_set_series_of_teaching_case(world):
    from portal.imaging.models import Instance, StructureSet

    cases, users = world
    ct = cases["a2"].ct_series
    rs_series = Series.objects.create(series_uid="2.25.991", study=ct.study, modality="RTSTRUCT")
    inst = Instance.objects.create(sop_uid="2.25.992", series=rs_series, sop_class_uid="1.2.840.10008.5.1.4.1.1.481.3",
                                   transfer_syntax_uid="1.2.840.10008.1.2.1", file_path="x")
    StructureSet.objects.create(instance=inst, ct_series=ct)
    assert set(scoping.scope_series(users["trainee_a"], Series.objects.all())) == {ct, rs_series}
    assert scoping.can_view_series(users["trainee_a"], rs_series)
    assert not scoping.can_view_series(users["trainee_a"], cases["a1"].ct_series)
    assert scoping.scope_instances(users["trainee_a"], Instance.objects.all()).count() == 1


def test_rater_sees_only_series_of_open_assigned_items(world):
    from portal.reading.models import RaterAssignment, RaterItem, ReadingItem, ReadingStudy, RubricSet

    cases, users = world
    rater = users["rater"]
    assert scoping.scope_series(rater, Series.objects.all()).count() == 0
    rubric = RubricSet.objects.create(name="r", cancer_type="breast")
    study = ReadingStudy.objects.create(name="s", site=cases["a1"].site, rubric_set=rubric, seed=1)
    item = ReadingItem.objects.create(study=study, case=cases["b1"], ct_series=cases["b1"].ct_series, source_label="x",
                                      mask_path="m")
    assignment = RaterAssignment.objects.create(study=study, rater=rater, order_seed=1)
    RaterItem.objects.create(assignment=assignment, item=item, position=0, token="t1", case_token="c1", letter="A")
    assert scoping.scope_series(rater, Series.objects.all()).count() == 0  # study still a draft
    study.state = ReadingStudy.State.OPEN
    study.save()
    assert list(scoping.scope_series(rater, Series.objects.all())) == [cases["b1"].ct_series]
    assert scoping.scope_cases(rater, Case.objects.all()).count() == 0
