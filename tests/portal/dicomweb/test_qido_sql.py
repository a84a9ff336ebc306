"""QIDO's hand-written id query (dicomweb_query.matching_ids) against ORM-built expectations, per role and scope.

The ORM querysets here are the oracle: they spell out the matching rules of
docs/dicomweb.md with Django lookups, independently of the SQL the search runs.
"""
import pytest
from django.http import QueryDict

from dicomweb_factory import ct_datasets, write_files
from portal.accounts.scoping import scope_series
from portal.cases.models import Case
from portal.imaging import dicomweb_query as qido
from portal.imaging.ingest import ingest_files
from portal.imaging.models import Instance, Series, Study

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]
BASE = "http://testserver/dicomweb"


@pytest.fixture
def two_series_study(stored, sites, users, tmp_path):
    """A study at site 'int' with two CT series (SeriesNumber 2 and 7); only the first is a teaching case's CT."""
    first = ct_datasets(2, patient="PAT-TWO", study_date="20230305")
    second = ct_datasets(2, patient="PAT-TWO", study_date="20230305")
    for ds in second:
        ds.StudyInstanceUID, ds.SeriesNumber = first[0].StudyInstanceUID, 7
    ingest_files(write_files(tmp_path / "two", first + second), site=sites[0], user=users["coord"])
    study = Study.objects.get(patient__pseudo_id__in=Series.objects.filter(series_number=7).values("study__patient__pseudo_id"))
    teaching = study.series.get(series_number=2)
    Case.objects.create(label="TEACH-1", site=sites[0], cancer_type="breast", ct_series=teaching, teaching=True)
    qido.clear_cache()
    return study


def ids(user, level, params="", **uids):
    query = qido.parse_query(QueryDict(params), level)
    db_filters = [f for f in query.filters if f.raw]
    return qido.matching_ids(qido.scope_for(user), level, db_filters, limit=query.limit, offset=query.offset, **uids)


def visible(user):
    return scope_series(user, Series.objects.all()).values("pk")


def expected_studies(user, **lookups):
    return list(Study.objects.filter(pk__in=visible(user).values("study_id"), **lookups).order_by("pk").values_list("pk", flat=True))


def test_every_role_sees_only_its_scope(stored, users, two_series_study):
    int_study, ext_study = stored["int"].study, stored["ext"].study
    for name, user in users.items():
        assert ids(user, "studies") == expected_studies(user), name
        assert ids(user, "series") == list(Series.objects.filter(pk__in=visible(user)).order_by("study_id", "series_number", "pk")
                                            .values_list("pk", flat=True)), name
        assert ids(user, "instances") == list(Instance.objects.filter(series_id__in=visible(user))
                                              .order_by("series_id", "slice_index", "instance_number", "pk")
                                              .values_list("pk", flat=True)), name
    # Other sites' studies stay hidden, whatever the search names.
    coord, coord_ext = users["coord"], users["coord_ext"]
    assert ext_study.pk not in ids(coord, "studies") and ext_study.pk in ids(coord_ext, "studies")
    assert ids(coord, "studies", f"StudyInstanceUID={ext_study.study_uid}") == []
    assert ids(coord, "studies", f"PatientID={ext_study.patient.pseudo_id}") == []
    assert ids(coord, "series", study_uid=ext_study.study_uid) == []
    assert ids(coord, "instances", study_uid=ext_study.study_uid, series_uid=stored["ext"].series_uid) == []
    assert ids(coord_ext, "studies", f"StudyInstanceUID={int_study.study_uid}") == []
    # The trainee sees the teaching case's series only, not its sibling in the same study.
    trainee = users["trainee"]
    assert ids(trainee, "studies") == [two_series_study.pk]
    assert ids(trainee, "series") == [two_series_study.series.get(series_number=2).pk]


def test_filters_match_like_the_orm(stored, users, two_series_study):
    admin = users["admin"]
    ext = stored["ext"]
    pseudo = ext.study.patient.pseudo_id
    date = ext.study.study_date
    cases = [
        (f"PatientID={pseudo}", dict(patient__pseudo_id=pseudo)),
        (f"PatientID={pseudo[:-2]}?*", dict(patient__pseudo_id__regex="^" + pseudo[:-2] + ".")),
        (f"StudyDate={date:%Y%m%d}", dict(study_date=date)),
        (f"StudyDate=-{date:%Y%m%d}", dict(study_date__lte=date)),
        (f"StudyDate={date:%Y%m%d}-", dict(study_date__gte=date)),
        (f"StudyDate={two_series_study.study_date:%Y%m%d}-20991231",
         dict(study_date__range=(two_series_study.study_date, "2099-12-31"))),
        (f"StudyInstanceUID={ext.study.study_uid},{two_series_study.study_uid}",
         dict(study_uid__in=[ext.study.study_uid, two_series_study.study_uid])),
        (f"AccessionNumber={ext.study.accession_number}", dict(accession_number=ext.study.accession_number)),
        ("ModalitiesInStudy=MR\\CT", dict(series__modality__in=["MR", "CT"])),
        ("SeriesNumber=7", dict(series__series_number=7)),
        (f"SOPInstanceUID={ext.instances.first().sop_uid}", dict(series__instances__sop_uid=ext.instances.first().sop_uid)),
        ("InstanceNumber=2&Modality=CT", dict(series__instances__instance_number=2, series__modality="CT")),
    ]
    for params, lookups in cases:
        want = sorted(set(Study.objects.filter(**lookups).values_list("pk", flat=True)))
        assert ids(admin, "studies", params) == want, params
        assert want, f"{params} should match something for the comparison to mean anything"
    # series and instance levels, with the path UIDs and parent-level attributes
    assert ids(admin, "series", f"StudyDate={date:%Y%m%d}") == [ext.pk]
    assert ids(admin, "series", "SeriesNumber=7") == list(two_series_study.series.filter(series_number=7).values_list("pk", flat=True))
    assert ids(admin, "instances", f"PatientID={pseudo}") == list(ext.instances.order_by("slice_index").values_list("pk", flat=True))
    assert ids(admin, "instances", "InstanceNumber=1", study_uid=two_series_study.study_uid) == list(
        Instance.objects.filter(series__study=two_series_study, instance_number=1).order_by("series_id").values_list("pk", flat=True))
    # A hidden series does not make its study match for the trainee (it does for the coordinator, who sees it).
    assert ids(users["trainee"], "studies", "SeriesNumber=7") == []
    assert ids(users["coord"], "studies", "SeriesNumber=7") == [two_series_study.pk]


def test_limit_and_offset(stored, users, two_series_study):
    admin = users["admin"]
    everything = ids(admin, "instances")
    assert len(everything) == 9
    assert ids(admin, "instances", "limit=2") == everything[:2]
    assert ids(admin, "instances", "offset=3") == everything[3:]
    assert ids(admin, "instances", "limit=4&offset=3") == everything[3:7]
    assert ids(admin, "instances", "offset=50") == []
    assert qido.search(admin, qido.parse_query(QueryDict("limit=0"), "instances"), BASE) == []


def test_a_rater_without_reading_items_sees_nothing(stored, sites):
    from portal.accounts.models import Role
    from portal.accounts.services import create_account

    rater = create_account("rater-none", "pw-long-123", Role.ONCOLOGIST, ["int"])
    scope = qido.scope_for(rater)
    assert scope.empty
    assert qido.search(rater, qido.parse_query(QueryDict(""), "studies"), BASE) == []
    assert ids(rater, "instances") == []
