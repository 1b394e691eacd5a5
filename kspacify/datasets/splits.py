"""Patient/volume-level train/val/test splits, deterministic from a seed, stored as JSON.

`make_splits` orders the distinct keys by a seeded hash, sha256(f"{seed}\\x1f{key}"), and cuts that
order into consecutive runs, one per split in the order `fractions` names them. So the result
depends only on the set of keys and the seed (not on input order or on platform), a key is in
exactly one split, and adding keys leaves the relative order of the old ones unchanged. Sizes
are floor(fraction * n) plus the largest remainders (ties to the split named first); if a split
with a positive fraction would be empty while n allows one key each, it takes one key from the
largest split.

Nested splits (the paper's genTrain/genVal/genTest, then genTest -> recTrain/recVal/recTest): split
a parent's keys again, `make_splits(splits["genTest"], {...}, seed)`, or in one call
`make_nested_splits(keys, {"genTrain": .8, "genVal": .1, "genTest": .1},
{"genTest": {"recTrain": .8, "recVal": .1, "recTest": .1}}, seed)`, which returns one flat dict with
all six lists (the inner split is seeded with f"{seed}/{parent}").

Validity (checked by `validate_splits`, `save_splits`, `load_splits`): two splits may share keys
only if one contains the other (nesting); siblings never overlap.

Grouping: split by patient where volumes share a patient (`make_volume_splits` does this for
`VolumeRef`s: patients are split, then each patient's volume keys follow it).

Files are JSON: {"format": "kspacify-splits", "version": 1, "splits": {name: [keys]}, "meta": {...}}.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping

from kspacify.atomic import write_json

FORMAT = "kspacify-splits"
VERSION = 1


def _rank(seed: int | str, key: str) -> str:
    return hashlib.sha256(f"{seed}\x1f{key}".encode("utf-8")).hexdigest()


def _sizes(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    names = list(fractions)
    exact = [fractions[name] * n for name in names]
    sizes = [math.floor(value) for value in exact]
    order = sorted(range(len(names)), key=lambda i: (-(exact[i] - sizes[i]), i))
    for i in order[: n - sum(sizes)]:
        sizes[i] += 1
    positive = [i for i, name in enumerate(names) if fractions[name] > 0]
    if n >= len(positive):
        for i in positive:
            if sizes[i] == 0:
                donor = max(range(len(names)), key=lambda j: (sizes[j], -j))
                sizes[donor] -= 1
                sizes[i] += 1
    return dict(zip(names, sizes))


def _check_fractions(fractions: Mapping[str, float]) -> None:
    if not fractions:
        raise ValueError("fractions must name at least one split")
    for name, value in fractions.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"split names must be non-empty strings, got {name!r}")
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"fraction of {name!r} must be a finite number >= 0, got {value!r}")
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {total:g}")


def make_splits(
    volume_keys: Iterable[str],
    fractions: Mapping[str, float] | None = None,
    seed: int | str = 0,
) -> dict[str, list[str]]:
    """Split distinct keys by `fractions` (default train .8 / val .1 / test .1); each list sorted."""
    fractions = dict(fractions) if fractions is not None else {"train": 0.8, "val": 0.1, "test": 0.1}
    _check_fractions(fractions)
    keys = sorted(set(map(str, volume_keys)), key=lambda key: (_rank(seed, key), key))
    splits: dict[str, list[str]] = {}
    start = 0
    for name, size in _sizes(len(keys), fractions).items():
        splits[name] = sorted(keys[start : start + size])
        start += size
    return splits


def make_nested_splits(
    volume_keys: Iterable[str],
    fractions: Mapping[str, float],
    nested: Mapping[str, Mapping[str, float]],
    seed: int | str = 0,
) -> dict[str, list[str]]:
    """Outer splits, plus each `nested[parent]` split of that parent's keys, in one flat dict."""
    splits = make_splits(volume_keys, fractions, seed)
    for parent, inner in nested.items():
        if parent not in splits:
            raise ValueError(f"nested split parent {parent!r} is not one of {list(splits)}")
        clash = set(inner) & set(splits)
        if clash:
            raise ValueError(f"nested split names {sorted(clash)} are already used")
        splits.update(make_splits(splits[parent], inner, f"{seed}/{parent}"))
    return splits


def make_volume_splits(
    refs: Iterable[Any],
    fractions: Mapping[str, float] | None = None,
    seed: int | str = 0,
) -> dict[str, list[str]]:
    """Split `VolumeRef`s (anything with .key and .patient) by patient; returns volume keys per split."""
    by_patient: dict[str, list[str]] = defaultdict(list)
    for ref in refs:
        by_patient[ref.patient or ref.key].append(ref.key)
    patients = make_splits(by_patient, fractions, seed)
    return {name: sorted(key for patient in group for key in by_patient[patient]) for name, group in patients.items()}


def validate_splits(splits: Mapping[str, Iterable[str]]) -> None:
    """Raise ValueError unless every two splits are disjoint or one contains the other (nesting)."""
    sets = {name: set(keys) for name, keys in splits.items()}
    for name, keys in splits.items():
        keys = list(keys)
        if len(keys) != len(sets[name]):
            raise ValueError(f"split {name!r} lists a key twice")
        if not all(isinstance(key, str) for key in keys):
            raise ValueError(f"split {name!r} holds a non-string key")
    names = list(sets)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            a, b = sets[first], sets[second]
            shared = a & b
            if shared and not (a <= b or b <= a):
                example = sorted(shared)[0]
                raise ValueError(f"splits {first!r} and {second!r} overlap without nesting (e.g. {example!r})")


def save_splits(
    path: str | os.PathLike[str],
    splits: Mapping[str, Iterable[str]],
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write splits (and JSON-able `meta`, e.g. seed, fractions, source dir) as JSON; returns the path."""
    splits = {name: list(keys) for name, keys in splits.items()}
    validate_splits(splits)
    document = {"format": FORMAT, "version": VERSION, "splits": splits, "meta": dict(meta or {})}
    return write_json(path, document)


def load_splits_with_meta(path: str | os.PathLike[str]) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """(splits, meta) from a file written by `save_splits`; validates format and disjointness."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"{path}: not a kspacify splits file")
    if document.get("version") != VERSION:
        raise ValueError(f"{path}: unsupported splits version {document.get('version')!r}")
    raw = document.get("splits")
    if not isinstance(raw, dict) or not all(isinstance(keys, list) for keys in raw.values()):
        raise ValueError(f"{path}: 'splits' must map names to lists of keys")
    splits = {str(name): [str(key) for key in keys] for name, keys in raw.items()}
    validate_splits(raw)
    meta = document.get("meta") or {}
    return splits, dict(meta)


def load_splits(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """The splits of a file written by `save_splits` (name -> keys, in file order)."""
    return load_splits_with_meta(path)[0]
