import numpy as np
import pytest
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity

from kspacify import metrics


def _ref_ssim(gt, pred, maxval=None):
    maxval = gt.max() if maxval is None else maxval
    return np.mean([structural_similarity(g, p, data_range=maxval) for g, p in zip(gt, pred)])


def _phantom(rng, n=3, h=40, w=33):
    y, x = np.mgrid[-1 : 1 : h * 1j, -1 : 1 : w * 1j]
    vol = np.stack([(x**2 / 0.6 + y**2 / (0.3 + 0.2 * s) < 0.5) * (1.0 + 0.3 * x) for s in range(n)])
    return vol + 0.02 * rng.standard_normal(vol.shape)


def test_random_data_matches_skimage():
    rng = np.random.default_rng(0)
    gt = rng.random((3, 24, 30))
    pred = gt + 0.1 * rng.standard_normal(gt.shape)
    assert metrics.ssim(gt, pred) == pytest.approx(_ref_ssim(gt, pred), rel=1e-10)
    assert metrics.psnr(gt, pred) == pytest.approx(peak_signal_noise_ratio(gt, pred, data_range=gt.max()), rel=1e-12)
    assert metrics.nrmse(gt, pred) == pytest.approx(normalized_root_mse(gt, pred, normalization="euclidean"), rel=1e-12)
    nmse = np.sum((gt - pred) ** 2) / np.sum(gt**2)
    assert metrics.nmse(gt, pred) == pytest.approx(nmse, rel=1e-12)
    assert metrics.nrmse(gt, pred) == pytest.approx(np.sqrt(nmse), rel=1e-12)


def test_structured_data_float32_and_maxval():
    rng = np.random.default_rng(1)
    gt = _phantom(rng).astype(np.float32)
    pred = (0.9 * gt + 0.05 * rng.standard_normal(gt.shape)).astype(np.float32)
    g64, p64 = gt.astype(np.float64), pred.astype(np.float64)
    assert metrics.ssim(gt, pred) == pytest.approx(_ref_ssim(g64, p64), rel=1e-10)
    assert metrics.ssim(gt, pred, maxval=3.0) == pytest.approx(_ref_ssim(g64, p64, 3.0), rel=1e-10)
    assert metrics.psnr(gt, pred, maxval=2.0) == pytest.approx(peak_signal_noise_ratio(g64, p64, data_range=2.0))
    # data range is the volume max: scaling one slice changes the others' SSIM
    scaled = g64.copy()
    scaled[0] *= 10
    others = metrics.ssim(scaled[1:], p64[1:], maxval=scaled.max())
    assert others != pytest.approx(metrics.ssim(g64[1:], p64[1:]), rel=1e-3)
    assert 0 < metrics.ssim(gt, pred) < 1
    assert set(metrics.evaluate(gt, pred)) == {"nmse", "nrmse", "psnr", "ssim"}


def test_identical_and_single_slice():
    rng = np.random.default_rng(2)
    gt = _phantom(rng)
    assert metrics.ssim(gt, gt) == pytest.approx(1.0, abs=1e-12)
    assert metrics.psnr(gt, gt) == float("inf")
    assert metrics.nmse(gt, gt) == 0.0
    assert metrics.ssim(gt[0], gt[0] * 0.5) == pytest.approx(_ref_ssim(gt[:1], gt[:1] * 0.5), rel=1e-10)


def test_errors():
    a = np.ones((2, 16, 16))
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.ssim(a, a[:1])
    with pytest.raises(TypeError, match="magnitude"):
        metrics.psnr(a.astype(complex), a)
    with pytest.raises(ValueError, match="smaller than"):
        metrics.ssim(np.ones((1, 5, 16)), np.ones((1, 5, 16)))
    with pytest.raises(ValueError, match="volume"):
        metrics.nmse(np.ones(4), np.ones(4))


def test_torch_ssim_loss_shares_formula():
    torch = pytest.importorskip("torch")
    from kspacify.recon.losses import SSIMLoss

    rng = np.random.default_rng(3)
    gt = _phantom(rng, n=2)
    pred = gt + 0.1 * rng.standard_normal(gt.shape)
    loss_fn = SSIMLoss()
    t_pred = torch.tensor(pred, requires_grad=True)
    dr = torch.full((2,), gt.max(), dtype=torch.float64)
    loss = loss_fn(t_pred, torch.tensor(gt), dr)
    assert 1 - loss.item() == pytest.approx(metrics.ssim(gt, pred), rel=1e-10)
    loss.backward()
    assert torch.isfinite(t_pred.grad).all() and t_pred.grad.abs().sum() > 0
    # default data range: each target slice's max
    per_slice = np.mean([metrics.ssim(g, p) for g, p in zip(gt, pred)])
    assert 1 - loss_fn(torch.tensor(pred), torch.tensor(gt)).item() == pytest.approx(per_slice, rel=1e-10)
