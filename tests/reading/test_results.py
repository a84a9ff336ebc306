"""Results of a small scripted study: means reproduce hand computation; tests, agreement and exports work."""
import csv
import io

import pytest
from openpyxl import load_workbook

from portal.reading.results import rows_to_file, summarise
from portal.reading.services import close_study, save_scores, submit, unblinded_rows

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

RATERS = ("rater1", "rater2")
SOURCES = ("multimodal", "vision-only")


def _script(reading_study, people):
    """Every rater scores every item: step index = (case + source + rater) mod number of steps."""
    criteria = list(reading_study.rubric_set.criteria.all())
    expected = {}  # (criterion, source) -> list of floats written by hand
    for r_index, name in enumerate(RATERS):
        for ri in reading_study.assignments.get(rater=people[name]).items.select_related("item__case"):
            case_index = int(ri.item.case.label[-4:])
            source_index = SOURCES.index(ri.item.source_label)
            scores, total = {}, 0.0
            for c in criteria:
                step = c.steps[(case_index + source_index + r_index) % len(c.steps)]
                scores[c.key] = step
                total += float(step)
                expected.setdefault((c.key, ri.item.source_label), []).append(float(step))
            expected.setdefault(("total", ri.item.source_label), []).append(total)
            save_scores(ri.pk, people[name], scores=scores, comment=f"{name} note")
            submit(ri.pk, people[name])
    close_study(reading_study)
    return expected


def test_results_table_reproduces_hand_computed_means(reading_study, people):
    expected = _script(reading_study, people)
    summary = summarise(reading_study, unblinded_rows(reading_study))
    assert summary["n_rows"] == 12
    overall = {(m["criterion"], m["source"]): m for m in summary["means"] if m["site"] == "all"}
    assert set(overall) == set(expected)
    for key, values in expected.items():
        row = overall[key]
        assert row["n"] == len(values) == 6
        assert row["mean"] == pytest.approx(sum(values) / len(values))
        assert row["ci_low"] <= row["mean"] + 1e-9 and row["mean"] - 1e-9 <= row["ci_high"]
    # a single site here, so the per-site rows equal the pooled ones
    per_site = {(m["criterion"], m["source"]): m["mean"] for m in summary["means"] if m["site"] != "all"}
    assert per_site == {k: v["mean"] for k, v in overall.items()}


def test_paired_tests_and_agreement_use_matched_rater_case_pairs(reading_study, people):
    _script(reading_study, people)
    summary = summarise(reading_study, unblinded_rows(reading_study))
    total = next(p for p in summary["paired"] if p["criterion"] == "total")
    assert (total["source_a"], total["source_b"]) == SOURCES
    assert total["n"] == 6  # 2 raters x 3 cases
    agreement = summary["agreement"]
    assert agreement["raters"] == list(RATERS)
    assert agreement["n_subjects"] == 6
    assert agreement["icc_total"] is None or -1.5 <= agreement["icc_total"] <= 1.0
    assert {k["criterion"] for k in agreement["kappa"]} <= {c.key for c in reading_study.rubric_set.criteria.all()}
    assert agreement["kappa"], "two raters scored the same six items: kappa must be reported"


def test_metric_correlation_from_supplied_contour_metrics(reading_study, people):
    _script(reading_study, people)
    rows = unblinded_rows(reading_study)
    by_contour = {}
    for r in rows:
        by_contour.setdefault((r["case"], r["source"]), []).append(r["total"])
    mean_total = {k: sum(v) / len(v) for k, v in by_contour.items()}
    metrics = {k: {"dice": 0.5 + t / 20, "hd95": 10 - t} for k, t in mean_total.items()}
    corr = {c["metric"]: c for c in summarise(reading_study, rows, contour_metrics=metrics)["metric_correlation"]}
    assert corr["dice"]["n"] == 6  # 3 cases x 2 sources, raters averaged
    # dice was built as an increasing function of the total, hd95 as a decreasing one
    assert corr["dice"]["spearman"]["r"] == pytest.approx(1.0)
    assert corr["hd95"]["spearman"]["r"] == pytest.approx(-1.0)


def test_exports_round_trip_every_row(reading_study, people):
    _script(reading_study, people)
    rows = unblinded_rows(reading_study)
    content, ctype = rows_to_file(rows, "csv")
    assert ctype == "text/csv"
    parsed = list(csv.DictReader(io.StringIO(content.decode())))
    assert len(parsed) == 12 and {r["source"] for r in parsed} == set(SOURCES)
    content, ctype = rows_to_file(rows, "xlsx")
    sheet = load_workbook(io.BytesIO(content)).active
    assert sheet.max_row == 13 and [c.value for c in sheet[1]][:4] == ["rater", "case", "site", "source"]
    with pytest.raises(ValueError, match="format_type"):
        rows_to_file(rows, "pdf")


