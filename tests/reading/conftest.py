"""Builders for reading-study tests: real rows in the database and real masks in the store."""
import numpy as np
import pytest
from django.contrib.auth import get_user_model

from portal.accounts.models import Profile, Role, Site
from portal.cases.models import Case, ClinicalContextVersion
from portal.imaging import storage
from portal.imaging.models import Patient, Series, Study


PASSWORD = "correct-horse-battery"


def make_user(username, role, sites=()):
    user = get_user_model().objects.create_user(username=username, password=PASSWORD)
    profile = Profile.objects.create(user=user, role=role)
    profile.sites.set(sites)
    return user


def login_client(user):
    """A Django test client logged in as ``user`` (made by ``make_user``)."""
    from django.test import Client

    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def make_case(site, label, cancer_type="breast", n=3):
    patient = Patient.objects.create(pseudo_id=f"P-{label}", site=site)
    study = Study.objects.create(study_uid=f"1.2.826.0.1.{abs(hash(label)) % 10**8}.1", patient=patient)
    series = Series.objects.create(series_uid=f"1.2.826.0.1.{abs(hash(label)) % 10**8}.2", study=study, modality="CT",
                                   rows=8, columns=8, num_slices=4)
    case = Case.objects.create(label=label, site=site, cancer_type=cancer_type, ct_series=series, cohort="internal")
    ClinicalContextVersion.objects.create(case=case, version=1, data={"laterality": "left", "surgery": "bcs"},
                                          prompt_text="breast conserving surgery, left side")
    masks = {}
    for k, source in enumerate(["multimodal", "vision-only"]):
        mask = np.zeros((4, 8, 8), bool)
        mask[1:3, 2:6, k:k + 4] = True
        path = storage.mask_relpath(series.series_uid, f"{label}-{source}")
        storage.save_mask(path, mask)
        masks[source] = path
    return case, masks


@pytest.fixture
def site():
    return Site.objects.create(code="internal", name="Internal hospital")


@pytest.fixture
def other_site():
    return Site.objects.create(code="external2", name="External #2")


@pytest.fixture
def people(site, other_site):
    return {
        "coord": make_user("coord", Role.COORDINATOR, [site]),
        "other_coord": make_user("other_coord", Role.COORDINATOR, [other_site]),
        "rater1": make_user("rater1", Role.ONCOLOGIST, [site]),
        "rater2": make_user("rater2", Role.ONCOLOGIST, [site]),
        "trainee": make_user("trainee", Role.TRAINEE, [site]),
    }


@pytest.fixture
def reading_study(site, people):
    from portal.reading.models import RubricSet
    from portal.reading.services import ContourSource, create_reading_study, ensure_default_rubric_sets, open_study

    ensure_default_rubric_sets()  # transactional tests elsewhere flush the migration's rows
    sources = []
    for i in range(3):
        case, masks = make_case(site, f"BR-INT-{i:04d}")
        for label, path in masks.items():
            sources.append(ContourSource(case=case, source_label=label, mask_path=path, source_ref=f"ckpt-{label}"))
    rubric = RubricSet.objects.get(name="LLMSeg breast", version=1)
    study = create_reading_study(name="Breast blinded read", site=site, rubric_set=rubric, sources=sources,
                                 raters=[people["rater1"], people["rater2"]], seed=1234, created_by=people["coord"])
    open_study(study)
    return study
