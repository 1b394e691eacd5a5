import numpy as np
import pytest
import torch

from kspacify.kspace import fft2c
from kspacify.recon.losses import SSIMLoss
from kspacify.recon.masks import make_mask
from kspacify.recon.varnet import VarNet, VarNetConfig, soft_data_consistency

torch.set_num_threads(1)
TINY = VarNetConfig(num_cascades=2, chans=4, pools=2)


def _batch(b, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    blob = ((xx**2 + yy**2) < 0.5).float() * (1 + 0.5 * xx)
    img = blob + 0.05 * torch.rand(b, h, w, generator=g)
    phase = 0.5 * yy + 0.1 * torch.rand(b, 1, 1, generator=g)
    kspace = fft2c(img * torch.exp(1j * phase))
    mask = torch.from_numpy(make_mask("equispaced", w, 4, 4, seed)).reshape(1, 1, w)
    return img, kspace.to(torch.complex64), mask


def test_presets():
    assert VarNetConfig.preset("paper") == VarNetConfig(12, 18, 4)
    assert VarNetConfig.preset("small", num_cascades=2).num_cascades == 2
    with pytest.raises(ValueError, match="unknown VarNet preset"):
        VarNetConfig.preset("huge")
    assert len(VarNet("small").cascades) == 4


@pytest.mark.parametrize("shape", [(2, 32, 32), (1, 21, 19), (2, 18, 30)])
def test_shapes_finite_even_odd(shape):
    torch.manual_seed(0)
    _, k, mask = _batch(*shape)
    net = VarNet(TINY)
    out = net(k * mask, mask)
    assert out.shape == shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    # (W,) mask and (B, 1, W) mask agree
    out2 = net(k * mask, mask.reshape(-1))
    assert torch.allclose(out, out2)


def test_requires_complex():
    with pytest.raises(TypeError, match="complex"):
        VarNet(TINY)(torch.zeros(1, 16, 16, 2), torch.ones(16, dtype=torch.bool))


class _ZeroRefine(torch.nn.Module):
    def forward(self, image):
        return torch.zeros_like(image)


def test_data_consistency_keeps_sampled_lines():
    _, k, mask = _batch(2, 16, 16)
    k0 = k * mask
    current = torch.randn_like(k)
    out = soft_data_consistency(current, k0, mask, 1.0)
    m = mask.expand_as(k)
    assert torch.allclose(out[m], k0[m], atol=1e-6) and torch.equal(out[~m], current[~m])
    # whole network with refinement switched off and eta = 1: sampled lines are the measurement
    net = VarNet(TINY)
    for c in net.cascades:
        c.refine = _ZeroRefine()
        c.eta.data.fill_(1.0)
    kout = net.reconstruct_kspace(k, mask)  # unmasked input: the net masks it itself
    assert torch.allclose(kout[m], k0[m]) and torch.all(kout[~m] == 0)


def test_few_adam_steps_reduce_ssim_loss():
    torch.manual_seed(0)
    img, k, mask = _batch(2, 32, 32)
    net = VarNet(TINY)
    loss_fn = SSIMLoss()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = loss_fn(net(k * mask, mask), img)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0]
