"""Training steps, whole-volume inference on fixture cases, what-if reuse, the CLI and the shipped checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from segmentation.inference import Cancelled, Segmenter
from segmentation.model import ModelConfig, SegmentationModel, read_checkpoint
from segmentation.training import TrainConfig, make_loss, prepare_case, train

from .conftest import TINY_CONFIG

SHIPPED = Path(__file__).resolve().parents[2] / "segmentation" / "checkpoints"


def _fixed_loss(model, cases):
    loss_fn = make_loss("dicece")
    model.eval()
    with torch.no_grad():
        total = 0.0
        for case in cases:
            context, label = case.variants[0]
            total += float(loss_fn(model(case.image[None], [context]), label[None]))
    model.train()
    return total / len(cases)


def test_a_few_training_steps_reduce_the_loss(tiny_cases, tmp_path):
    from segmentation.cohort import counterfactual_mask

    torch.manual_seed(0)
    model = SegmentationModel(ModelConfig(**TINY_CONFIG))
    cases = [prepare_case(c, model.config, model.net.divisor, counterfactual_mask) for c in tiny_cases]
    assert len(cases[0].variants) >= 2  # own context + counterfactuals from ctv_for
    before = _fixed_loss(model, cases)
    seen = []
    cfg = TrainConfig(epochs=2, steps_per_epoch=6, batch_size=2, lr=1e-2, slab_slices=8, counterfactual_p=0.0)
    result = train(model, cases, cases[:1], cfg, tmp_path / "m.pt", progress=seen.append)
    after = _fixed_loss(model, cases)
    assert after < before
    assert [s["step"] for s in seen] == list(range(1, 13)) and {"epoch", "loss", "eta_s"} <= set(seen[0])
    payload = read_checkpoint(tmp_path / "m.pt")
    assert payload["metrics"]["epochs_done"] == 2 and len(payload["history"]) == 2
    assert payload["checkpoint_id"] == result["checkpoint_id"]
    assert not any(k.startswith("text.lm.") for k in payload["state_dict"])


def test_resume_continues_after_the_last_epoch(tiny_cases, tmp_path):
    model = SegmentationModel(ModelConfig(text_encoder={"kind": "none"}, **TINY_CONFIG))
    cases = [prepare_case(c, model.config, model.net.divisor) for c in tiny_cases[:1]]
    cfg = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=1, slab_slices=8)
    train(model, cases, [], cfg, tmp_path / "v.pt")
    cfg.epochs = 2
    steps = []
    train(model, cases, [], cfg, tmp_path / "v.pt", resume=True, progress=steps.append)
    assert [s["step"] for s in steps] == [3, 4]
    assert len(read_checkpoint(tmp_path / "v.pt")["history"]) == 2


def test_context_statistics_refresh_every_k_steps_and_are_current_when_saved(tiny_cases, tmp_path, monkeypatch):
    from segmentation.cohort import counterfactual_mask

    torch.manual_seed(0)
    model = SegmentationModel(ModelConfig(context_norm=True, **TINY_CONFIG))
    cases = [prepare_case(c, model.config, model.net.divisor, counterfactual_mask) for c in tiny_cases[:2]]
    refreshed_at, steps = [], []
    original = model.refresh_context_statistics
    monkeypatch.setattr(model, "refresh_context_statistics",
                        lambda: (refreshed_at.append(len(steps)), original())[1])
    cfg = TrainConfig(epochs=2, steps_per_epoch=5, batch_size=1, lr=1e-2, slab_slices=8, stats_every=3)
    train(model, cases, cases[:1], cfg, tmp_path / "m.pt", progress=steps.append)
    # Once before the first step, then after global steps 3, 6, 9 and each epoch's last (5, 10); a
    # refresh after step k runs before step k is reported, so it is logged with k - 1 steps seen.
    assert [n + 1 for n in refreshed_at[1:]] == [3, 5, 6, 9, 10] and refreshed_at[0] == 0
    saved = read_checkpoint(tmp_path / "m.pt")["state_dict"]
    original()  # statistics of the final prompts: what the checkpoint must already hold
    for name in ("mean", "whiten"):
        assert torch.allclose(saved[f"net.context_norm.{name}"], getattr(model.net.context_norm, name))
    with pytest.raises(ValueError, match="stats_every"):
        train(model, cases, [], TrainConfig(epochs=1, steps_per_epoch=1, stats_every=0), tmp_path / "x.pt")


def test_inference_returns_mask_on_the_original_grid(tiny_checkpoints, tiny_cases):
    seg = Segmenter.from_checkpoint(tiny_checkpoints["mm"])
    case = tiny_cases[0]
    assert seg.uses_text and seg.cancer_type == "breast" and seg.checkpoint_id.startswith("breast-mm-")
    reports = []
    res = seg.predict(case.hu, case.grid.spacing_zyx, "breast", case.context,
                      progress=lambda p, m: reports.append(p))
    assert res.probability.shape == case.hu.shape and res.probability.dtype == np.float32
    assert res.mask.shape == case.hu.shape and res.mask.dtype == bool
    assert 0.0 <= res.probability.min() and res.probability.max() <= 1.0
    assert reports == sorted(reports) and reports[-1] == 100.0
    assert {"preprocess", "image_encoder", "decode", "total"} <= set(res.timings)
    assert res.prompt_text.endswith("side") and not res.reused_image_features


def test_what_if_reuses_image_features_and_follows_the_context(tiny_checkpoints, tiny_cases):
    seg = Segmenter.from_checkpoint(tiny_checkpoints["mm"])
    case = tiny_cases[1]
    first = seg.predict(case.hu, case.grid.spacing_zyx, "breast", case.context)
    flipped = dict(case.context, laterality="right" if case.context["laterality"] == "left" else "left")
    other = seg.what_if(case.hu, case.grid.spacing_zyx, "breast", flipped)
    assert other.reused_image_features and "preprocess" not in other.timings
    assert other.prompt_text != first.prompt_text
    assert not np.array_equal(other.probability, first.probability)
    same = seg.what_if(case.hu, case.grid.spacing_zyx, "breast", case.context)
    np.testing.assert_allclose(same.probability, first.probability, atol=1e-6)
    # clear_cache forgets the image features; with text=True the prompt embeddings too (the timing claim's
    # fresh runs), and a run after it gives the same result.
    assert seg.model.text.cache_info() == 2
    seg.clear_cache()
    assert seg.model.text.cache_info() == 2
    seg.clear_cache(text=True)
    assert seg.model.text.cache_info() == 0
    again = seg.what_if(case.hu, case.grid.spacing_zyx, "breast", case.context)
    assert not again.reused_image_features and seg.model.text.cache_info() == 1
    np.testing.assert_allclose(again.probability, first.probability, atol=1e-6)


def test_batched_windows_give_the_same_probabilities_and_reuse_features(tiny_checkpoints, tiny_cases):
    case = tiny_cases[0]
    one = Segmenter.from_checkpoint(tiny_checkpoints["mm"], window_batch=1, roi_size=(16, 16, 16))
    four = Segmenter.from_checkpoint(tiny_checkpoints["mm"], window_batch=4, roi_size=(16, 16, 16))
    a = one.predict(case.hu, case.grid.spacing_zyx, "breast", case.context)
    messages = []
    b = four.predict(case.hu, case.grid.spacing_zyx, "breast", case.context,
                     progress=lambda percent, message: messages.append(message))
    windows = [m for m in messages if m.startswith("window ")]
    total = int(windows[-1].split("/")[1])
    assert total > 4 and len(windows) == -(-total // 4)  # batches of four, the last one may be partial
    assert windows[-1] == f"window {total}/{total}"
    np.testing.assert_allclose(a.probability, b.probability, atol=1e-5)
    right = dict(case.context, laterality="right")
    c = four.what_if(case.hu, case.grid.spacing_zyx, "breast", right)
    assert c.reused_image_features and c.timings["image_encoder"] < b.timings["image_encoder"]
    np.testing.assert_allclose(c.probability, one.what_if(case.hu, case.grid.spacing_zyx, "breast", right).probability,
                               atol=1e-5)
    with pytest.raises(ValueError, match="window_batch"):
        Segmenter.from_checkpoint(tiny_checkpoints["mm"], window_batch=0)


def test_cancel_and_bad_requests_are_reported(tiny_checkpoints, tiny_cases):
    seg = Segmenter.from_checkpoint(tiny_checkpoints["mm"])
    case = tiny_cases[2]
    with pytest.raises(Cancelled):
        seg.predict(case.hu, case.grid.spacing_zyx, "breast", case.context, should_cancel=lambda: True)
    with pytest.raises(ValueError, match="context"):
        seg.predict(case.hu, case.grid.spacing_zyx, "breast", None)
    with pytest.raises(ValueError, match="cancer_type"):
        seg.predict(case.hu, case.grid.spacing_zyx, "prostate", case.context)
    vision = Segmenter.from_checkpoint(tiny_checkpoints["vision"])
    res = vision.predict(case.hu, case.grid.spacing_zyx, "breast", None)
    assert not vision.uses_text and res.mask.shape == case.hu.shape and res.prompt_text == ""


def test_run_training_streams_progress(tmp_path):
    from segmentation.train import run_training

    seen = []
    result = run_training(tmp_path / "r.pt", progress=seen.append, text="none", widths=(4, 8),
                          spacing=(18.75, 31.25, 31.25), roi=(8, 16, 16), slab=8, epochs=1, steps_per_epoch=2,
                          batch_size=1, n_train=1, n_val=0, case_shape=32, no_progress=True)
    assert [s["step"] for s in seen] == [1, 2]
    assert read_checkpoint(tmp_path / "r.pt")["checkpoint_id"] == result["checkpoint_id"]


def test_cli_trains_and_writes_a_checkpoint(tmp_path, capsys):
    from segmentation.train import main

    out = tmp_path / "cli.pt"
    main(["--out", str(out), "--text", "numeric", "--widths", "4,8", "--spacing", "18.75,31.25,31.25",
          "--roi", "8,16,16", "--slab", "8", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "1",
          "--n-train", "2", "--n-val", "1", "--case-shape", "32", "--data-fraction", "0.5", "--no-progress"])
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    payload = read_checkpoint(out)
    assert final["checkpoint_id"] == payload["checkpoint_id"]
    assert payload["cohort"]["n_train"] == 1 and payload["cohort"]["data_fraction"] == 0.5
    assert payload["text_encoder"]["kind"] == "numeric"


def test_decisive_voxels_are_where_the_counterfactual_target_differs(tiny_cases):
    from segmentation.cohort import counterfactual_mask
    from segmentation.training import SampleOptions, _sample

    model = SegmentationModel(ModelConfig(**TINY_CONFIG))
    case = prepare_case(tiny_cases[0], model.config, model.net.divisor, counterfactual_mask)
    own = case.variants[0][1] > 0.5
    for (context, label), decisive in zip(case.variants[1:], case.decisive[1:]):
        assert torch.equal(decisive, (label > 0.5) ^ own)
    flip = next(i for i, (c, _) in enumerate(case.variants) if c["laterality"] != case.variants[0][0]["laterality"])
    assert case.decisive[flip].sum() > 0  # the other breast differs
    assert torch.equal(case.decisive[0], torch.stack(case.decisive[1:]).any(0))
    rng = np.random.default_rng(0)
    img, lab, context, decisive, _ = _sample(case, rng, SampleOptions(8, counterfactual_p=1.0))
    assert decisive.shape == lab.shape == img.shape and decisive.dtype == torch.bool
    # An omitted component leaves nothing to contrast.
    _, _, context, decisive, _ = _sample(case, np.random.default_rng(1), SampleOptions(8, omit_p=1.0))
    assert context in case.omissions and not decisive.any()


def test_in_plane_translation_moves_image_label_and_decisive_voxels_together(tiny_cases):
    from segmentation.cohort import counterfactual_mask
    from segmentation.training import SampleOptions, _sample, translate_in_plane

    volume = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)
    moved = translate_in_plane(volume, 1, -2)
    assert torch.equal(moved[0, :, 1:, :2], volume[0, :, :2, 2:])
    assert not moved[0, :, 0].any() and not moved[0, :, :, 2:].any()  # filled with air (0), no wrap-around
    assert not translate_in_plane(volume, 3, 0).any()
    model = SegmentationModel(ModelConfig(**TINY_CONFIG))
    case = prepare_case(tiny_cases[0], model.config, model.net.divisor, counterfactual_mask)
    plain = _sample(case, np.random.default_rng(5), SampleOptions(8, counterfactual_p=1.0))
    shifted = _sample(case, np.random.default_rng(5), SampleOptions(8, counterfactual_p=1.0, max_shift=3))
    assert plain[2] == shifted[2]  # same draw of context
    found = [(a, b) for a in range(-3, 4) for b in range(-3, 4)
             if torch.equal(translate_in_plane(plain[1], a, b), shifted[1])
             and torch.equal(translate_in_plane(plain[3], a, b), shifted[3])]
    assert found and shifted[1].sum() <= plain[1].sum()


def test_stage_coarsening_keeps_the_main_stage_and_the_breast_ctv():
    from fixtures.rules import breast_ctv_regions
    from segmentation.training import coarsen_stages

    context = {"laterality": "left", "surgery": "mastectomy", "cT": "T1a", "cN": "N1", "pT": "T1mi", "pN": "N1mi"}
    coarse = coarsen_stages("breast", context)
    assert (coarse["cT"], coarse["pT"], coarse["cN"], coarse["pN"]) == ("T1", "T1", "N1", "N1")
    assert context["cT"] == "T1a"  # the input is not changed
    for stage in ("Tis", "T0", "TX", "N0", "NX", "T2"):
        assert coarsen_stages("breast", {"cT": stage})["cT"] == stage
    for t, n in (("T4b", "N3a"), ("T1c", "N2a"), ("T2", "N1mi"), ("T3", "N0")):
        full = {"laterality": "right", "surgery": "bcs", "cT": t, "cN": n}
        assert breast_ctv_regions(coarsen_stages("breast", full)) == breast_ctv_regions(full)
    assert coarsen_stages("prostate", {"t_stage": "T2b"}) == {"t_stage": "T2b"}  # NCCN risk reads T2b


def _text_says_nodes(context: dict) -> bool:
    """What the rendered prompt tells the model about the nodes: a positive N or a T3/T4 in the text."""
    from clinical.prompt import render_prompt

    words = render_prompt("breast", context).split(", ")
    return any(w.startswith("N") and w not in ("N0", "NX") for w in words) or \
        any(w[1:].startswith(("T3", "T4")) for w in words if w[:1] in "cp")


BREAST_STAGE_MIX = [
    # own context, including the neoadjuvant cN1 -> ypN0 case whose nodes stay in the CTV
    {"cT": "T2", "cN": "N1", "pT": "T2", "pN": "N1a"},
    {"cT": "T1c", "cN": "N2a", "pT": "T0", "pN": "N0", "neoadjuvant_chemo": True},
    {"cT": "T3", "cN": "N0", "pT": "T3", "pN": "N0"},
    {"cT": "T1b", "cN": "N0", "pT": "T1b", "pN": "N0"},
    {"cT": "T4b", "cN": "N1"},
    {"cT": "T2", "cN": "N0"},
    {"cT": "T2", "pT": "T3", "pN": "N0"},
]


@pytest.mark.parametrize("every_t_stage", [False, True])
@pytest.mark.parametrize("stages", BREAST_STAGE_MIX)
def test_prompt_and_every_counterfactual_agree_with_the_ctv_rule(stages, every_t_stage):
    """The text never contradicts the target: before the fix, the N0 counterfactual of a cN1 / pN1a case
    changed only pN, so the prompt said "N0" while the rule kept the nodes (6 of 12 node-positive
    training cases)."""
    from fixtures.rules import breast_nodes_indicated
    from segmentation.training import _counterfactual_contexts

    own = dict(stages, laterality="left", surgery="bcs")
    assert _text_says_nodes(own) == breast_nodes_indicated(own)
    variants = _counterfactual_contexts("breast", own, every_t_stage)
    for variant in variants:
        assert _text_says_nodes(variant) == breast_nodes_indicated(variant), variant
    # the N variant always crosses the N0 / N1 line, and a T variant exists exactly where T alone decides
    n_variant = next(v for v in variants if v.get("cN") != own.get("cN") or v.get("pN") != own.get("pN"))
    assert n_variant["cN"] in ("N0", "N1")
    t_variants = [v for v in variants if (v.get("cT"), v.get("pT")) != (own.get("cT"), own.get("pT"))]
    t_decides = own.get("cN") in (None, "N0") and own.get("pN") in (None, "N0")
    assert bool(t_variants) == t_decides
    if t_decides:  # one counterfactual per stage across the T3 line: "T4b" too, not only "T3"
        advanced = breast_nodes_indicated(own)
        expected = {False: ({"T3"}, {"T2"}), True: ({"T3", "T4b"}, {"T1c", "T2"})}[every_t_stage][advanced]
        assert {v["cT"] for v in t_variants} == expected and len(t_variants) == len(expected)


@pytest.mark.parametrize("context", [
    {"t_stage": "T2b", "psa": 3.9, "gleason_primary": 3, "gleason_secondary": 3, "age": 78, "sv_invasion": False,
     "prostatectomy": True, "rt_aim": "adjuvant"},
    {"t_stage": "T3b", "psa": 46.6, "gleason_primary": 5, "gleason_secondary": 4, "age": 84, "sv_invasion": True,
     "prostatectomy": False, "rt_aim": "definitive"},
    {"t_stage": "T3a", "psa": 13.1, "gleason_primary": 4, "gleason_secondary": 3, "age": 53, "sv_invasion": False,
     "prostatectomy": False, "rt_aim": "definitive"},
])
def test_prostate_counterfactuals_are_valid_and_each_changes_the_ctv(context):
    from clinical import render_prompt, validate_context
    from fixtures.rules import prostate_ctv_regions
    from segmentation.training import _counterfactual_contexts

    own = validate_context("prostate", context)
    variants = _counterfactual_contexts("prostate", own)
    assert len(variants) == 3  # surgery, seminal vesicles, pelvic-node rule
    own_regions = set(prostate_ctv_regions(own))
    changed = []
    for variant in variants:
        variant = validate_context("prostate", variant)  # a contradictory context would be refused here
        assert render_prompt("prostate", variant) != render_prompt("prostate", own)
        changed.append(set(prostate_ctv_regions(variant)) ^ own_regions)
    assert changed[0] == {"prostate", "prostate_bed"}
    assert "seminal_vesicles" in changed[1]
    assert changed[2] == {"pelvic_nodes"}


def test_context_contrast_loss_averages_over_the_decisive_voxels_of_each_sample():
    from segmentation.training import context_contrast_loss

    logits = torch.zeros(2, 1, 2, 2, 2)
    labels = torch.ones(2, 1, 2, 2, 2)
    decisive = torch.zeros(2, 1, 2, 2, 2, dtype=torch.bool)
    assert float(context_contrast_loss(logits, labels, decisive)) == 0.0
    decisive[0, 0, 0, 0, 0] = True  # one voxel in sample 0, wrong with p = 0.5: BCE = ln 2
    logits[0, 0, 1] = -20.0  # voxels outside the decisive set do not count
    assert abs(float(context_contrast_loss(logits, labels, decisive)) - np.log(2)) < 1e-6
    decisive[1] = True
    logits[1] = 20.0  # sample 1 right everywhere: the mean over samples halves
    assert abs(float(context_contrast_loss(logits, labels, decisive)) - np.log(2) / 2) < 1e-6


def test_neutral_edits_keep_the_ground_truth_ctv_and_change_the_prompt(tiny_cases):
    from segmentation.cohort import counterfactual_mask
    from segmentation.training import SampleOptions, _sample, neutral_context_edits

    model = SegmentationModel(ModelConfig(**TINY_CONFIG))
    render = model.text.render
    for raw in tiny_cases:
        case = prepare_case(raw, model.config, model.net.divisor, counterfactual_mask)
        assert len(case.neutral) == len(case.variants)
        for (context, _), edits in zip(case.variants, case.neutral):
            target = counterfactual_mask(raw, context)
            for edit in edits:
                assert np.array_equal(counterfactual_mask(raw, edit), target)
            # every candidate that keeps the target is kept (once per distinct context)
            candidates = [e for e in neutral_context_edits("breast", context)
                          if np.array_equal(counterfactual_mask(raw, e), target)]
            assert {render("breast", e) for e in edits} == {render("breast", e) for e in candidates}
            assert all(render("breast", e) != render("breast", context) for e in edits)
    from fixtures.rules import breast_ctv_regions

    def kept(context):
        return [e for e in neutral_context_edits("breast", context)
                if breast_ctv_regions(e) == breast_ctv_regions(context)]

    # T3 -> T2 with N0 takes the nodes away, so it is not neutral; T3 -> T4b is, and so is any positive N
    # stage, since T3 already brings the nodes in.
    n0_t3 = {"laterality": "left", "surgery": "bcs", "cT": "T3", "cN": "N0"}
    assert {e["cT"] for e in kept(n0_t3) if e["cN"] == "N0"} == {"T4b"}
    assert {e["cN"] for e in kept(n0_t3) if e["cT"] == "T3"} == {"N1mi", "N1", "N1a", "N2a", "N3a"}
    # N1a -> N1 (the counterfactuals' string) is neutral, N1a -> N0 is not; with T1c, N0 has no N edit.
    n1a = {"laterality": "right", "surgery": "mastectomy", "cT": "T1c", "cN": "N1", "pN": "N1a"}
    n_edits = {e["pN"] for e in kept(n1a) if e.get("cT") == "T1c"}
    assert n_edits == {"N1mi", "N1", "N2a", "N3a"}
    assert all(e["cN"] == e["pN"] for e in kept(n1a) if e.get("pN") != "N1a")
    assert {e["cN"] for e in kept(dict(n1a, cN="N0", pN="N0"))} == {"N0"}
    # Prostate: PSA x 0.8 / x 1.25 and age -3 / +3, kept where they stay on their side of the rules.
    from fixtures.rules import prostate_ctv_regions

    def kept_prostate(context):
        return [e for e in neutral_context_edits("prostate", context)
                if prostate_ctv_regions(e) == prostate_ctv_regions(context)]

    low = {"t_stage": "T1c", "psa": 6.0, "gleason_primary": 3, "gleason_secondary": 3, "age": 66,
           "prostatectomy": False}
    assert [(e["psa"], e["age"]) for e in kept_prostate(low)] == [(4.8, 66), (7.5, 66), (6.0, 63), (6.0, 69)]
    near_line = dict(low, psa=18.0)  # x 1.25 = 22.5 makes it NCCN high risk: the pelvic nodes come in
    assert [e["psa"] for e in kept_prostate(near_line) if e["age"] == 66] == [14.4]
    high_78 = dict(low, psa=30.0)  # high risk at 78: 81 drops the nodes (the age rule), 75 does not
    assert [e["age"] for e in kept_prostate(dict(high_78, age=78)) if e["psa"] == 30.0] == [75]
    assert neutral_context_edits("prostate", {"t_stage": "T2a"}) == []  # nothing to nudge
    assert all(e["age"] <= 120 for e in neutral_context_edits("prostate", dict(low, age=119)))
    # twins are drawn only when asked for, and always from the sample's own variant
    case = prepare_case(tiny_cases[0], model.config, model.net.divisor, counterfactual_mask)
    assert _sample(case, np.random.default_rng(0), SampleOptions(8))[4] is None
    for seed in range(20):
        _, _, context, _, twin = _sample(case, np.random.default_rng(seed), SampleOptions(8, counterfactual_p=0.5,
                                                                                          neutral_twin=True))
        variant = next(i for i, (c, _) in enumerate(case.variants) if c == context)
        assert twin is None if not case.neutral[variant] else twin in case.neutral[variant]
    # neutral_p = 1: every sample with an edit is trained under one, same label; its twin is the context itself
    edited = 0
    whole = case.image.shape[1]  # a slab of the whole volume: the label is the variant's whole target
    for seed in range(20):
        _, label, context, _, twin = _sample(case, np.random.default_rng(seed),
                                             SampleOptions(whole, counterfactual_p=0.5, neutral_twin=True, neutral_p=1.0))
        variant = next((i for i, (c, _) in enumerate(case.variants) if c == twin), None)
        if variant is None:  # a variant without neutral edits: trained under its own context, no twin
            assert twin is None and any(context == c for c, _ in case.variants)
            continue
        edited += 1
        assert context in case.neutral[variant] and context != twin
        assert torch.equal(label, case.variants[variant][1])  # the same target
    assert edited > 0


def test_counterfactual_omissions_keep_the_changed_component_and_the_counterfactual_target(tiny_cases):
    from segmentation.cohort import counterfactual_mask
    from segmentation.training import SampleOptions, _sample, counterfactual_omissions

    own = {"laterality": "left", "surgery": "bcs", "cT": "T1c", "cN": "N0", "pN": "N0"}
    flipped = dict(own, laterality="right")
    dropped = counterfactual_omissions("breast", own, flipped)
    assert all(c["laterality"] == "right" for c in dropped)  # the changed component is never the one left out
    assert sorted(tuple(sorted(set(flipped) - set(c))) for c in dropped) == [("cN", "pN"), ("cT",), ("surgery",)]
    assert counterfactual_omissions("prostate", {"t_stage": "T2a"}, {"t_stage": "T2a"}) == []

    model = SegmentationModel(ModelConfig(**TINY_CONFIG))
    case = prepare_case(tiny_cases[0], model.config, model.net.divisor, counterfactual_mask)
    options = SampleOptions(8, counterfactual_p=1.0, omit_p=1.0, omit_in_counterfactuals=True)
    labels = {tuple(sorted(c.items())): lab for c, lab in case.variants}
    seen = 0
    for seed in range(12):
        img, lab, context, dec, twin = _sample(case, np.random.default_rng(seed), options)
        # the sample is a counterfactual with one unchanged component left out, scored on its own target
        source = next((c for c, _ in case.variants[1:] if context in counterfactual_omissions("breast", case.variants[0][0], c)), None)
        assert source is not None and twin is None
        full = labels[tuple(sorted(source.items()))]
        assert lab.shape[1] == 8 and float(lab.sum()) <= float(full.sum())
        seen += bool(dec.any())
    assert seen  # the contrast term still applies to such samples
    # off by default: counterfactual samples keep their whole context
    _, _, context, _, _ = _sample(case, np.random.default_rng(0), SampleOptions(8, counterfactual_p=1.0, omit_p=1.0))
    assert any(context == c for c, _ in case.variants[1:])


def test_context_consistency_loss_is_zero_when_the_maps_agree_and_one_when_disjoint():
    from segmentation.training import context_consistency_loss

    a = torch.full((2, 1, 2, 2, 2), -20.0)
    a[:, :, 0] = 20.0
    assert float(context_consistency_loss(a, a.clone())) < 1e-12
    disjoint = torch.full_like(a, -20.0)
    disjoint[:, :, 1] = 20.0
    assert abs(float(context_consistency_loss(a, disjoint)) - 1.0) < 1e-6
    b = a.clone().requires_grad_(True)
    loss = context_consistency_loss(a + 0.5, b)
    loss.backward()
    assert float(loss.detach()) > 0 and b.grad.abs().sum() > 0


def test_training_with_the_consistency_term_decodes_twins_and_runs(tiny_cases, tmp_path):
    from segmentation.cohort import counterfactual_mask

    torch.manual_seed(0)
    model = SegmentationModel(ModelConfig(**TINY_CONFIG))
    cases = [prepare_case(c, model.config, model.net.divisor, counterfactual_mask) for c in tiny_cases]
    assert any(edits for case in cases for edits in case.neutral)
    calls = []
    decode = model.net.decode
    model.net.decode = lambda feats, tokens: calls.append(feats[0].shape[0]) or decode(feats, tokens)
    cfg = TrainConfig(epochs=1, steps_per_epoch=3, batch_size=2, lr=1e-3, slab_slices=8, counterfactual_p=0.5,
                      consistency_weight=1.0)
    result = train(model, cases, [], cfg, tmp_path / "c.pt")
    assert np.isfinite(result["history"][-1]["train_loss"])
    assert len(calls) > 3  # at least one step decoded a twin beside its batch
    assert read_checkpoint(tmp_path / "c.pt")["extra"]["train_config"]["consistency_weight"] == 1.0


def test_cli_fine_tunes_a_finished_checkpoint_with_the_contrast_term(tmp_path, capsys):
    from segmentation.train import main

    base = ["--text", "numeric", "--widths", "4,8", "--spacing", "18.75,31.25,31.25", "--roi", "8,16,16",
            "--slab", "8", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2", "--n-train", "2",
            "--n-val", "1", "--case-shape", "32", "--no-progress"]
    main(["--out", str(tmp_path / "a.pt"), *base])
    first = read_checkpoint(tmp_path / "a.pt")
    main(["--out", str(tmp_path / "b.pt"), *base, "--finetune-from", str(tmp_path / "a.pt"),
          "--contrast-weight", "1.0", "--lr", "0", "--every-t-counterfactual"])
    second = read_checkpoint(tmp_path / "b.pt")
    assert second["cohort"]["finetuned_from"]["checkpoint_id"] == first["checkpoint_id"]
    assert second["extra"]["train_config"]["contrast_weight"] == 1.0
    # the checkpoint records which T counterfactuals its training saw
    assert first["extra"]["train_config"]["every_t_counterfactual"] is False
    assert second["extra"]["train_config"]["every_t_counterfactual"] is True
    # lr 0: the weights are the first checkpoint's, so fine-tuning really started from them.
    for key, value in first["state_dict"].items():
        if "context_norm" not in key:
            assert torch.equal(value, second["state_dict"][key]), key
    with pytest.raises(SystemExit, match="widths"):
        main(["--out", str(tmp_path / "c.pt"), *[("4,8,16" if v == "4,8" else v) for v in base],
              "--finetune-from", str(tmp_path / "a.pt")])
    capsys.readouterr()


def _body_midline_column(hu: np.ndarray) -> float:
    body = hu > -400
    return float(np.nonzero(body)[2].mean())


@pytest.mark.skipif(not (SHIPPED / "breast_multimodal.pt").exists(), reason="shipped checkpoint not trained yet")
def test_shipped_multimodal_checkpoint_follows_a_laterality_flip():
    from segmentation.cohort import generate_cases

    seg = Segmenter.from_checkpoint(SHIPPED / "breast_multimodal.pt")
    shape = read_checkpoint(SHIPPED / "breast_multimodal.pt")["cohort"].get("case_shape", 128)
    cases = [c for c in generate_cases("breast", "internal", "test", 4, shape=shape)
             if c.context.get("laterality") in ("left", "right")][:2]
    for case in cases:
        mid = _body_midline_column(case.hu)
        for side in ("left", "right"):
            res = seg.what_if(case.hu, case.grid.spacing_zyx, "breast", dict(case.context, laterality=side))
            cols = np.nonzero(res.mask)[2]
            assert len(cols) > 0, f"{case.case_id}: empty prediction for {side}"
            # Column index increases towards patient left (LPS, HFS).
            on_side = (cols > mid).mean() if side == "left" else (cols < mid).mean()
            assert on_side >= 0.9, f"{case.case_id} {side}: only {on_side:.0%} of the volume on that side"


def test_a_result_held_as_its_box_is_the_dense_result_outside_negligible_voxels():
    """The shipped checkpoint on a 256 x 256 CT: the box of non-negligible voxels is computed, everything else is
    0; with ``negligible_probability=0`` the same CT maps the whole grid back densely."""
    from segmentation.cohort import generate_cases

    case = generate_cases("breast", "internal", "test", 1, shape=256)[0]
    boxed = Segmenter.from_checkpoint(SHIPPED / "breast_multimodal.pt")
    dense = Segmenter.from_checkpoint(SHIPPED / "breast_multimodal.pt", negligible_probability=0.0)
    a = boxed.predict(case.hu, case.grid.spacing_zyx, "breast", case.context)
    b = dense.predict(case.hu, case.grid.spacing_zyx, "breast", case.context)
    box = a.probability_box
    assert box is not None and a.box_probability.size < 0.5 * case.hu.size  # the boxed path ran
    assert a.box_probability.shape == a.box_mask.shape == tuple(s.stop - s.start for s in box)
    np.testing.assert_allclose(a.probability[box], b.probability[box], atol=1e-6, rtol=0)
    outside = b.probability.copy()
    outside[box] = 0
    assert outside.max() <= boxed.negligible_probability
    np.testing.assert_array_equal(a.mask, b.mask)
    in_box = np.zeros(case.hu.shape, bool)
    in_box[box] = True
    assert a.mask.any() and not a.mask[~in_box].any()
    with pytest.raises(ValueError, match="negligible_probability"):
        Segmenter.from_checkpoint(SHIPPED / "breast_multimodal.pt", negligible_probability=0.5)


@pytest.mark.skipif(not (SHIPPED / "prostate_multimodal.pt").exists(), reason="shipped checkpoint not trained yet")
def test_shipped_prostate_checkpoint_follows_surgery_and_the_pelvic_node_rule():
    from fixtures.rules import prostate_nodes_indicated
    from segmentation.cohort import generate_cases

    seg = Segmenter.from_checkpoint(SHIPPED / "prostate_multimodal.pt")

    def coverage(mask, region):
        return float((mask & region).sum() / max(1, region.sum()))

    bed_gains, node_changes = [], []
    for case in generate_cases("prostate", "internal", "test", 8, shape=128):
        ctx, sp = case.context, case.grid.spacing_zyx
        own = seg.predict(case.hu, sp, "prostate", ctx).mask
        if not ctx.get("prostatectomy"):
            bed = case.regions["prostate_bed"] & ~case.regions["prostate"]
            post = seg.what_if(case.hu, sp, "prostate", dict(ctx, prostatectomy=True, rt_aim="salvage")).mask
            bed_gains.append(coverage(post, bed) - coverage(own, bed))
        # PSA 25 makes a case high risk; at 82 a high-risk case is treated without the pelvic nodes.
        for other in (dict(ctx, psa=25.0), dict(ctx, age=82)):
            if prostate_nodes_indicated(other) != prostate_nodes_indicated(ctx):
                nodes = case.regions["pelvic_nodes"]
                change = coverage(seg.what_if(case.hu, sp, "prostate", other).mask, nodes) - coverage(own, nodes)
                node_changes.append(change if prostate_nodes_indicated(other) else -change)
                break
    assert len(bed_gains) >= 3 and len(node_changes) >= 3
    assert np.mean(bed_gains) >= 0.3, bed_gains
    assert np.mean(node_changes) >= 0.3, node_changes


def test_manage_py_train_model_forwards_to_the_cli(tmp_path):
    from io import StringIO

    from django.core.management import call_command

    out, buf = tmp_path / "cmd.pt", StringIO()
    call_command("train_model", "--", "--out", str(out), "--text", "none", "--widths", "4,8",
                 "--spacing", "18.75,31.25,31.25", "--roi", "8,16,16", "--slab", "8", "--epochs", "1",
                 "--steps-per-epoch", "1", "--batch-size", "1", "--n-train", "1", "--n-val", "0",
                 "--case-shape", "32", "--no-progress", stdout=buf)
    assert read_checkpoint(out)["text_encoder"] == {"kind": "none"}
    assert "checkpoint_id" in buf.getvalue()


def _conv_ops(fn) -> set:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages() if "conv" in e.key}


def test_onednn_conv3d_runs_a_batch_of_one_through_onednn_and_matches_pytorch():
    import torch
    from torch import nn

    from segmentation.networks.cpu_convolution import OneDNNConv3d, onednn_available, prefer_onednn

    if not onednn_available():
        pytest.skip("this PyTorch build has no oneDNN (mkldnn) backend")
    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv3d(8, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 4, 3, stride=2, padding=1))
    reference = nn.Sequential(*[nn.Conv3d(8, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 4, 3, stride=2, padding=1)])
    reference.load_state_dict(block.state_dict())
    keys = list(block.state_dict())
    prefer_onednn(block)
    assert [type(m) for m in block if isinstance(m, nn.Conv3d)] == [OneDNNConv3d, OneDNNConv3d]
    assert list(block.state_dict()) == keys
    x = torch.randn(1, 8, 32, 64, 64)  # 1 x 8 x 32 x 64 = 16384 < 20480: PyTorch itself would go im2col
    with torch.no_grad():
        assert "aten::slow_conv3d_forward" in _conv_ops(lambda: reference(x))
        ops = _conv_ops(lambda: block(x))
        assert "aten::mkldnn_convolution" in ops and "aten::slow_conv3d_forward" not in ops
        torch.testing.assert_close(block(x), reference(x), atol=1e-4, rtol=1e-4)
    # With gradients on (training) the layer is PyTorch's own: same values, gradients reach the weights.
    out = block(x[:, :, :8, :16, :16])
    out.sum().backward()
    assert block[0].weight.grad is not None and torch.isfinite(block[0].weight.grad).all()


def test_onednn_conv3d_runs_a_pointwise_convolution_as_a_matrix_product():
    """oneDNN is slow for 1 x 1 x 1 convolutions of a few channels (the output head: 3-8 ms per window), so
    those run as a product over the channel axis; strided pointwise convolutions stay on oneDNN."""
    import torch
    from torch import nn

    from segmentation.networks.cpu_convolution import onednn_available, prefer_onednn

    torch.manual_seed(0)
    for conv, reference in [(nn.Conv3d(4, 1, 1), nn.Conv3d(4, 1, 1)), (nn.Conv3d(3, 5, 1, bias=False), nn.Conv3d(3, 5, 1, bias=False))]:
        reference.load_state_dict(conv.state_dict())
        prefer_onednn(conv)
        for batch in (1, 3):
            x = torch.randn(batch, conv.in_channels, 6, 10, 12)
            with torch.no_grad():
                out = conv(x)
                ops = _conv_ops(lambda: conv(x))
                torch.testing.assert_close(out, reference(x), atol=1e-5, rtol=1e-5)
            assert out.shape == (batch, conv.out_channels, 6, 10, 12) and out.is_contiguous()
            assert not any("mkldnn" in op or "slow_conv3d" in op for op in ops), ops
    strided = prefer_onednn(nn.Conv3d(4, 8, 1, stride=2))
    if onednn_available():
        with torch.no_grad():
            assert "aten::mkldnn_convolution" in _conv_ops(lambda: strided(torch.randn(1, 4, 8, 8, 8)))
    # Gradients on: PyTorch's own convolution, and the gradient reaches the weight.
    conv = prefer_onednn(nn.Conv3d(4, 1, 1))
    conv(torch.randn(1, 4, 4, 4, 4)).sum().backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()


def test_segmenter_with_onednn_gives_the_probabilities_of_pytorchs_dispatch(tiny_checkpoints, tiny_cases):
    from segmentation.networks.cpu_convolution import OneDNNConv3d

    case = tiny_cases[1]
    native = Segmenter.from_checkpoint(tiny_checkpoints["mm"], onednn=False, window_batch=1)
    fast = Segmenter.from_checkpoint(tiny_checkpoints["mm"], window_batch=1)
    assert not any(isinstance(m, OneDNNConv3d) for m in native.model.modules())
    assert any(isinstance(m, OneDNNConv3d) for m in fast.model.modules())
    a = native.predict(case.hu, case.grid.spacing_zyx, "breast", case.context)
    b = fast.predict(case.hu, case.grid.spacing_zyx, "breast", case.context)
    np.testing.assert_allclose(a.probability, b.probability, atol=1e-5)
    assert (a.mask == b.mask).mean() > 0.9999
