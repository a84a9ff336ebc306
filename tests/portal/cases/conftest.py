"""Cases-area fixtures: one small synthetic cohort written once per session, loaded per test, users per role."""
import pytest

from portal.accounts.models import Role
from portal.accounts.services import create_account


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory):
    """Four 48x48 cases: breast + prostate at the internal site (train, teaching) and external1 (test)."""
    from fixtures.cohort import write_cohort

    out = tmp_path_factory.mktemp("cohort") / "c"
    write_cohort(out, sites=["internal", "external1"], cases_per_site=1, shape=48)
    return out


@pytest.fixture
def loaded(db, small_cohort):
    from portal.cases.loading import load_cohort
    from portal.cases.models import Case

    report = load_cohort(small_cohort)
    return {c.label: c for c in Case.objects.filter(label__in=report.created)}


@pytest.fixture
def users(db, loaded):
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
        client.force_authenticate(user)
        return client

    return make
