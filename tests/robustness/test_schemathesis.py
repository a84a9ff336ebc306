"""Schemathesis against /api/schema/: every operation, a few generated requests each, as an authenticated
study coordinator and anonymously; no response may be a server error (5xx).

The Django WSGI application is called in-process (same test database, no server to start). Examples per
operation are bounded (``MAX_EXAMPLES``) so the run stays within the suite's time budget.
"""
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings

MAX_EXAMPLES = 5

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture
def coordinator_token(robustness_catalogue):
    return robustness_catalogue["coordinator_token"]


def _load_schema():
    from django.core.wsgi import get_wsgi_application

    # The schema endpoint itself is public and needs no database: loading it at collection is safe.
    return schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


schema = _load_schema()
HYPOTHESIS = settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])


def assert_no_server_error(case, response):
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}\n"
        f"query={case.query!r} body={str(case.body)[:300]!r}\n{response.text[:1500]}")


@schema.parametrize()
@HYPOTHESIS
def test_no_server_error_as_coordinator(case, coordinator_token):
    response = case.call(headers={"Authorization": f"Token {coordinator_token}"})
    assert_no_server_error(case, response)
    if case.method == "GET" and case.path == "/api/auth/me/":
        assert response.status_code == 200  # the token authenticates: the run is not all 401s


@schema.parametrize()
@HYPOTHESIS
def test_no_server_error_anonymously(case, robustness_catalogue):
    response = case.call()
    assert_no_server_error(case, response)
    if case.path not in ("/api/auth/token/",):
        assert response.status_code in (401, 403, 404, 405), f"{case.method} {case.path} answered anonymously"
