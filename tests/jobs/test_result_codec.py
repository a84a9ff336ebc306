"""The wire and storage format of job results (gpu_worker.client): masks as packed bits, probability maps as
8-bit levels cropped to the box of non-zero levels. Checked against the plain full-volume quantisation."""
import io

import numpy as np
import pytest

from gpu_worker.client import (MAX_RESULT_VOXELS, ResultShapeError, check_probability_npz, decode_mask_npz, decode_probability_levels,
                               decode_probability_npz, encode_mask_npz, encode_probability_npz,
                               probability_levels)


def _confidence_map(shape=(20, 64, 48), seed=0):
    """A smooth blob plus far-field values on both sides of the half-level boundary."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    d = np.sqrt(((z - 9) / 5.0) ** 2 + ((y - 30) / 12.0) ** 2 + ((x - 20) / 10.0) ** 2)
    prob = (1.0 / (1.0 + np.exp((d - 1.0) * 6.0))).astype(np.float32)
    prob[prob < 1e-3] = rng.uniform(0, 1e-3, size=int((prob < 1e-3).sum())).astype(np.float32)
    prob[2, 60, 3] = 0.5 / 255 + 1e-6  # just above half a level, far from the blob: level 1
    prob[18, 1, 45] = 0.5 / 255  # exactly half a level: rint rounds to even, level 0
    return prob


def _full_quantisation(prob):
    return np.clip(np.rint(prob * 255.0), 0, 255).astype(np.uint8)


def test_probability_levels_match_the_full_volume_quantisation_everywhere():
    prob = _confidence_map()
    data = encode_probability_npz(prob)
    levels = decode_probability_levels(data)
    assert levels.dtype == np.uint8 and levels.shape == prob.shape
    assert np.array_equal(levels, _full_quantisation(prob))
    assert levels[2, 60, 3] == 1 and levels[18, 1, 45] == 0
    assert np.abs(decode_probability_npz(data) - prob).max() <= 0.5 / 255 + 1e-6
    with np.load(io.BytesIO(data)) as npz:
        assert npz["levels"].size < prob.size  # cropped: the corners beyond the box are not stored


def test_uint8_levels_are_stored_as_they_are_and_an_empty_map_round_trips():
    levels = _full_quantisation(_confidence_map(seed=1))
    assert probability_levels(levels) is levels
    assert np.array_equal(decode_probability_levels(encode_probability_npz(levels)), levels)
    empty = np.zeros((4, 5, 6), np.float32)
    assert np.array_equal(decode_probability_levels(encode_probability_npz(empty)), np.zeros((4, 5, 6), np.uint8))


def test_the_earlier_full_volume_format_still_reads():
    prob = _confidence_map(seed=2)
    buf = io.BytesIO()
    np.savez_compressed(buf, probability_u8=_full_quantisation(prob))
    assert np.array_equal(decode_probability_levels(buf.getvalue()), _full_quantisation(prob))


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize("arrays, message", [
    (dict(shape=np.array([4, 4, 4]), box_start=np.array([2, 0, 0]), levels=np.ones((3, 4, 4), np.uint8)),
     "outside the grid"),
    (dict(shape=np.array([4, 4, 4]), box_start=np.array([-1, 0, 0]), levels=np.ones((1, 1, 1), np.uint8)),
     "outside the grid"),
    (dict(shape=np.array([4, 4, 4]), box_start=np.array([0, 0, 0]), levels=np.ones((1, 1, 1), np.float32)),
     "uint8"),
    (dict(shape=np.array([4096, 4096, 4096]), box_start=np.array([0, 0, 0]), levels=np.ones((1, 1, 1), np.uint8)),
     f"at most {MAX_RESULT_VOXELS}"),
])
@pytest.mark.parametrize("read", [decode_probability_levels, check_probability_npz])
def test_a_malformed_probability_upload_is_refused_before_anything_large_is_allocated(arrays, message, read):
    with pytest.raises(ValueError, match=message):
        read(_npz(**arrays))


def test_a_checked_upload_keeps_the_bytes_the_worker_sent():
    data = encode_probability_npz(_confidence_map())
    upload = check_probability_npz(data, shape=(20, 64, 48))
    assert upload.data == data and upload.shape == (20, 64, 48)


def test_a_result_on_another_grid_than_the_ct_is_refused_from_its_header():
    prob = _confidence_map()
    with pytest.raises(ResultShapeError, match=r"probability shape \(20, 64, 48\) differs from the CT grid"):
        decode_probability_levels(encode_probability_npz(prob), shape=(20, 64, 47))
    with pytest.raises(ResultShapeError):
        check_probability_npz(encode_probability_npz(prob), shape=(20, 64, 47))
    with pytest.raises(ResultShapeError, match="mask shape"):
        decode_mask_npz(encode_mask_npz(prob >= 0.5), shape=(20, 64, 47))
    # A header naming a huge grid is refused by the CT's shape alone, before its bits are read.
    huge = _npz(mask=np.zeros(1, np.uint8), shape=np.array([1000, 1000, 1000]))
    with pytest.raises(ResultShapeError):
        decode_mask_npz(huge, shape=(20, 64, 48))


def test_mask_round_trip_and_a_header_that_does_not_match_its_bits():
    mask = _confidence_map() >= 0.5
    assert np.array_equal(decode_mask_npz(encode_mask_npz(mask)), mask)
    with pytest.raises(ValueError, match="do not hold"):
        decode_mask_npz(_npz(mask=np.packbits(mask, axis=None), shape=np.array([2000, 2000, 400])))
    with pytest.raises(ValueError, match="positive sizes"):
        decode_mask_npz(_npz(mask=np.packbits(mask, axis=None), shape=np.array([0, 64, 48])))


def test_a_map_known_inside_a_box_encodes_as_the_full_map_would():
    from gpu_worker.client import encode_probability_box_npz

    prob = _confidence_map()
    box = (slice(1, 20), slice(10, 50), slice(5, 40))
    inside = prob[box]
    full = np.zeros_like(prob)
    full[box] = inside
    data = encode_probability_box_npz(prob.shape, box, inside)
    assert np.array_equal(decode_probability_levels(data), decode_probability_levels(encode_probability_npz(full)))
    assert check_probability_npz(data, prob.shape).shape == prob.shape
    nothing = encode_probability_box_npz(prob.shape, None, np.zeros((0, 0, 0), np.float32))
    assert not decode_probability_levels(nothing, prob.shape).any()
    with pytest.raises(ValueError, match="do not fill the box"):
        encode_probability_box_npz(prob.shape, box, inside[:-1])
