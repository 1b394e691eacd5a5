"""The score-based diffusion core: network, VE SDE and loss, samplers, checkpoints.

Everything runs on tiny configurations (16x16 images, a ~0.2M-parameter net) on one CPU thread.
The real correctness test of the samplers is `test_samplers_recover_gaussian_target`: with the
exact score of a known Gaussian target (no network) each sampler must return that Gaussian.
"""

from __future__ import annotations

import json
import math
import struct

import pytest
import torch

from kspacify.sbdm import (
    EMA,
    SAMPLERS,
    VESDE,
    CheckpointError,
    ScoreNet,
    ScoreNetConfig,
    count_flops,
    count_parameters,
    dsm_loss,
    load_checkpoint,
    make_sampler,
    max_pairwise_distance,
    phase_to_phasor,
    phasor_sigma_max,
    phasor_to_phase,
    save_checkpoint,
)
from kspacify.sbdm.checkpoint import card_path, sha256_file
from kspacify.sbdm.samplers import karras_sigmas

SIZE = 16
TINY = ScoreNetConfig(
    nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), image_size=SIZE, dropout=0.0, input_scaling=True
)
TINY_SDE = VESDE(sigma_max=phasor_sigma_max(SIZE, SIZE))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_model() -> ScoreNet:
    return ScoreNet(TINY, seed=0).eval()


def _magnitude(batch: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------- network


def test_network_output_shape_and_magnitude_conditioning(tiny_model):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, SIZE, SIZE, generator=g)
    sigma = torch.tensor([0.05, 1.0, 20.0])
    with torch.no_grad():
        out = tiny_model(x, sigma, _magnitude(3, seed=0))
        other = tiny_model(x, sigma, _magnitude(3, seed=1))
        scalar = tiny_model(x, 1.0, _magnitude(3, seed=0))
    assert out.shape == (3, 2, SIZE, SIZE) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert (out - other).abs().max() > 1e-4  # the magnitude is an input, not ignored
    assert torch.allclose(scalar[1], out[1], atol=1e-5)  # a scalar sigma is broadcast
    # any H, W divisible by 2 ** (levels - 1), e.g. non-square
    with torch.no_grad():
        assert tiny_model(torch.zeros(1, 2, 8, 24), torch.ones(1), torch.zeros(1, 1, 8, 24)).shape == (1, 2, 8, 24)
    with pytest.raises(ValueError, match="multiples of 2"):
        tiny_model(torch.zeros(1, 2, 15, 16), torch.ones(1), torch.zeros(1, 1, 15, 16))
    with pytest.raises(ValueError, match="magnitude"):
        tiny_model(x, sigma, torch.zeros(3, 2, SIZE, SIZE))


