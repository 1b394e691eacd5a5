import numpy as np
import pytest

from kspacify.recon import masks as M


@pytest.mark.parametrize("name", sorted(M.MASKS))
@pytest.mark.parametrize("width", [256, 255, 320, 37])
@pytest.mark.parametrize("acc", [2, 3, 4, 6, 8])
@pytest.mark.parametrize("acs", [1, 4, 16, 26, 31])
def test_exact_counts_and_centre(name, width, acc, acs):
    total = int(np.floor(width / acc + 0.5))
    if acs > total:
        with pytest.raises(ValueError, match="exceed"):
            M.sample_mask(name, width, acc, acs, 0)
        return
    res = M.sample_mask(name, width, acc, acs, 123)
    assert res.mask.dtype == bool and res.mask.shape == (width,)
    assert res.num_sampled == total
    assert res.effective_acceleration == pytest.approx(width / total)
    start = width // 2 - acs // 2
    assert res.mask[start : start + acs].all()
    assert res.mask[width // 2]  # DC column of fft2c's k-space
    # same start as fastMRI's (W - acs + 1) // 2 except odd W with even acs (documented)
    if width % 2 == 0 or acs % 2 == 1:
        assert start == (width - acs + 1) // 2
    else:
        assert start == (width - acs + 1) // 2 - 1


def test_paper_settings_effective_acceleration():
    r = M.sample_mask("equispaced", 256, 4, 31, 0)
    assert r.num_sampled == 64 and r.effective_acceleration == 4.0
    r = M.sample_mask("random", 256, 6, 16, 0)
    assert r.num_sampled == 43 and r.effective_acceleration == pytest.approx(256 / 43)
    assert r.settings()["num_sampled"] == 43


def test_even_odd_acs_placement():
    m = M.make_mask("equispaced", 10, 1, 4, 0)  # R=1: everything sampled
    assert m.all()
    assert M.acs_slice(10, 4) == slice(3, 7)  # DC=5, one more line below for even acs
    assert M.acs_slice(10, 3) == slice(4, 7)  # symmetric for odd acs
    assert M.acs_slice(9, 4) == slice(2, 6)  # odd width: DC=4


@pytest.mark.parametrize("name", sorted(M.MASKS))
def test_seeded_reproducible_no_global_rng(name):
    state = np.random.get_state()
    a = M.make_mask(name, 256, 4, 16, 7)
    b = M.make_mask(name, 256, 4, 16, np.random.default_rng(7))
    assert np.array_equal(a, b)
    draws = {M.make_mask(name, 256, 4, 16, s).tobytes() for s in range(20)}
    assert len(draws) > 1
    after = np.random.get_state()
    assert state[0] == after[0] and np.array_equal(state[1], after[1]) and state[2:] == after[2:]


def test_equispaced_is_even_outside_acs():
    res = M.sample_mask("equispaced", 256, 4, 26, 3)
    acs = np.zeros(256, bool)
    acs[M.acs_slice(256, 26)] = True
    cand = np.flatnonzero(~acs)
    pos = np.flatnonzero(res.mask[cand])  # positions among the non-ACS columns
    step = cand.size / pos.size
    assert set(np.diff(pos)) <= {int(np.floor(step)), int(np.ceil(step))}
    assert pos[0] < step


def test_acs_equal_to_total_is_centre_only():
    m = M.make_mask("random", 64, 4, 16, 0)
    assert m.sum() == 16 and m[24:40].all()


def test_errors():
    with pytest.raises(ValueError, match="exceed the 43 lines"):
        M.make_mask("equispaced", 256, 6, 44, 0)
    with pytest.raises(ValueError, match="unknown mask"):
        M.make_mask("poisson", 256, 4, 16, 0)
    with pytest.raises(ValueError, match="R must be >= 1"):
        M.make_mask("random", 256, 0.5, 16, 0)
    with pytest.raises(ValueError, match="acs must be >= 1"):
        M.make_mask("random", 256, 4, 0, 0)
    with pytest.raises(TypeError, match="seed"):
        M.make_mask("random", 256, 4, 16, None)
    with pytest.raises(ValueError, match="do not fit"):
        M.make_mask("random", 8, 1, 9, 0)
    with pytest.raises(ValueError, match="width"):
        M.make_mask("random", 0, 4, 1, 0)


def test_registry_extension_is_one_class():
    class EdgeMask(M.MaskFunction):
        name = "edges"

        def _pick_outer(self, n, count, rng):
            return np.arange(count)

    M.MASKS["edges"] = EdgeMask
    try:
        m = M.make_mask("edges", 32, 4, 4, 0)
        assert m.sum() == 8 and m[:4].all()
    finally:
        del M.MASKS["edges"]


def test_apply_mask_numpy_and_torch():
    torch = pytest.importorskip("torch")
    k = (np.arange(24).reshape(2, 3, 4) + 1j).astype(np.complex64)
    m = np.array([True, False, True, False])
    out = M.apply_mask(k, m)
    assert np.array_equal(out[..., 1], np.zeros((2, 3))) and np.array_equal(out[..., 0], k[..., 0])
    tout = M.apply_mask(torch.from_numpy(k), m)
    assert np.array_equal(tout.numpy(), out)
