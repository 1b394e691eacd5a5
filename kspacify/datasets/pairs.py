"""Complex training slices in memory: the one form every trainer and the benchmark learn from.

A `PairSet` holds, per slice, the magnitude and the phase (real, or synthesized by a phase method)
and the volume it came from; per volume, its key and its acquisition. `load_pairs` reads listed
volumes (`kspacify.datasets` readers: normalized per volume, size x size). Each model sees the pairs
through its own transform (`PairDataset(pairs, transform)`, as fastMRI splits a dataset from its
transform): the VarNet a complex image with its target, the GAN a canonical unit phasor, the SBDM a
pair on its diffusion grid. Pair sets save to safetensors (no pickle), so a built one is reused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from kspacify.acquisition import UNKNOWN, Acquisition
from kspacify.atomic import atomic_path
from kspacify.datasets.base import VolumeRef
from kspacify.datasets.discover import read_volume

FORMAT = "kspacify-pairs"


@dataclass
class PairSet:
    """Slices of complex volumes: magnitude and phase (N, H, W) float32, `volume` (N,) the index of each
    slice's volume in `keys` / `acquisitions`, and `info` (provenance: where the phase came from)."""

    magnitude: np.ndarray
    phase: np.ndarray
    volume: np.ndarray
    keys: list[str]
    acquisitions: list[Acquisition]
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.magnitude.shape[0])

    @property
    def maxval(self) -> np.ndarray:
        """Each slice's volume maximum of the magnitude (fastMRI's SSIM/PSNR data range), (N,) float32."""
        peaks = np.zeros(len(self.keys), np.float32)
        np.maximum.at(peaks, self.volume, self.magnitude.reshape(len(self), -1).max(axis=1) if len(self) else 0)
        return peaks[self.volume]

    def acquisition_of(self, index: int) -> Acquisition:
        return self.acquisitions[int(self.volume[index])]

    def volume_images(self) -> Iterator[tuple[str, np.ndarray]]:
        """(key, complex64 (S, H, W)) per volume, in order."""
        for number, key in enumerate(self.keys):
            where = np.flatnonzero(self.volume == number)
            if where.size:
                yield key, (self.magnitude[where] * np.exp(1j * self.phase[where])).astype(np.complex64)

    def select(self, keys: Iterable[str]) -> PairSet:
        """The slices of the volumes named `keys` (in this set's order)."""
        wanted = set(keys)
        numbers = [i for i, key in enumerate(self.keys) if key in wanted]
        renumber = np.full(len(self.keys), -1, np.int64)
        renumber[numbers] = np.arange(len(numbers))
        where = np.isin(self.volume, numbers)
        return PairSet(self.magnitude[where], self.phase[where], renumber[self.volume[where]],
                       [self.keys[i] for i in numbers], [self.acquisitions[i] for i in numbers], dict(self.info))  # fmt: skip

    def with_phase(self, phase: np.ndarray, info: dict[str, Any]) -> PairSet:
        """The same magnitudes with another phase (a phase method's), and its provenance."""
        return PairSet(self.magnitude, np.asarray(phase, np.float32), self.volume, self.keys, self.acquisitions, info)

    def save(self, path: str | Path) -> None:
        from safetensors.numpy import save_file

        tensors = {"magnitude": self.magnitude, "phase": self.phase, "volume": self.volume.astype(np.int64)}
        metadata = {"format": FORMAT, "keys": json.dumps(self.keys), "info": json.dumps(self.info),
                    "acquisitions": json.dumps([a.to_json() for a in self.acquisitions])}  # fmt: skip
        with atomic_path(path) as temporary:
            save_file(tensors, str(temporary), metadata=metadata)

    @classmethod
    def load(cls, path: str | Path) -> PairSet:
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as handle:
            meta = handle.metadata() or {}
            arrays = {k: handle.get_tensor(k) for k in ("magnitude", "phase", "volume")}
        acquisitions = [Acquisition.from_json(a) for a in json.loads(meta.get("acquisitions", "[]"))]
        keys = json.loads(meta.get("keys", "[]"))
        return cls(arrays["magnitude"], arrays["phase"], arrays["volume"], keys,
                   acquisitions or [UNKNOWN] * len(keys), json.loads(meta.get("info", "{}")))  # fmt: skip


def load_pairs(refs: Sequence[VolumeRef], size: int = 256, assume: Acquisition = UNKNOWN) -> PairSet:
    """Every slice of the listed volumes, size x size; a volume's acquisition is what its files say,
    else `assume` (data whose files are silent, e.g. a folder of known spin-echo scans)."""
    magnitudes: list[np.ndarray] = []
    phases: list[np.ndarray] = []
    volumes: list[int] = []
    keys: list[str] = []
    acquisitions: list[Acquisition] = []
    for ref in refs:
        slices = list(read_volume(ref, size))
        if not slices:
            continue
        number = len(keys)
        keys.append(ref.key)
        acquisitions.append(ref.acquisition if ref.acquisition.known else assume)
        for s in slices:
            magnitudes.append(s.magnitude)
            phases.append(s.phase)
            volumes.append(number)
    if not magnitudes:
        empty = np.zeros((0, size, size), np.float32)
        return PairSet(empty, empty.copy(), np.zeros(0, np.int64), [], [])
    return PairSet(np.stack(magnitudes), np.stack(phases), np.asarray(volumes, np.int64), keys, acquisitions,
                   {"phase": "real phase of the data"})  # fmt: skip


class PairDataset:
    """A map-style dataset (what torch's DataLoader takes) of `transform(pairs, index)`."""

    def __init__(self, pairs: PairSet, transform: Callable[[PairSet, int], Any]) -> None:
        self.pairs, self.transform = pairs, transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Any:
        return self.transform(self.pairs, int(index))
