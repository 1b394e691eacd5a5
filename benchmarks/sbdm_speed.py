"""SBDM sampling speed: network evaluations, FLOPs and seconds per slice, paper reference vs ours.

Random-init networks (speed does not depend on the weights; quality comes with training). Parts:

1. FLOPs per slice (exact, torch's flop counter) for the paper's reference -- 1000-step
   predictor-corrector (2000 evaluations) with the `paper` network at 256x256 -- and our variants
   (`small` network, diffusion at 256/128/64/32, dpm2m/heun with fewer steps); ratio to the reference.
2. Seconds per network evaluation per slice for each (network, diffusion size, batch, memory
   format), measured round-robin in one run so load from other processes hits all alike; the
   speed-ups are ratios of medians of that run. Seconds per slice of a sampler = evaluations x this.
   Wall time (median, and minimum = least disturbed) and this process's CPU time are both reported:
   on a shared machine the wall time depends on what else runs.
3. End to end: `SbdmPhase.synthesize` with our default (small@64, dpm2m 25 steps, channels_last,
   upsampling, exact noise background) on a batch of 256x256 slices, seconds per slice; and the
   same with a 32x32 checkpoint.
4. Sampler convergence on an exact score (no network): every pixel's phasor drawn from a mixture of
   K unit phasors at equally spaced angles with weights 1 + 0.5 cos(angle) (a preferred direction,
   so a biased sampler shows; a noise-only background is the uniform K -> inf case), whose noised
   score is known in closed form; sigma_max 378 (the 256x256 value: a longer path than a 64x64
   model's 90, so a conservative test). Per sampler and step count: mean distance of a sample to its
   nearest atom (0 when solved exactly) and the total variation between atom frequencies and their
   weights (sampling noise alone gives ~0.007 here), against the 2000-evaluation PC.
5. With --compile: torch.compile vs eager on the default network (compile time, then speed ratio).

    python benchmarks/sbdm_speed.py [--repeats 5] [--batch 16] [--threads N] [--compile] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from kspacify.phase import create
from kspacify.sbdm import VESDE, ScoreNet, ScoreNetConfig, count_flops, make_sampler, phasor_sigma_max, save_checkpoint

NETWORKS = {
    "paper@256": ScoreNetConfig.preset("paper"),
    "small@256": ScoreNetConfig.preset("small"),
    "small@128": ScoreNetConfig.preset("small", image_size=128),
    "small@64": ScoreNetConfig.preset("small", image_size=64),
    "small@32": ScoreNetConfig.preset("small", image_size=32),
    "bundled (small, nf 16)@32": ScoreNetConfig.preset("small", nf=16, image_size=32),  # kspacify/weights/sbdm-small
}
REFERENCE = ("paper@256", "pc", 1000)
DEFAULT = ("small@64", "dpm2m", 25)
PLANS = [
    REFERENCE,
    ("small@256", "pc", 1000),
    ("small@256", "dpm2m", 50),
    ("small@128", "dpm2m", 50),
    ("small@128", "dpm2m", 25),
    ("small@64", "dpm2m", 50),
    DEFAULT,
    ("small@64", "dpm2m", 15),
    ("small@64", "heun", 13),
    ("small@32", "dpm2m", 25),
    ("bundled (small, nf 16)@32", "dpm2m", 25),
]


def nfe(sampler: str, steps: int) -> int:
    return make_sampler(sampler).nfe_for(steps)


def flops_table() -> list[dict]:
    per_eval = {name: count_flops(config) for name, config in NETWORKS.items()}
    reference = per_eval[REFERENCE[0]] * nfe(*REFERENCE[1:])
    rows = []
    for network, sampler, steps in PLANS:
        evaluations = nfe(sampler, steps)
        total = per_eval[network] * evaluations
        rows.append({"network": network, "sampler": sampler, "steps": steps, "nfe": evaluations,
                     "gflop_per_eval": per_eval[network] / 1e9, "gflop_per_slice": total / 1e9,
                     "fewer_flops_than_reference": reference / total})
    return rows


def timed(fn, slices: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) per slice of one call of `fn`."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - wall) / slices, (time.process_time() - cpu) / slices


def summary(samples: list[tuple[float, float]]) -> dict[str, float]:
    """Median and minimum wall time (the minimum is the least-disturbed run) and median CPU time."""
    walls = [w for w, _ in samples]
    return {"wall_median": statistics.median(walls), "wall_min": min(walls),
            "cpu_median": statistics.median(c for _, c in samples)}


def eval_timings(variants: list[tuple[str, int, bool]], repeats: int) -> dict[str, dict[str, float]]:
    """Seconds per network evaluation per slice for (network, batch, channels_last)."""
    runs = {}
    for network, batch, channels_last in variants:
        config = NETWORKS[network]
        model = ScoreNet(config, seed=0).eval()
        size = config.image_size
        x = torch.randn(batch, 2, size, size, generator=torch.Generator().manual_seed(0))
        magnitude = torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(1))
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            magnitude = magnitude.contiguous(memory_format=torch.channels_last)
        label = f"{network} batch {batch}{' channels_last' if channels_last else ''}"
        runs[label] = (partial(model, x, torch.full((batch,), 3.0), magnitude), batch, [])
    with torch.no_grad():
        for call, _, _ in runs.values():  # warm-up
            call()
        for _ in range(repeats):
            for call, batch, samples in runs.values():
                samples.append(timed(call, batch))
    return {label: summary(samples) for label, (_, _, samples) in runs.items()}


def phantom(batch: int, size: int = 256, seed: int = 0) -> np.ndarray:
    """Bright ellipse with texture on a Rayleigh background, normalized like preprocess does."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    body = ((xx / 0.8) ** 2 + (yy / 0.9) ** 2 < 1) * (0.8 + 0.2 * np.sin(6 * xx))
    noise = rng.normal(0, 0.02, (2, batch, size, size))
    magnitude = np.abs(body + noise[0] + 1j * noise[1]).astype(np.float32)
    return magnitude / np.percentile(magnitude, 99.5)


