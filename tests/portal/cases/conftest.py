"""Cases-area fixtures: a small synthetic cohort written once per session and catalogued once per module
(ingest is the slow part), a store shared by the tests of a module, users per role and API clients.

The module-scoped catalogue lives outside the per-test transactions, so it is removed again (rows created
after the fixture started, newest model first) when the module ends: other areas' tests see an empty DB.
"""
import pytest
from django.test import override_settings

from portal.accounts.models import Role
from portal.accounts.services import create_account


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory):
    """Two 48x48 breast cases: internal site (train split, teaching) and external1 (test split)."""
    from fixtures.cohort import write_cohort

    out = tmp_path_factory.mktemp("cohort") / "c"
    write_cohort(out, sites=["internal", "external1"], cases_per_site=1, shape=48, cancer_types=["breast"])
    return out


@pytest.fixture(scope="module")
def module_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("cases-store")
    (root / "store").mkdir()
    (root / "upload-tmp").mkdir()
    return root


@pytest.fixture(autouse=True)
def _isolated_storage(settings, module_store):
    """Overrides the suite-wide per-test store: the module's catalogue keeps its masks in one store."""
    settings.CONTEXTRT_STORAGE = module_store / "store"
    settings.CONTEXTRT_UPLOAD_TMP = module_store / "upload-tmp"
    yield


def _created_models():
    from django.contrib.auth import get_user_model

    from portal.accounts.models import Profile, Site
    from portal.cases.models import Case, ClinicalContextVersion
    from portal.imaging.models import ROI, Instance, Patient, ReidentificationEntry, Series, StructureSet, Study

    # Deletion order: dependents first (PROTECT foreign keys).
    return [ClinicalContextVersion, Case, ROI, StructureSet, Instance, Series, Study, ReidentificationEntry,
            Patient, Profile, get_user_model(), Site]


@pytest.fixture(scope="module")
def catalogue(django_db_setup, django_db_blocker, small_cohort, module_store):
    """The small cohort loaded through ``load_cohort`` once for the module: {label: case id}."""
    from portal.cases.loading import load_cohort
    from portal.cases.models import Case

    with django_db_blocker.unblock():
        models = _created_models()
        high_water = {m: (m.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) for m in models}
        with override_settings(CONTEXTRT_STORAGE=module_store / "store", CONTEXTRT_UPLOAD_TMP=module_store / "upload-tmp"):
            report = load_cohort(small_cohort)
        ids = dict(Case.objects.filter(label__in=report.created).values_list("label", "pk"))
    yield ids
    with django_db_blocker.unblock():
        for model in models:
            model.objects.filter(pk__gt=high_water[model]).delete()


@pytest.fixture
def cases(db, catalogue):
    from portal.cases.models import Case

    return {label: Case.objects.get(pk=pk) for label, pk in catalogue.items()}


@pytest.fixture
def users(cases):
    return {
        "coord": create_account("coord", "pw-long-123", Role.COORDINATOR, ["internal"]),
        "coord_ext": create_account("coordx", "pw-long-123", Role.COORDINATOR, ["external1"]),
        "trainee": create_account("trainee", "pw-long-123", Role.TRAINEE, ["internal", "external1"]),
        "rater": create_account("rater", "pw-long-123", Role.ONCOLOGIST, ["internal"]),
        "admin": create_account("root", "pw-long-123", Role.ADMIN),
    }


@pytest.fixture
def client_for():
    from rest_framework.test import APIClient

    def make(user):
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return make
