"""The QIDO row summary memo: un-repeated searches reuse study/series rows, which stay equal to a fresh search
after ingest and per scope."""
import pytest
from django.http import QueryDict

from dicomweb_factory import ct_datasets, write_files
from portal.imaging import dicomweb_query as qido
from portal.imaging.ingest import ingest_files
from portal.imaging.models import Series

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]
BASE = "http://testserver/dicomweb"


def fresh_and_memoised(user, level, params="", **uids):
    """(search without the memo, search through cached_search with the memo) for the same query."""
    query = qido.parse_query(QueryDict(params), level)
    qido.clear_cache()
    qido.cached_search(user, qido.parse_query(QueryDict("limit=100"), level), BASE, **uids)  # fills the memo
    return qido.search(user, query, BASE, **uids), qido.cached_search(user, query, BASE, **uids)


def count(dataset, tag):
    return dataset[tag]["Value"][0]


def test_memo_rows_equal_fresh_rows_and_follow_ingest(stored, users, sites, tmp_path):
    admin = users["admin"]
    for level in ("studies", "series"):
        for params in ("", "limit=1", "offset=1", "includefield=all", "Modality=CT&limit=5"):
            fresh, memo = fresh_and_memoised(admin, level, params)
            assert memo == fresh, (level, params)
    # A series stored in two ingests: the memo built after the first must not survive the second.
    datasets = ct_datasets(5, patient="PAT-MEMO", study_date="20220202")
    ingest_files(write_files(tmp_path / "first", datasets[:3]), site=sites[0], user=users["coord"])
    qido.clear_cache()
    before = qido.cached_search(admin, qido.parse_query(QueryDict("limit=10"), "studies"), BASE)
    ingest_files(write_files(tmp_path / "second", datasets[3:]), site=sites[0], user=users["coord"])
    after = qido.cached_search(admin, qido.parse_query(QueryDict("limit=9"), "studies"), BASE)
    assert len(after) == len(before) == 3
    assert after == qido.search(admin, qido.parse_query(QueryDict("limit=9"), "studies"), BASE)
    grown = Series.objects.exclude(pk__in=[stored["int"].pk, stored["ext"].pk]).get()
    row = next(r for r in after if r["0020000D"]["Value"] == [grown.study.study_uid])
    assert count(row, "00201208") == grown.instances.count() == 5


def test_memo_rows_are_kept_per_scope(stored, users):
    admin, coord = users["admin"], users["coord"]
    qido.clear_cache()
    everything = qido.cached_search(admin, qido.parse_query(QueryDict(""), "series"), BASE)
    mine = qido.cached_search(coord, qido.parse_query(QueryDict("limit=50"), "series"), BASE)
    assert len(everything) == 2
    assert [r["0020000E"]["Value"] for r in mine] == [[stored["int"].series_uid]]
    assert mine == qido.search(coord, qido.parse_query(QueryDict("limit=50"), "series"), BASE)