def end_to_end(network: str, batch: int, repeats: int) -> dict:
    """Our default method with a `network` checkpoint, `synthesize` on `batch` 256x256 slices."""
    _, sampler, steps = DEFAULT
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sbdm-small.safetensors"
        config = NETWORKS[network]
        sde = VESDE(sigma_max=phasor_sigma_max(config.image_size, config.image_size))  # as training sets it
        save_checkpoint(path, ScoreNet(config, seed=0), sde=sde)
        method = create("sbdm", device="cpu", checkpoint=str(path), sampler=sampler, steps=steps)
    magnitude = phantom(batch)
    method.synthesize(magnitude[:1], np.random.default_rng(0))  # warm-up
    samples = [timed(partial(method.synthesize, magnitude, np.random.default_rng(i)), batch) for i in range(repeats)]
    return {**summary(samples), "batch": batch, "settings": method.settings()}


def ring_score(atoms: int):
    """Exact score of a mixture of `atoms` unit phasors at equally spaced angles with weights
    proportional to 1 + 0.5 cos(angle) (a preferred direction, so a biased sampler shows), noised by
    sigma. Returns the score function, the atoms (2, K) and their weights (K,)."""
    angles = torch.arange(atoms) * (2 * math.pi / atoms)
    mu = torch.stack([torch.cos(angles), torch.sin(angles)])
    weights = 1 + 0.5 * torch.cos(angles)
    weights = weights / weights.sum()

    def score(x: torch.Tensor, sigma: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
        s = sigma.reshape(-1, 1, 1, 1)
        d2 = ((x[:, :, None] - mu[None, :, :, None, None]) ** 2).sum(dim=1)  # (B, K, H, W)
        r = torch.softmax(-d2 / (2 * s**2) + weights.log()[None, :, None, None], dim=1)
        return (torch.einsum("ck,bkhw->bchw", mu, r) - x) / s**2

    return score, mu, weights


def convergence(atoms: int = 24, size: int = 64, batch: int = 16) -> list[dict]:
    score, mu, weights = ring_score(atoms)
    magnitude = torch.zeros(batch, 1, size, size)
    rows = []
    for sampler, steps in [("pc", 1000), ("dpm2m", 5), ("dpm2m", 10), ("dpm2m", 15), ("dpm2m", 25),
                           ("dpm2m", 50), ("heun", 5), ("heun", 8), ("heun", 13), ("heun", 25)]:
        x = make_sampler(sampler).sample(score, magnitude, VESDE(), steps, torch.Generator().manual_seed(0))
        d = torch.linalg.vector_norm(x[:, :, None] - mu[None, :, :, None, None], dim=1)  # (B, K, H, W)
        nearest, index = d.min(dim=1)
        frequencies = torch.bincount(index.flatten(), minlength=atoms).double() / index.numel()
        rows.append({"sampler": sampler, "steps": steps, "nfe": nfe(sampler, steps),
                     "mean_distance_to_atom": float(nearest.mean()),
                     "mode_weight_tv": float(0.5 * (frequencies - weights.double()).abs().sum())})
    return rows


def compile_ratio(batch: int, repeats: int) -> dict[str, float]:
    """torch.compile of the default network (channels_last): compile time, then eager/compiled time."""
    config = NETWORKS["small@64"]
    model = ScoreNet(config, seed=0).eval().to(memory_format=torch.channels_last)
    x = torch.randn(batch, 2, 64, 64, generator=torch.Generator().manual_seed(0))
    magnitude = torch.rand(batch, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    sigma = torch.full((batch,), 3.0)
    compiled = torch.compile(model)
    with torch.no_grad():
        started = time.perf_counter()
        compiled(x, sigma, magnitude)
        compile_seconds = time.perf_counter() - started
        model(x, sigma, magnitude)
        ratios = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x, sigma, magnitude)
            t1 = time.perf_counter()
            compiled(x, sigma, magnitude)
            ratios.append((t1 - t0) / (time.perf_counter() - t1))
    return {"compile_seconds": compile_seconds, "eager_over_compiled_median": statistics.median(ratios)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16, help="slices per batch in the batched runs")
    parser.add_argument("--e2e-repeats", type=int, default=3, help="repeats of the end-to-end run")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (minutes)")
    parser.add_argument("--skip-paper", action="store_true", help="do not time the paper network")
    parser.add_argument("--skip-convergence", action="store_true", help="skip part 4 (minutes)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, = cores)")
    parser.add_argument("--json", type=Path, help="write all figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    result: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                   f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, Python {platform.python_version()}",
        "command": " ".join(["python", Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "load_average_at_start": os.getloadavg(),
    }
    result["flops"] = flops_table()
    print(json.dumps(result["flops"], indent=1), flush=True)

    b = args.batch
    variants = [] if args.skip_paper else [("paper@256", 1, False)]
    variants += [("small@256", 1, False), ("small@128", 1, False), ("small@64", 1, False),
                 ("small@64", b, False), ("small@64", b, True), ("small@32", b, True)]
    timings = eval_timings(variants, args.repeats)
    result["seconds_per_eval_per_slice"] = timings
    print(json.dumps(timings, indent=1), flush=True)
    base = timings["small@256 batch 1"]["wall_median"]
    result["speedup_vs_small@256_batch_1"] = {k: base / v["wall_median"] for k, v in timings.items()}
    print(json.dumps(result["speedup_vs_small@256_batch_1"], indent=1), flush=True)
    ours = timings[f"small@64 batch {b} channels_last"]
    result["seconds_per_slice_from_evals"] = {
        "small@256 dpm2m 50, batch 1": {k: v * 50 for k, v in timings["small@256 batch 1"].items()},
        f"default: small@64 dpm2m 25, batch {b}, channels_last": {k: v * 25 for k, v in ours.items()},
    }
    if not args.skip_paper:
        paper = timings["paper@256 batch 1"]
        result["seconds_per_slice_from_evals"]["reference: paper@256 pc 1000, batch 1"] = {
            k: v * nfe("pc", 1000) for k, v in paper.items()}
    print(json.dumps(result["seconds_per_slice_from_evals"], indent=1), flush=True)

    for network in (DEFAULT[0], "small@32"):
        key = f"end_to_end {network}"
        result[key] = end_to_end(network, b, args.e2e_repeats)
        print(key, json.dumps({k: v for k, v in result[key].items() if k != "settings"}), flush=True)

    if not args.skip_convergence:
        result["convergence"] = convergence()
        print(json.dumps(result["convergence"], indent=1), flush=True)
    if args.compile:
        result["compile"] = compile_ratio(b, args.repeats)
        print(json.dumps(result["compile"]), flush=True)
    result["load_average_at_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
