import numpy as np
import pytest

from kspacify.preprocess import Prepared, Preprocessing, fitted_shape, normalization_scale, resize


def test_normalization_is_one_scale_per_volume_and_robust_to_hot_pixels():
    rng = np.random.default_rng(0)
    volume = rng.uniform(0, 100, size=(4, 64, 64)).astype(np.float32)
    volume[1] *= 0.5  # a darker slice must stay darker
    volume[0, 0, 0] = 1e6  # one hot pixel
    prepared = Prepared(volume, (1.0, 1.0), Preprocessing(size=64))
    magnitude, scale = prepared.slab(), prepared.scale
    assert scale < 200  # the hot pixel did not set the scale
    assert magnitude[1].mean() == pytest.approx(0.5 * magnitude[2].mean(), rel=0.05)
    assert np.percentile(magnitude, 99.5) == pytest.approx(1.0, rel=0.02)


def test_empty_volume_does_not_divide_by_zero():
    assert normalization_scale(np.zeros((2, 8, 8), np.float32), 99.5) == 1.0


def test_pad_keeps_field_of_view_and_crop_fills_matrix():
    assert fitted_shape((320, 160), (1.0, 1.0), 256, "pad") == (256, 128)
    assert fitted_shape((320, 160), (1.0, 1.0), 256, "crop") == (512, 256)
    # anisotropic pixels: 100 rows of 2 mm = 200 mm, 200 cols of 1 mm = 200 mm -> square
    assert fitted_shape((100, 200), (2.0, 1.0), 256, "pad") == (256, 256)


def test_pad_puts_zeros_outside_and_crop_none():
    volume = np.ones((1, 320, 160), np.float32)
    padded, spacing = resize(volume, (1.0, 1.0), 256, "pad")
    assert padded.shape == (1, 256, 256)
    assert spacing == pytest.approx(1.25)
    assert padded[0, :, :60].max() == 0 and padded[0, :, -60:].max() == 0
    assert padded[0, 128, 128] == pytest.approx(1.0, abs=1e-3)
    cropped, _ = resize(volume, (1.0, 1.0), 256, "crop")
    assert cropped.min() > 0.99


def test_downsampling_is_anti_aliased():
    # a pixel-level checkerboard is pure Nyquist energy: a good resize averages it out
    checker = (np.indices((512, 512)).sum(axis=0) % 2).astype(np.float32)[None]
    small, _ = resize(checker, (1.0, 1.0), 256, "pad")
    assert small[0, 20:-20, 20:-20].std() < 0.05
    assert small[0, 20:-20, 20:-20].mean() == pytest.approx(0.5, abs=0.05)


def test_same_size_input_is_untouched_apart_from_scale():
    rng = np.random.default_rng(1)
    volume = rng.uniform(0, 10, size=(2, 256, 256)).astype(np.float32)
    prepared = Prepared(volume, (0.8, 0.8), Preprocessing())
    magnitude, scale, spacing = prepared.slab(), prepared.scale, prepared.pixel_spacing
    np.testing.assert_allclose(magnitude * scale, volume, rtol=1e-5)
    assert spacing == pytest.approx(0.8)


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError):
        Preprocessing(fit="stretch")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Preprocessing(percentile=0)