def test_results_and_exports_through_the_api_after_close(reading_study, people):
    from rest_framework.test import APIClient

    _script(reading_study, people)
    c = APIClient()
    c.force_login(people["coord"])
    res = c.get(f"/api/reading/studies/{reading_study.pk}/results/")
    assert res.status_code == 200 and res.json()["n_rows"] == 12
    csv_res = c.get(f"/api/reading/studies/{reading_study.pk}/unblinded/?format_type=csv")
    assert csv_res.status_code == 200 and csv_res["Content-Type"].startswith("text/csv")
    assert len(list(csv.DictReader(io.StringIO(csv_res.content.decode())))) == 12
    rater = APIClient()
    rater.force_login(people["rater1"])
    assert rater.get(f"/api/reading/studies/{reading_study.pk}/results/").status_code == 403


def _give_ground_truth(case, mask):
    from portal.imaging import storage
    from portal.imaging.models import ROI, StructureSet

    path = storage.mask_relpath(case.ct_series.series_uid, f"{case.label}-truth")
    storage.save_mask(path, mask)
    ss = StructureSet.objects.create(ct_series=case.ct_series, label="GT", source=StructureSet.Source.GROUND_TRUTH)
    case.ground_truth = ROI.objects.create(structure_set=ss, number=1, name="CTV", mask_path=path,
                                           voxel_count=int(mask.sum()))
    case.save(update_fields=["ground_truth"])


def test_contour_metrics_come_from_the_stored_masks(reading_study, people, client):
    from portal.reading.contour_metrics import study_contour_metrics
    from portal.reading.models import ReadingItem

    # Ground truth = the "multimodal" mask of each case: its Dice is 1, the shifted "vision-only" one's lower.
    for item in ReadingItem.objects.filter(study=reading_study, source_label="multimodal").select_related("case"):
        from portal.imaging import storage

        _give_ground_truth(item.case, storage.load_mask(item.mask_path))
    metrics = study_contour_metrics(reading_study)
    assert len(metrics) == 6
    for (case, source), m in metrics.items():
        if source == "multimodal":
            assert m["dice"] == pytest.approx(1.0) and m["hd95"] == pytest.approx(0.0)
        else:  # masks of 2x4x4 voxels shifted by one column: overlap 2x4x3
            assert m["dice"] == pytest.approx(2 * 24 / (32 + 32)) and m["hd95"] == pytest.approx(1.0)
    _script(reading_study, people)
    client.force_login(people["coord"])
    body = client.get(f"/api/reading/studies/{reading_study.pk}/results/").json()
    corr = {c["metric"]: c for c in body["metric_correlation"]}
    assert corr["dice"]["n"] == 6 and corr["hd95"]["n"] == 6
    rows = unblinded_rows(reading_study)
    by_contour = {}
    for r in rows:
        by_contour.setdefault((r["case"], r["source"]), []).append(r["total"])
    xs = [sum(v) / len(v) for k, v in sorted(by_contour.items())]
    ys = [metrics[k]["dice"] for k in sorted(by_contour)]
    from scipy import stats

    assert corr["dice"]["spearman"]["r"] == pytest.approx(stats.spearmanr(xs, ys).statistic, nan_ok=True)


def test_contour_metrics_are_recomputed_when_a_mask_is_stored_again(reading_study):
    import os

    from portal.imaging import storage
    from portal.reading.contour_metrics import study_contour_metrics
    from portal.reading.models import ReadingItem

    items = {i.source_label: i for i in ReadingItem.objects.filter(study=reading_study).select_related("case")
             if i.case.label == "BR-INT-0000"}
    _give_ground_truth(items["multimodal"].case, storage.load_mask(items["multimodal"].mask_path))
    key = ("BR-INT-0000", "vision-only")
    assert study_contour_metrics(reading_study)[key]["dice"] < 1.0
    assert study_contour_metrics(reading_study)[key]["dice"] < 1.0  # second read comes from the cache
    # The cache key follows the file: a re-stored mask is measured again, never served stale.
    storage.save_mask(items["vision-only"].mask_path, storage.load_mask(items["multimodal"].mask_path))
    path = storage.absolute(items["vision-only"].mask_path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # same size, so make sure the mtime moves
    assert study_contour_metrics(reading_study)[key]["dice"] == pytest.approx(1.0)
