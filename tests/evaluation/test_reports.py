"""Report builders: figures hold the row data, summary numbers reproduce from rows, exports round-trip."""

import io

import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook

from evaluation.reports import (ReportInputError, box_plot_by_site_model, data_efficiency_curve, figure_html,
                                figure_png, omission_bar_chart, per_patient_bars, summary_table, to_csv_bytes,
                                to_xlsx_bytes)
from evaluation.stats import bootstrap_ci_mean, paired_tests


@pytest.fixture
def rows():
    rng = np.random.default_rng(0)
    out = []
    for site, shift in (("internal", 0.0), ("external1", -0.05)):
        for case in range(10):
            base = 0.75 + shift + 0.01 * case
            for model, gain in (("vision", 0.0), ("multimodal", 0.04)):
                dice = base + gain + rng.normal(0, 0.005)
                out.append({"case": f"{site}-{case:02d}", "site": site, "model": model, "dice": dice,
                            "iou": dice / (2 - dice), "hd95_mm": 12 - 20 * gain + case * 0.1,
                            "flags": [] if case else ["empty_pred"]})
    return out


def test_summary_table_reproduces_from_rows(rows):
    table = summary_table(rows, metrics=("dice", "hd95_mm"), reference_model="vision")
    line = table[(table.site == "external1") & (table.model == "multimodal")].iloc[0]
    values = [r["dice"] for r in rows if r["site"] == "external1" and r["model"] == "multimodal"]
    assert line["dice_mean"] == pytest.approx(np.mean(values))
    assert line["dice_ci_low"] == pytest.approx(bootstrap_ci_mean(values)["ci_low"])
    reference = [r["dice"] for r in rows if r["site"] == "external1" and r["model"] == "vision"]
    assert line["dice_p_ttest"] == pytest.approx(paired_tests(values, reference)["t_pvalue"])
    assert line["dice_p_ttest"] < 0.001
    overall = table[(table.site == "overall") & (table.model == "vision")].iloc[0]
    assert overall["n_cases"] == 20 and pd.isna(overall.get("dice_p_ttest"))
    assert "(" in line["dice"]


def test_figures_carry_the_rows(rows):
    box = box_plot_by_site_model(rows)
    assert {t.name for t in box.data} == {"vision", "multimodal"}
    assert sum(len(t.y) for t in box.data) == len(rows)
    bars = per_patient_bars([r for r in rows if r["site"] == "internal"])
    assert len(bars.data) == 6  # 2 models x 3 metrics
    efficiency_rows = [dict(r, train_fraction=f, dice=r["dice"] - (1 - f) * 0.2)
                       for r in rows if r["model"] == "multimodal" for f in (0.2, 0.6, 1.0)]
    curve = data_efficiency_curve(efficiency_rows)
    lines = [t for t in curve.data if t.mode == "lines+markers"]
    assert [list(t.x) for t in lines][0] == [20.0, 60.0, 100.0]
    assert lines[0].y[0] < lines[0].y[-1]
    omission_rows = [dict(r, condition=c) for r in rows for c in ("full", "no laterality")]
    omission = omission_bar_chart(omission_rows)
    assert list(omission.data[0].x) == ["full", "no laterality"]
    with pytest.raises(ReportInputError, match="train_fraction"):
        data_efficiency_curve(rows)


def test_exports(rows):
    table = summary_table(rows, metrics=("dice",), reference_model="vision")
    csv = to_csv_bytes(table).decode()
    assert csv.splitlines()[0].startswith("site,model,n_cases")
    workbook = load_workbook(io.BytesIO(to_xlsx_bytes({"summary": table, "cases": rows})))
    assert workbook.sheetnames == ["summary", "cases"]
    cases = workbook["cases"]
    assert cases.max_row == len(rows) + 1
    html = figure_html(box_plot_by_site_model(rows))
    assert "<html>" in html and "plotly" in html.lower()


@pytest.mark.slow
def test_png_export_through_kaleido(rows):
    png = figure_png(box_plot_by_site_model(rows), width=400, height=300)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