def test_network_output_is_scaled_by_inverse_sigma():
    # With input_scaling off, sigma reaches the body only through the embedding; the 1/sigma output
    # scaling is then visible as score * sigma being O(1) for sigma from 0.01 to 378.
    model = ScoreNet(ScoreNetConfig.preset("small", nf=16, image_size=SIZE, input_scaling=False), seed=0).eval()
    x = torch.randn(1, 2, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for sigma in (0.01, 1.0, 378.0):
            body = model(x, torch.tensor([sigma]), _magnitude(1)) * sigma
            assert 1e-3 < body.abs().mean() < 1e2


def test_edm_parameterization_is_a_preconditioned_denoiser():
    """With the body's output at zero, `edm` is the exact score of Gaussian data N(0, sigma_data^2):
    -x / (sigma^2 + sigma_data^2), at every noise level, so an untrained body already denoises to the
    data mean instead of passing noise through (`eps` gives 0 there). Old cards load as `eps`."""
    from kspacify.sbdm.sde import PHASOR_SIGMA_DATA

    for scaling in (True, False):
        model = ScoreNet(ScoreNetConfig.preset("small", nf=16, image_size=SIZE, input_scaling=scaling, parameterization="edm"), seed=0)
        torch.nn.init.zeros_(model.conv_out.weight)
        torch.nn.init.zeros_(model.conv_out.bias)
        x = torch.randn(3, 2, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
        sigma = torch.tensor([0.01, 1.0, 90.0])
        with torch.no_grad():
            score = model(x, sigma, _magnitude(3))
        expected = -x / (sigma**2 + PHASOR_SIGMA_DATA**2)[:, None, None, None]
        assert torch.allclose(score, expected, rtol=1e-4, atol=1e-9)
    legacy = {k: v for k, v in TINY.to_dict().items() if k != "parameterization"}
    assert ScoreNetConfig.from_dict(legacy).parameterization == "eps"
    with pytest.raises(ValueError, match="parameterization"):
        ScoreNetConfig.preset("small", parameterization="x0")


def test_presets_parameter_counts_and_flops():
    paper = ScoreNetConfig.preset("paper")
    small = ScoreNetConfig.preset("small")
    assert (paper.nf, paper.ch_mult, paper.num_res_blocks, paper.image_size) == (128, (1, 2, 2, 2), 4, 256)
    assert paper.attn_resolutions == (paper.resolutions[-1],) == (32,)  # attention at the lowest resolution
    assert small.attn_resolutions == (small.resolutions[-1],)
    n_paper = count_parameters(paper)  # on the meta device: nothing is allocated
    n_small = count_parameters(small)
    assert 30e6 < n_paper < 100e6, n_paper  # NCSN++ at this size: ~63M
    assert 0.5e6 < n_small < 5e6, n_small
    # overriding the size keeps attention at the lowest level
    assert ScoreNetConfig.preset("small", image_size=32).attn_resolutions == (4,)
    flops = count_flops(TINY)
    assert flops > 0 and count_flops(TINY, batch=2) == 2 * flops
    assert count_parameters(TINY) == sum(p.numel() for p in ScoreNet(TINY).parameters())
    assert ScoreNetConfig.from_dict(json.loads(json.dumps(paper.to_dict()))) == paper
    with pytest.raises(ValueError, match="unknown score-network preset"):
        ScoreNetConfig.preset("huge")


def test_init_is_seeded_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = ScoreNet(TINY, seed=3), ScoreNet(TINY, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())
    for (_, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(pa, pb)


# -------------------------------------------------------------------------------- representation


def test_phasor_round_trip():
    phase = (torch.rand(2, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) * 2 - 1) * math.pi * 0.999
    phasor = phase_to_phasor(phase)
    assert phasor.shape == (2, 2, SIZE, SIZE)
    assert torch.allclose(phasor.norm(dim=1), torch.ones(2, SIZE, SIZE), atol=1e-6)
    assert torch.allclose(phasor_to_phase(phasor), phase, atol=1e-5)
    assert torch.allclose(phasor_to_phase(3.7 * phasor), phase, atol=1e-5)  # only the angle matters


# --------------------------------------------------------------------------------------- SDE, loss


def test_sigma_schedule_and_sde():
    sde = VESDE()
    assert (sde.sigma_min, sde.sigma_max, sde.eps) == (0.01, 378.0, 1e-5)
    assert math.isclose(float(sde.marginal_std(0.0)), 0.01, rel_tol=1e-6)
    assert math.isclose(float(sde.marginal_std(1.0)), 378.0, rel_tol=1e-5)
    t = torch.tensor([0.2, 0.7], dtype=torch.float64)
    assert torch.allclose(sde.sigma_to_t(sde.marginal_std(t)), t)
    # g(t)^2 = d sigma(t)^2 / dt
    h = 1e-6
    dvar = (sde.marginal_std(t + h) ** 2 - sde.marginal_std(t - h) ** 2) / (2 * h)
    assert torch.allclose(sde.diffusion(t) ** 2, dvar, rtol=1e-5)
    ts = sde.sample_t(1000, torch.Generator().manual_seed(0))
    assert ts.min() >= sde.eps and ts.max() <= 1.0
    prior = sde.prior_sample((4, 2, SIZE, SIZE), torch.Generator().manual_seed(0))
    assert abs(float(prior.std()) / 378.0 - 1) < 0.05
    x, score = torch.ones(2, 2, 4, 4), torch.ones(2, 2, 4, 4)
    assert torch.allclose(sde.reverse_drift(x, t.float(), score), -(sde.diffusion(t.float()) ** 2)[:, None, None, None] * score)
    with pytest.raises(ValueError):
        VESDE(sigma_min=1.0, sigma_max=0.5)
    # the sigma_max rule on phasors: uncorrelated phases are sqrt(2 H W) apart, at most 2 sqrt(H W)
    assert math.isclose(phasor_sigma_max(256, 256), 362.04, rel_tol=1e-4)
    phases = torch.rand(64, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 * math.pi
    distance = max_pairwise_distance(phase_to_phasor(phases))
    assert phasor_sigma_max(32, 32) < distance <= 2 * 32


def _toy_batch(batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A toy conditional distribution: magnitude a ramp, phase a fixed function of it."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, SIZE), torch.linspace(0, 1, SIZE), indexing="ij")
    a = torch.rand(batch, 1, 1, 1, generator=generator)
    b = torch.rand(batch, 1, 1, 1, generator=generator)
    magnitude = (a * xx + b * yy) / 2
    return phase_to_phasor(3 * magnitude - 1.5), magnitude


def test_dsm_loss_decreases_with_training():
    model = ScoreNet(TINY, seed=0)
    x_eval, mag_eval = _toy_batch(64, torch.Generator().manual_seed(123))

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(dsm_loss(model, x_eval, mag_eval, TINY_SDE, torch.Generator().manual_seed(7)))

    before = eval_loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        model.train()
        x0, mag = _toy_batch(16, g)
        loss = dsm_loss(model, x0, mag, TINY_SDE, g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = eval_loss()
    assert after < 0.6 * before, (before, after)
    # a zero score scores exactly E|z|^2 = 1 per element
    zero = dsm_loss(lambda x, s, m: torch.zeros_like(x), x_eval, mag_eval, TINY_SDE, torch.Generator().manual_seed(7))
    assert abs(float(zero) - 1.0) < 0.02


def test_edm_loss_weight_multiplies_each_sample_by_its_noise_level():
    """weighting='edm' scales sample b's term by (sigma_b^2 + sigma_data^2) / sigma_data^2 (the same t
    and z are drawn), so high noise levels count instead of vanishing."""
    from kspacify.sbdm.sde import PHASOR_SIGMA_DATA

    x0, mag = _toy_batch(8, torch.Generator().manual_seed(1))
    zero = lambda x, s, m: torch.zeros_like(x)  # noqa: E731  (term = z^2 per element)
    plain = [float(dsm_loss(zero, x0[i : i + 1], mag[i : i + 1], TINY_SDE, torch.Generator().manual_seed(i))) for i in range(8)]
    weighted = [float(dsm_loss(zero, x0[i : i + 1], mag[i : i + 1], TINY_SDE, torch.Generator().manual_seed(i), "edm")) for i in range(8)]
    sigmas = [float(TINY_SDE.marginal_std(TINY_SDE.sample_t(1, torch.Generator().manual_seed(i), device=torch.device("cpu")))) for i in range(8)]
    for p, w, s in zip(plain, weighted, sigmas):
        assert w == pytest.approx(p * (s**2 + PHASOR_SIGMA_DATA**2) / PHASOR_SIGMA_DATA**2, rel=1e-5)
    with pytest.raises(ValueError, match="weighting"):
        dsm_loss(zero, x0, mag, TINY_SDE, torch.Generator(), "uniform")


# ---------------------------------------------------------------------------------------- samplers

SAMPLER_STEPS = {"pc": 10, "heun": None, "dpm2m": None}  # PC shortened for the network tests


def test_sampler_registry():
    assert {"pc", "heun", "dpm2m"} <= set(SAMPLERS)
    assert make_sampler("pc", snr=0.2).snr == 0.2
    assert make_sampler("pc").nfe_for() == 2000  # the paper's N = 1000, one corrector step
    assert make_sampler("heun").nfe_for() <= 50 and make_sampler("dpm2m").nfe_for() <= 50
    with pytest.raises(ValueError, match="unknown sampler"):
        make_sampler("ddim")
    sigmas = karras_sigmas(VESDE(), 25)
    assert math.isclose(sigmas[0], 378.0) and math.isclose(sigmas[-2], 0.01) and sigmas[-1] == 0.0


@pytest.mark.parametrize("name", sorted(SAMPLER_STEPS))
def test_sampler_with_network(name, tiny_model):
    calls = {"n": 0}

    def counted(x, sigma, magnitude):
        calls["n"] += 1
        assert sigma.shape == (x.shape[0],)
        return tiny_model(x, sigma, magnitude)

    mag = _magnitude(2)
    sampler = make_sampler(name)
    steps = SAMPLER_STEPS[name]
    a = sampler.sample(counted, mag, TINY_SDE, steps=steps, generator=torch.Generator().manual_seed(5))
    assert a.shape == (2, 2, SIZE, SIZE) and a.dtype == torch.float32
    assert torch.isfinite(a).all() and (a.norm(dim=1) > 0).all()  # unit-normable
    assert sampler.nfe == calls["n"] == sampler.nfe_for(steps)
    if name != "pc":
        assert sampler.nfe <= 50
    b = sampler.sample(tiny_model, mag, TINY_SDE, steps=steps, generator=torch.Generator().manual_seed(5))
    c = sampler.sample(tiny_model, mag, TINY_SDE, steps=steps, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b)  # deterministic for a seed
    assert (a - c).abs().max() > 1e-3  # different for another seed
    assert phasor_to_phase(a).shape == (2, SIZE, SIZE)
    with pytest.raises(TypeError, match="Generator"):
        sampler.sample(tiny_model, mag, TINY_SDE, steps=steps)


def test_sampler_under_no_grad_and_autocast(tiny_model):
    mag = _magnitude(1)
    with torch.no_grad():
        x = make_sampler("heun").sample(
            tiny_model, mag, TINY_SDE, steps=3, generator=torch.Generator().manual_seed(0), dtype=torch.bfloat16
        )
    assert x.dtype == torch.float32 and torch.isfinite(x).all()


def test_sampler_leaves_global_rng_alone(tiny_model):
    state = torch.random.get_rng_state()
    make_sampler("pc").sample(tiny_model, _magnitude(1), TINY_SDE, steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(state, torch.random.get_rng_state())


# Tolerance on the std ratio: PC (N = 1000, snr 0.16) inflates std ~1.5% (Langevin bias), Heun at
# 49 NFE ~4-7% (ODE discretization: it falls below 1% at 100 steps), DPM-Solver++(2M) at 50 NFE ~1.5%.
GAUSSIAN_CASES = [("pc", None, 0.04), ("heun", None, 0.09), ("heun", 100, 0.02), ("dpm2m", None, 0.035), ("pc", 200, 0.05)]


@pytest.mark.parametrize("name,steps,std_tol", GAUSSIAN_CASES)
@pytest.mark.parametrize("target_std", [0.1, 0.5])
def test_samplers_recover_gaussian_target(name, steps, std_tol, target_std):
    """Exact score of p(x | m) = N(mu(m), s^2 I), perturbed: -(x - mu(m)) / (s^2 + sigma^2)."""

    def mean_of(magnitude: torch.Tensor) -> torch.Tensor:
        return torch.cat([0.8 * magnitude - 0.2, 0.1 - 0.5 * magnitude], dim=1)

    def analytic_score(x, sigma, magnitude):
        return -(x - mean_of(magnitude)) / (target_std**2 + sigma[:, None, None, None] ** 2)

    mag = _magnitude(16, seed=3)  # 8192 values: std estimate +-0.8%
    sampler = make_sampler(name)
    x = sampler.sample(analytic_score, mag, VESDE(), steps=steps, generator=torch.Generator().manual_seed(11))
    residual = x - mean_of(mag)
    assert abs(float(residual.mean())) < 0.05 * target_std + 0.003
    assert abs(float(residual.std()) / target_std - 1) < std_tol
    # the per-pixel conditional mean follows the magnitude (conditioning is honoured)
    slope = torch.linalg.lstsq(torch.cat([mag.reshape(-1, 1), torch.ones(mag.numel(), 1)], 1), x[:, :1].reshape(-1, 1)).solution
    assert abs(float(slope[0]) - 0.8) < 0.1


# ------------------------------------------------------------------------------------- checkpoints


def _trained_pair():
    model = ScoreNet(TINY, seed=0)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    ema.update(model)
    return model, ema


def test_checkpoint_round_trip_is_bit_exact(tmp_path):
    model, ema = _trained_pair()
    path = tmp_path / "sbdm.safetensors"
    sde = VESDE(sigma_max=40.0)
    card = save_checkpoint(path, model, TINY, {"training": {"steps": 123}, "data": {"description": "toy"}}, ema=ema, sde=sde)
    assert card_path(path).is_file()
    on_disk = json.loads(card_path(path).read_text())
    assert on_disk == card
    assert card["sha256"] == sha256_file(path)
    assert card["training"]["steps"] == 123 and card["training"]["batch_size"] is None  # merged over placeholders
    assert card["quality"]["val_dsm_loss"] is None
    assert card["config"] == TINY.to_dict() and card["sde"]["sigma_max"] == 40.0

    loaded, loaded_card = load_checkpoint(path)
    assert not loaded.training and loaded.config == TINY
    assert loaded_card["sha256"] == card["sha256"]
    for name, value in ema.state_dict().items():  # sampling weights = EMA, bit-exact
        assert torch.equal(loaded.state_dict()[name], value), name
    raw, _ = load_checkpoint(card_path(path), weights="model")  # the card path works too
    for name, value in model.state_dict().items():
        assert torch.equal(raw.state_dict()[name], value), name
    x = torch.randn(1, 2, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(raw(x, torch.ones(1), _magnitude(1)), model.eval()(x, torch.ones(1), _magnitude(1)))


def test_checkpoint_is_safetensors_not_pickle(tmp_path):
    model, ema = _trained_pair()
    path = tmp_path / "sbdm.safetensors"
    save_checkpoint(path, model, ema=ema)
    blob = path.read_bytes()
    assert not blob.startswith(b"\x80") and not blob.startswith(b"PK")  # neither pickle nor torch's zip
    (header_len,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + header_len])
    assert header["__metadata__"]["format"] == "kspacify-sbdm"
    assert {k.split(".", 1)[0] for k in header if k != "__metadata__"} == {"model", "ema"}
    with pytest.raises(ValueError):
        save_checkpoint(tmp_path / "sbdm.pt", model)


def test_checkpoint_errors_name_problem_and_fallback(tmp_path):
    model, ema = _trained_pair()
    path = tmp_path / "sbdm.safetensors"
    with pytest.raises(CheckpointError, match=r"not found.*--phase physics or --phase smooth"):
        load_checkpoint(path)
    save_checkpoint(path, model, ema=ema)

    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF  # flip one weight byte
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match=r"sha256 mismatch.*--phase physics"):
        load_checkpoint(path)

    save_checkpoint(path, model, ema=ema)
    card = json.loads(card_path(path).read_text())
    card["config"]["nf"] = 32  # card no longer describes the file
    card_path(path).write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="config"):
        load_checkpoint(path)

    card_path(path).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)
    card_path(path).unlink()
    with pytest.raises(CheckpointError, match="model card"):
        load_checkpoint(path)

    # a truncated file whose card was (wrongly) updated still fails to parse, not crash
    save_checkpoint(path, model, ema=ema)
    path.write_bytes(path.read_bytes()[:100])
    card = json.loads(card_path(path).read_text())
    card["sha256"] = sha256_file(path)
    card_path(path).write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(path)


def test_ema():
    model = ScoreNet(TINY, seed=0)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    ema = EMA(model, decay=0.5, warmup=False)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    name = "conv_in.weight"
    assert torch.allclose(ema.state_dict()[name], start[name] + 0.5)
    averaged = ema.averaged_model(model)
    assert torch.allclose(averaged.state_dict()[name], start[name] + 0.5)
    assert torch.allclose(model.state_dict()[name], start[name] + 1.0)  # the model itself is untouched
    with pytest.raises(ValueError):
        EMA(model, decay=1.0)
