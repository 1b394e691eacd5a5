"""Training state and exported weights on disk: tensors in safetensors, everything else in JSON.

Never pickle (`torch.save` is pickle): a checkpoint or weights file from elsewhere must not be able to
run code when it is loaded. Any nested state (an optimizer's `state_dict`, a scheduler's, a scaler's)
is split by `split_state` into a JSON tree, in which each tensor is replaced by a reference
{"__tensor__": name}, and a flat {name: tensor} dict; `join_state` reverses it exactly. Dicts whose
keys are not all strings (an optimizer's state is keyed by parameter index) are stored as
{"__items__": [[key, value], ...]} so the key types survive.

Files come in pairs, `X.safetensors` + `X.json`. The JSON is written last and records the sha256 of
the safetensors file, so a pair is valid only when both are there and agree: a crash between the two
writes, a truncated or replaced file, is detected on load (`PairError`). Each file is written under a
temporary name and renamed, so a file that exists is complete.

Exported weights (`export_weights` / `load_weights`) are such a pair whose JSON is the model card:
format, weights file, sha256, size, creation time, plus the caller's sections (architecture, config,
data, training, quality).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from kspacify.atomic import atomic_path, write_json

__all__ = [
    "WEIGHTS_FORMAT",
    "PairError",
    "card_path",
    "deep_merge",
    "export_weights",
    "join_state",
    "load_weights",
    "read_pair",
    "sha256_file",
    "split_state",
    "write_pair",
]

WEIGHTS_FORMAT = "kspacify-weights"
_TENSOR = "__tensor__"
_ITEMS = "__items__"


class PairError(RuntimeError):
    """A safetensors + JSON pair is missing, corrupt, or its two files do not agree."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def card_path(path: str | Path) -> Path:
    """The JSON beside a .safetensors file: same name, .json suffix."""
    return Path(path).with_suffix(".json")


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`base` updated by `extra`, recursing into dicts both have (neither is modified)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def split_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """A JSON-able copy of `obj` with every tensor moved into `tensors` under a name starting with
    `prefix`; raises TypeError for anything that JSON cannot hold without pickle."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().to("cpu").contiguous().clone()
        return {_TENSOR: prefix}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: split_state(v, f"{prefix}/{k}", tensors) for k, v in obj.items()}
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"{prefix}: cannot store dict key {k!r} ({type(k).__name__}) without pickle")
            items.append([k, split_state(v, f"{prefix}/{k}", tensors)])
        return {_ITEMS: items}
    if isinstance(obj, (list, tuple)):
        return [split_state(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"{prefix}: cannot store {type(obj).__name__} without pickle")


def join_state(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of `split_state` (tuples come back as lists)."""
    if isinstance(tree, dict):
        if set(tree) == {_TENSOR}:
            return tensors[tree[_TENSOR]]
        if set(tree) == {_ITEMS}:
            return {k: join_state(v, tensors) for k, v in tree[_ITEMS]}
        return {k: join_state(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [join_state(v, tensors) for v in tree]
    return tree


def write_pair(path: str | Path, tensors: dict[str, torch.Tensor], document: dict[str, Any]) -> dict[str, Any]:
    """Write `path` (.safetensors, its metadata naming the document's format) then its JSON
    (`document` plus the file name, sha256 and size); returns the JSON."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"weights files must end in .safetensors, got {path}")
    cpu = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}  # copies: tied weights may share memory
    metadata = {"format": str(document.get("format", ""))}
    with atomic_path(path) as tmp:
        save_file(cpu, str(tmp), metadata=metadata)
    document = {**document, "weights_file": path.name, "sha256": sha256_file(path), "size_bytes": path.stat().st_size}
    write_json(card_path(path), document, allow_nan=True)
    return document


def read_pair(path: str | Path, expected_format: str | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(JSON document, tensors) of a pair written by `write_pair`; `path` names either file.
    Raises PairError unless both exist, the JSON parses (and has `expected_format`) and the sha256 agrees."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    json_file = card_path(path)
    weights = path.with_suffix(".safetensors")
    if not json_file.is_file() or not weights.is_file():
        missing = json_file if not json_file.is_file() else weights
        raise PairError(f"{missing}: file not found")
    try:
        document = json.loads(json_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PairError(f"{json_file}: not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise PairError(f"{json_file}: not a JSON object")
    if expected_format is not None and document.get("format") != expected_format:
        raise PairError(f"{json_file}: format is {document.get('format')!r}, expected {expected_format!r}")
    actual = sha256_file(weights)
    if document.get("sha256") != actual:
        raise PairError(f"{weights}: sha256 is {actual}, {json_file.name} says {document.get('sha256')} (corrupt or replaced)")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as error:
        raise PairError(f"{weights}: not a readable safetensors file ({error})") from None
    return document, tensors


def export_weights(path: str | Path, tensors: dict[str, torch.Tensor], card: dict[str, Any]) -> dict[str, Any]:
    """Write final weights and their model card (`card` merged over the standard fields); returns the card."""
    from kspacify import __version__

    base = {
        "format": WEIGHTS_FORMAT,
        "format_version": 1,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "kspacify_version": __version__,
        "parameters": int(sum(t.numel() for t in tensors.values() if t.is_floating_point())),
    }
    return write_pair(path, tensors, deep_merge(base, card))


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, model card) of weights written by `export_weights`, sha256-verified (PairError if not)."""
    card, tensors = read_pair(path, WEIGHTS_FORMAT)
    return tensors, card
