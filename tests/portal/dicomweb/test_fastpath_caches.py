"""The fast path's reuse of work between requests: kept DB connection, retrieve listings and encoded QIDO answers.

Each reuse must stay invisible: a store shows in the next retrieve and search at once, and one
credential's cached listing or answer never serves another credential outside its scope.
"""
import requests
import pytest
from django.db import connection

from dicomweb_factory import ct_datasets, write_files
from portal.imaging import fastpath
from portal.imaging.ingest import ingest_files

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]
DICOM = 'multipart/related; type="application/dicom"'


def part_count(response) -> int:
    boundary = response.headers["Content-Type"].split("boundary=")[1].split(";")[0]
    return response.content.count(f"--{boundary}\r\n".encode())


def test_retrieve_listing_follows_a_store_and_stays_per_credential(live_dicomweb, stored, sites, users, tokens, tmp_path):
    datasets = ct_datasets(5, patient="PAT-LIST")
    ingest_files(write_files(tmp_path / "a", datasets[:3]), site=sites[0], user=users["coord"])
    from portal.imaging.models import Series

    series = Series.objects.get(study__patient__pseudo_id__in=Series.objects.exclude(pk__in=[stored["int"].pk, stored["ext"].pk])
                                .values("study__patient__pseudo_id"))
    url = f"{live_dicomweb}/studies/{series.study.study_uid}/series/{series.series_uid}"
    coord = {"Authorization": f"Token {tokens['coord']}", "Accept": DICOM}
    first = requests.get(url, headers=coord)
    assert first.status_code == 200 and part_count(first) == 3
    assert int(first.headers["Content-Length"]) == len(first.content)
    # The listing is cached for this credential, but another site's coordinator still gets 404 for it.
    assert requests.get(url, headers={"Authorization": f"Token {tokens['coord_ext']}", "Accept": DICOM}).status_code == 404
    # Two more slices of the same series: the next retrieve (within the cache's lifetime) has all five.
    ingest_files(write_files(tmp_path / "b", datasets[3:]), site=sites[0], user=users["coord"])
    again = requests.get(url, headers=coord)
    assert again.status_code == 200 and part_count(again) == 5
    assert int(again.headers["Content-Length"]) == len(again.content)


def test_repeated_search_reuses_its_encoding_until_a_store(live_dicomweb, stored, sites, users, tokens, tmp_path):
    coord = {"Authorization": f"Token {tokens['coord']}", "Accept": "application/dicom+json"}
    first = requests.get(f"{live_dicomweb}/studies", headers=coord)
    second = requests.get(f"{live_dicomweb}/studies", headers=coord)
    assert first.status_code == second.status_code == 200 and first.content == second.content
    assert len(first.json()) == 1
    # Another credential's identical search is answered for its own scope.
    other = requests.get(f"{live_dicomweb}/studies", headers={"Authorization": f"Token {tokens['coord_ext']}"})
    assert [s["0020000D"]["Value"] for s in other.json()] == [[stored["ext"].study.study_uid]]
    ingest_files(write_files(tmp_path / "new", ct_datasets(2, patient="PAT-ENC")), site=sites[0], user=users["coord"])
    assert len(requests.get(f"{live_dicomweb}/studies", headers=coord).json()) == 2


def test_the_fast_path_keeps_a_healthy_connection(transactional_db):
    import time

    def select_one():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone()[0]

    connection.close()
    fastpath._ready_connection()  # as at the start of each fast-path request
    assert select_one() == 1
    kept = connection.connection
    # Django's own check closes a connection once close_at has passed (at once with CONN_MAX_AGE 0); the fast
    # path's connection lives for KEEP_CONNECTION_S, or for CONN_MAX_AGE where one is configured.
    # (An in-memory SQLite test database is never really closed, so its close_at says nothing.)
    if not (connection.vendor == "sqlite" and connection.is_in_memory_db()):
        assert connection.close_at is None or connection.close_at > time.monotonic() + 30
    fastpath._ready_connection()  # the next request
    assert connection.connection is kept
    assert select_one() == 1
