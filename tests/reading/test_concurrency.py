"""Two tabs autosaving the same item at once on PostgreSQL: the row lock serialises them, the later wins, both audited."""
import threading
import time

import pytest
from django.db import connection, connections, transaction

from portal.reading.models import RaterItem, ScoreAuditEntry
from portal.reading.services import save_scores

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def _waiting_on_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")
        return cursor.fetchone()[0] > 0


def test_two_connections_autosave_the_same_item(reading_study, people):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks (run with DATABASE_URL, e.g. scripts/run_tests.sh)")
    ri = reading_study.assignments.get(rater=people["rater1"]).items.first()
    rater = people["rater1"]
    first_saved, release_first, errors = threading.Event(), threading.Event(), []

    def tab_one():
        try:
            with transaction.atomic():  # hold the row lock until the second tab is queued behind it
                save_scores(ri.pk, rater, scores={"coverage": "0.5"})
                first_saved.set()
                release_first.wait(30)
        except Exception as exc:  # surfaced in the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    def tab_two():
        try:
            save_scores(ri.pk, rater, scores={"coverage": "1"})
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    one = threading.Thread(target=tab_one)
    one.start()
    assert first_saved.wait(30)
    two = threading.Thread(target=tab_two)
    two.start()
    for _ in range(300):  # wait until tab two is really blocked on tab one's lock (ordering, not timing)
        if _waiting_on_lock():
            break
        time.sleep(0.05)
    release_first.set()
    one.join(30)
    two.join(30)
    assert not errors, errors
    ri.refresh_from_db()
    assert ri.scores["coverage"] == "1" and ri.revision == 2
    audit = list(ScoreAuditEntry.objects.filter(rater_item=ri, field="coverage").order_by("revision")
                 .values_list("old", "new", "revision"))
    # the second save saw the first one's value: serialised, no lost update
    assert audit == [(None, "0.5", 1), ("0.5", "1", 2)]
    assert RaterItem.objects.get(pk=ri.pk).status == RaterItem.Status.DRAFT
