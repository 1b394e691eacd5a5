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

The one split policy of the project (every trainer and the benchmark use `volume_splits`): the unit
a split keeps together is `split_unit(ref)`, the subject: the reader's patient where the files name
one (fastMRI's `patient_id`, a JSON sidecar's subject), else the first folder of the volume key
(`subject/scan` layouts, `kspacify data build`'s `<subject>/<volume>`), else the volume. Units are
split by the seeded hash above, with one exception: volumes whose sidecar says the subject is
unknown (numbered blocks of consecutive slices, where neighbours may be one subject) are split into
contiguous runs in natural name order, rotated by the seed, so no split interleaves with another.

Files are JSON: {"format": "kspacify-splits", "version": 1, "splits": {name: [keys]}, "meta": {...}}.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from kspacify.atomic import write_json
from kspacify.errors import DataError

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


def split_unit(ref: Any) -> str:
    """What a split keeps together for a `VolumeRef` (see the module doc): its subject."""
    if ref.patient:
        return f"patient:{ref.patient}"
    if ref.meta.get("subject_unknown"):
        return f"volume:{ref.key}"
    return f"folder:{ref.key.split('/', 1)[0]}" if "/" in ref.key else f"volume:{ref.key}"


def _natural(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def contiguous_splits(units: Sequence[str], fractions: Mapping[str, float], seed: int | str = 0) -> dict[str, list[str]]:
    """Ordered units cut into one contiguous run per split (sizes as `make_splits`), the order
    rotated by a seeded offset so another seed gives other runs; each list sorted."""
    _check_fractions(fractions)
    ordered = sorted(set(units), key=_natural)
    offset = int(_rank(seed, "contiguous offset"), 16) % len(ordered) if ordered else 0
    ordered = ordered[offset:] + ordered[:offset]
    splits, start = {}, 0
    for name, size in _sizes(len(ordered), fractions).items():
        splits[name] = sorted(ordered[start : start + size], key=_natural)
        start += size
    return splits


def split_volumes(refs: Iterable[Any], fractions: Mapping[str, float], seed: int | str = 0) -> dict[str, list[str]]:
    """The project's split of `VolumeRef`s by `split_unit`: volume keys per split."""
    units: dict[str, list[Any]] = {}
    for ref in refs:
        units.setdefault(split_unit(ref), []).append(ref)
    ordered = [u for u, members in units.items() if all(r.meta.get("subject_unknown") for r in members)]
    hashed = [u for u in units if u not in set(ordered)]
    groups: dict[str, list[str]] = {name: [] for name in fractions}
    for part in (make_splits(hashed, fractions, seed) if hashed else {},
                 contiguous_splits(ordered, fractions, seed) if ordered else {}):  # fmt: skip
        for name, members in part.items():
            groups[name] += members
    return {name: sorted(r.key for u in members for r in units[u]) for name, members in groups.items()}


def volume_splits(
    refs: Sequence[Any],
    path: Path,
    fractions: Mapping[str, float],
    seed: int | str = 0,
    *,
    save: bool = True,
    required: Sequence[str] = (),
) -> dict[str, list[str]]:
    """The splits of `refs` in `path` when it exists (every listed key must still be in the data and
    every `required` split non-empty; else a DataError), or made by `split_volumes` and written there
    (when `save`: under torchrun only rank 0 writes; the others make the same splits)."""
    keys = {ref.key for ref in refs}
    names = list(fractions)
    if path.exists():
        try:
            splits, _ = load_splits_with_meta(path)
        except (OSError, ValueError) as error:
            raise DataError(f"{path}: {error}") from None
        missing = sorted(k for name in names for k in splits.get(name, []) if k not in keys)
        empty = [name for name in required if not splits.get(name)]
        if missing or empty:
            why = f"volume {missing[0]} is not in it" if missing else f"no {empty[0]} split"
            raise DataError(f"{path} does not fit this data ({why}); use another output directory or --splits file")
        return {name: list(splits.get(name, [])) for name in names}
    units = {split_unit(ref) for ref in refs}
    positive = [name for name in names if fractions[name] > 0]
    if len(units) < len(positive):
        raise DataError(f"found {len(refs)} volume(s) of {len(units)} subject(s); splitting into {', '.join(positive)} "
                        f"needs at least {len(positive)}")  # fmt: skip
    splits = split_volumes(refs, fractions, seed)
    if save:
        save_splits(path, splits, {"seed": seed, "fractions": dict(fractions), "subjects": len(units), "volumes": len(refs),
                                   "policy": "kspacify.datasets.splits.split_volumes (split_unit)"})  # fmt: skip
    return splits


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


# The paper's two levels: the phase generators train on genTrain (genVal selects their weights); the
# reconstruction networks of the benchmark split what the generators never saw into recTrain (the
# magnitudes that get each method's phase), recVal (selects each VarNet's weights) and recTest.
GEN_NAMES = ("genTrain", "genVal", "genTest")
# recTrain / recVal / recTest by subject. The paper split 126/30/40 patients; a larger test share here,
# because the benchmark's intervals come from resampling test volumes, and CPU-sized data has few.
REC_FRACTIONS = {"recTrain": 0.5, "recVal": 0.15, "recTest": 0.35}


def gen_splits(refs: Sequence[Any], path: Path, seed: int | str = 0, val_fraction: float = 0.1, test_fraction: float = 0.0,
               *, save: bool = True, allow_single: bool = False) -> dict[str, list[str]]:  # fmt: skip
    """genTrain / genVal / genTest by subject (`volume_splits`): about `val_fraction` of the subjects
    (at least one) validate, `test_fraction` are held out (genTest: never seen by the generator, what
    the benchmark and the realism measures may test on). One subject is an error unless
    `allow_single` (then all of it trains)."""
    units = len({split_unit(ref) for ref in refs})
    if not 0 <= test_fraction < 1:
        raise DataError(f"the held-out share must be in [0, 1), got {test_fraction}")
    if units < 2 and not path.exists():
        if not allow_single:
            raise DataError(f"found {len(refs)} volume(s) of {units} subject(s); a subject-level validation split needs at least 2")
        return volume_splits(refs, path, {"genTrain": 1.0, "genVal": 0.0, "genTest": 0.0}, seed, save=save, required=("genTrain",))
    n_test = min(round(test_fraction * units), units - 2)
    n_val = min(max(1, round(val_fraction * units)), units - 1 - n_test) if units >= 2 else 0
    fractions = {"genTrain": (units - n_val - n_test) / units, "genVal": n_val / units, "genTest": n_test / units}
    return volume_splits(refs, path, fractions, seed, save=save, required=("genTrain",))


def rec_splits(refs: Sequence[Any], path: Path, seed: int | str = 0, *, save: bool = True) -> dict[str, list[str]]:
    """recTrain / recVal / recTest by subject (`volume_splits`); with two subjects there is no recVal
    (training then keeps its last weights)."""
    units = len({split_unit(ref) for ref in refs})
    if units < 2 and not path.exists():
        raise DataError(f"found {len(refs)} volume(s) of {units} subject(s); training and testing need at least 2")
    fractions = REC_FRACTIONS if units >= 3 else {"recTrain": 0.5, "recVal": 0.0, "recTest": 0.5}
    return volume_splits(refs, path, fractions, seed, save=save, required=("recTrain",))
