"""Robustness-run fixtures: a one-case catalogue (removed again after the module) and API tokens per role."""
import pytest
from django.test import override_settings


@pytest.fixture(scope="module")
def robustness_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("robustness-store")
    (root / "store").mkdir()
    (root / "upload-tmp").mkdir()
    return root


@pytest.fixture(autouse=True)
def _isolated_storage(settings, robustness_store):
    """Overrides the suite-wide per-test store so the module's catalogue keeps its files for every test."""
    settings.CONTEXTRT_STORAGE = robustness_store / "store"
    settings.CONTEXTRT_UPLOAD_TMP = robustness_store / "upload-tmp"
    yield


@pytest.fixture(scope="module")
def robustness_catalogue(django_db_setup, django_db_blocker, tmp_path_factory, robustness_store):
    """One 32x32 breast case loaded through load_cohort and a coordinator token; all rows are deleted afterwards."""
    from django.contrib.auth import get_user_model

    from fixtures.cohort import write_cohort
    from portal.accounts.models import Profile, Site
    from portal.cases.loading import load_cohort
    from portal.cases.models import Case, ClinicalContextVersion
    from portal.imaging.models import ROI, Instance, Patient, ReidentificationEntry, Series, StructureSet, Study

    folder = tmp_path_factory.mktemp("robustness-cohort") / "c"
    write_cohort(folder, sites=["internal"], cases_per_site=1, shape=32, cancer_types=["breast"])
    models = [ClinicalContextVersion, Case, ROI, StructureSet, Instance, Series, Study, ReidentificationEntry,
              Patient, Profile, get_user_model(), Site]
    with django_db_blocker.unblock():
        high_water = {m: (m.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) for m in models}
        with override_settings(CONTEXTRT_STORAGE=robustness_store / "store",
                               CONTEXTRT_UPLOAD_TMP=robustness_store / "upload-tmp"):
            load_cohort(folder)
        # One coordinator of the loaded site with an API token (created once: password hashing is slow).
        from rest_framework.authtoken.models import Token

        from portal.accounts.models import Role
        from portal.accounts.services import create_account

        user = create_account("fuzz-coordinator", "pw-long-fuzz-123", Role.COORDINATOR, ["internal"])
        token = Token.objects.create(user=user).key
    yield {"coordinator_token": token}
    with django_db_blocker.unblock():
        for model in models:
            model.objects.filter(pk__gt=high_water[model]).delete()


@pytest.fixture(autouse=True)
def _keep_test_connection_open():
    """The raw WSGI app closes the DB connection when a request finishes (``close_old_connections``); on
    PostgreSQL that would end the test's transaction. Django's own test client detaches it the same way."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)
