import numpy as np
import pytest
import torch

from kspacify.kspace import fft2c, ifft2c, to_kspace


def reference_fft2c(x):
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def reference_ifft2c(x):
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


@pytest.mark.parametrize("shape", [(2, 256, 256), (8, 6), (10, 12), (7, 9), (6, 5), (3, 4, 10)])
def test_numpy_transforms_match_the_shift_definition(shape):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex128)
    np.testing.assert_allclose(fft2c(x), reference_fft2c(x), atol=1e-10)
    np.testing.assert_allclose(ifft2c(x), reference_ifft2c(x), atol=1e-10)
    np.testing.assert_allclose(ifft2c(fft2c(x)), x, atol=1e-10)


def test_torch_and_numpy_agree():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((2, 16, 10)) + 1j * rng.standard_normal((2, 16, 10))).astype(np.complex64)
    np.testing.assert_allclose(fft2c(torch.from_numpy(x)).numpy(), fft2c(x), atol=1e-5)
    np.testing.assert_allclose(ifft2c(torch.from_numpy(x)).numpy(), ifft2c(x), atol=1e-5)


def test_to_kspace_keeps_the_magnitude_and_phase():
    rng = np.random.default_rng(2)
    magnitude = rng.uniform(0.1, 1, (2, 32, 32)).astype(np.float32)
    phase = rng.uniform(-np.pi, np.pi, (2, 32, 32)).astype(np.float32)
    image = ifft2c(to_kspace(magnitude, phase))
    np.testing.assert_allclose(np.abs(image), magnitude, atol=1e-5)
    np.testing.assert_allclose(np.angle(image * np.exp(-1j * phase)), 0, atol=1e-4)


@pytest.mark.parametrize("shape", [(32, 32), (3, 10, 12), (7, 9), (6, 5)])
def test_the_fft_of_the_frame_is_fft2c(shape):
    from kspacify.kspace import fft2_frame, frame_order, frame_ramp, from_frame_order, to_frame

    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    frame = to_frame(x)
    np.testing.assert_allclose(np.abs(frame), np.fft.ifftshift(np.abs(x), axes=(-2, -1)), rtol=1e-6)
    np.testing.assert_allclose(from_frame_order(np.abs(frame)), np.abs(x), rtol=1e-6)
    np.testing.assert_allclose(fft2_frame(frame.copy()), reference_fft2c(x), atol=1e-4)
    # a pixelwise product formed in the frame: maps taken in frame order
    height, width = shape[-2:]
    maps = rng.standard_normal((height, width)).astype(np.float32)
    framed_maps = maps[frame_order(height)][:, frame_order(width)]
    np.testing.assert_allclose(fft2_frame(framed_maps * frame), reference_fft2c(maps * x), atol=1e-4)
    assert frame_ramp(height, width).dtype == np.complex64
