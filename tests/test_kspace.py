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


def _plain_to_kspace(magnitude, phase):
    """to_kspace as first written: the complex image times a float +-1 board, FFT, times the board."""
    import scipy.fft

    image = (magnitude * np.cos(phase)).astype(np.complex64)
    image.imag = magnitude * np.sin(phase)
    height, width = magnitude.shape[-2:]
    board = np.outer(1 - 2 * (np.arange(height) % 2), 1 - 2 * (np.arange(width) % 2)).astype(np.float32)
    image *= board
    result = scipy.fft.fft2(image, axes=(-2, -1), norm="ortho")
    result *= board if (height // 2 + width // 2) % 2 == 0 else -board
    return result


@pytest.mark.parametrize("shape", [(3, 32, 32), (2, 10, 12), (2, 6, 8)])
def test_to_kspace_writes_the_bytes_of_the_plain_formula(shape):
    """The fast path (cached complex boards, the two halves convert runs on two threads) keeps
    every output byte, zeros' signs included: an image of zeros and a k-space with exact zeros."""
    from kspacify.kspace import fft2_signed, polar_signed

    rng = np.random.default_rng(4)
    magnitude = rng.uniform(0, 1, shape).astype(np.float32)
    magnitude[..., ::2, :] = 0  # exact zeros in the image, and (a comb) exact zeros in k-space
    phase = rng.uniform(-np.pi, np.pi, shape).astype(np.float32)
    for m in (magnitude, np.zeros(shape, np.float32), -0.0 * magnitude):
        expected = _plain_to_kspace(m, phase).view(np.uint32)
        assert np.array_equal(to_kspace(m, phase).view(np.uint32), expected)
        assert np.array_equal(fft2_signed(polar_signed(m, phase)).view(np.uint32), expected)


def test_odd_sizes_take_the_shifting_path():
    rng = np.random.default_rng(5)
    magnitude = rng.uniform(0.1, 1, (2, 7, 9)).astype(np.float32)
    phase = rng.uniform(-np.pi, np.pi, (2, 7, 9)).astype(np.float32)
    np.testing.assert_allclose(to_kspace(magnitude, phase), reference_fft2c(magnitude * np.exp(1j * phase)), atol=1e-5)
