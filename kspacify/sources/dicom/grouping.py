"""Grouping images into volumes: a `GroupKey` of everything that must not differ inside one stack,
then slice order along the canonical normal, then splits of what one key still mixes (parallel
stacks, repeated acquisitions, trigger times, one volume per mosaic file).

Output names and volume keys are derived from `GroupKey.name_seed()` and the split label: they
must stay byte-for-byte what earlier versions wrote, since `--resume` finds finished outputs by
name and a manifest's shards agree on names (`tests/test_dicom_names.py` pins them).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np

from ...acquisition import Acquisition, from_header_fields
from ..base import Pseudonymizer, Skipped, SliceRef, VolumeInfo, stable_key
from ..checks import where
from ..orientation import IDENTITY, InPlane, canonical_inplane
from .header import Header, degenerate, rounded
from .pairing import Built, pair
from .phase import Rule, unit_rule
from .records import FileFrames, Image, component, is_localizer
from .vendor import ge_component

__all__ = ["Group", "GroupFacts", "GroupKey", "Grouper", "Label", "keyed_images"]

_COMPONENT_SUFFIX = {"phase": "_ph", "real": "_re", "imaginary": "_im", "mixed": "_mx"}
_POS_TOL = 0.01  # mm; projected positions closer than this are "the same slice position"
_IOP_TOL = 1e-3  # direction-cosine tolerance for "same orientation"
# ImageType values of maps computed from diffusion images (Siemens, GE, Philips): not acquisitions
_DERIVED_MAPS = frozenset({"ADC", "EADC", "FA", "TRACEW"})
_ISOTROPIC_REASON = ("derived diffusion image (an isotropic trace stored with the series' directional "
                     "images, as dcm2niix removes it): not an acquisition")

Label = tuple[tuple[str, Any], ...]  # how a group was split: (("stack", 1), ("repeat", 2)), ...


class GroupKey(NamedTuple):
    """What must be equal for images to share a volume (values rounded as compared)."""

    series_uid: str
    orientation: tuple[float, ...] | None  # ImageOrientationPatient, the series' first within _IOP_TOL
    rows: int
    cols: int
    pixel_spacing: tuple[float, float] | None  # rounded to 4 digits
    echo_number: int | None
    echo_time: float | None  # rounded to 3 digits
    temporal_position: int | None
    image_type: tuple[str, ...]
    component: str | None
    b_value: float | None  # rounded to 2 digits
    b_vector: tuple[float, ...] | None  # rounded to 3 digits
    stack: int | None
    # load cuts tiles by the group's grid, so other layouts are kept apart: tiles per side, or
    # (rows, columns) of tiles where they differ (UIH VFRAME)
    mosaic_grid: int | tuple[int, int] | None = None
    # phase images: how their values become radians (`phase.unit_rule`); not in names
    phase_rule: Rule | None = None

    def name_seed(self) -> str:
        """The text output names and volume keys are derived from (with the series UID and the
        split label): every value but the series UID, orientation rounded to 3 digits so jitter
        does not change it. Written as the repr of the tuple earlier versions keyed groups by (the
        grid only for mosaics), so names stay what they were."""
        iop = None if self.orientation is None else tuple(round(v, 3) + 0.0 for v in self.orientation)
        rest = (iop, self.rows, self.cols, self.pixel_spacing, self.echo_number, self.echo_time,
                self.temporal_position, self.image_type, self.component, self.b_value, self.b_vector, self.stack)
        if self.mosaic_grid is not None:
            rest += (self.mosaic_grid,)  # type: ignore[assignment]
        return repr(rest)


@dataclass(frozen=True, slots=True)
class GroupFacts:
    """Values a volume reports but does not group by (or not as rounded): from its first image."""

    series_number: int | None
    pixel_spacing: tuple[float, ...] | None
    slice_thickness: float | None
    spacing_between: float | None
    echo_number: int | None
    echo_time: float | None
    component: str | None
    meta: dict[str, Any]
    sequence: tuple[Any, ...] = (None, None, None, None, None)  # `Frame.sequence`
    study_uid: str = ""  # for pairing phase with magnitude images only: never written
    frame_of_reference: str | None = None


@dataclass(slots=True)
class Group:
    key: GroupKey
    facts: GroupFacts
    patient: str
    images: list[Image]
    stale: bool = False  # the file its facts came from was removed (`Grouper.remove`)

    @property
    def iop(self) -> tuple[float, ...] | None:
        return self.key.orientation


def keyed_images(path: str, ds: Header, file: FileFrames, keep_components: bool,
                 native: Any = None) -> tuple[list[tuple[GroupKey, GroupFacts, list[Image], str | None]], str | None]:
    """Per frame its key, facts, the images (slices: one, or a mosaic's tiles) it holds and its
    diffusion kind; plus a skip reason if none is kept. `native` (where the pixel values are)
    goes to a classic image."""
    out: list[tuple[GroupKey, GroupFacts, list[Image], str | None]] = []
    reasons: Counter[str] = Counter()
    common = file.common
    described_as_localizer = is_localizer((), file.descriptions)
    for fr in file.frames:
        itype = fr.image_type
        if described_as_localizer or is_localizer(itype, ()):
            reasons["localizer"] += 1
            continue
        if _DERIVED_MAPS.intersection(itype[2:]):
            reasons["derived diffusion map (ADC, trace or FA), not an acquisition"] += 1
            continue
        what = component(itype, None if fr.complex_component is None else str(fr.complex_component))
        if what is None and not file.enhanced:
            what = ge_component(ds)
        if what and what != "phase" and not keep_components:
            reasons[f"{what} image (not magnitude)"] += 1
            continue  # (phase images are kept, to pair them with their magnitudes)
        iop = fr.orientation
        if iop is not None and degenerate(iop):
            iop = None  # degenerate orientation: treat as unknown
        key = GroupKey(
            file.series_uid, iop, file.rows, file.cols,
            None if fr.pixel_spacing is None else (round(fr.pixel_spacing[0], 4), round(fr.pixel_spacing[1], 4)),
            fr.echo_number, rounded(fr.echo_time, 3), fr.temporal_position, itype, what, rounded(fr.b_value, 2),
            None if fr.b_vector is None else tuple(round(v, 3) for v in fr.b_vector), fr.stack,
            common.get("mosaic_grid") if "mosaic_grid_rows" not in common
            else (common["mosaic_grid_rows"], common["mosaic_grid"]),
            unit_rule(ds, fr.frame) if what == "phase" else None,
        )
        meta = dict(common)
        meta["image_type"] = list(itype)
        if fr.echo_time is not None:
            meta["echo_time"] = fr.echo_time
        if fr.echo_number is not None:
            meta["echo_number"] = fr.echo_number
        for name, value in fr.timing.items():
            if value is not None:
                meta[name] = value
        if fr.temporal_position is not None:
            meta["temporal_position"] = fr.temporal_position
        if fr.b_value is not None:
            meta["diffusion_b_value"] = fr.b_value
        if what:
            meta["complex_component"] = what
        if file.enhanced:
            meta["multi_frame"] = True
        facts = GroupFacts(file.series_number, fr.pixel_spacing, fr.slice_thickness, fr.spacing_between,
                           fr.echo_number, fr.echo_time, what, meta, fr.sequence, file.study_uid,
                           file.frame_of_reference)
        if fr.tiles is None:
            images = [Image(path, fr.frame, fr.position, fr.instance, file.acquisition, fr.trigger,
                            native if fr.frame is None else None)]
        else:  # native pixels describe the whole mosaic: each tile is cut from it at load
            images = [Image(path, tile, position, fr.instance, file.acquisition, fr.trigger, native)
                      for tile, position in fr.tiles]
        out.append((key, facts, images, fr.diffusion))
    reason = None
    if not out:
        reason = ", ".join(f"{r}" if n == 1 else f"{n} frames: {r}" for r, n in reasons.items()) or "no images"
    return out, reason


class Grouper:
    """Collects keyed images into groups (orientations within _IOP_TOL of the series' first
    count as the same), then turns the groups into volumes.

    Isotropic diffusion-weighted images are held back until every file has been read: in a
    series that also has directional ones they are the trace Philips derives and stores with
    them (dcm2niix removes it), and are skipped; alone (an isotropic acquisition) they are kept.
    """

    def __init__(self, keep_components: bool = False) -> None:
        self.keep_components = keep_components  # phase, real, imaginary volumes are volumes too
        self.groups: dict[GroupKey, Group] = {}
        # IOP clustering per series: series uid -> list of reference orientations
        self._orientations: dict[str, list[tuple[float, ...]]] = defaultdict(list)
        self._isotropic: dict[str, list[tuple[GroupKey, GroupFacts, list[Image], str]]] = defaultdict(list)
        self._directional: set[str] = set()
        self._used: set[str] = set()  # files with an image in a group

    def add(self, key: GroupKey, facts: GroupFacts, images: list[Image], patient: str,
            diffusion: str | None = None) -> None:
        if diffusion == "isotropic":
            self._isotropic[key.series_uid].append((key, facts, images, patient))
            return
        if diffusion == "directional":
            self._directional.add(key.series_uid)
        self._add(key, facts, images, patient)

    def _clustered(self, key: GroupKey, add: bool) -> GroupKey:
        """`key` with its orientation the series' reference one within _IOP_TOL (`add`: a new one
        becomes a reference)."""
        iop = key.orientation
        if iop is None:
            return key
        for ref in self._orientations.get(key.series_uid, ()):
            if ref == iop or max(abs(a - b) for a, b in zip(ref, iop)) < _IOP_TOL:
                return key._replace(orientation=ref)
        if add:
            self._orientations[key.series_uid].append(iop)
        return key

    def images_like(self, key: GroupKey) -> int:
        """How many images the group of `key` holds so far."""
        group = self.groups.get(self._clustered(key, add=False))
        return len(group.images) if group is not None else 0

    def _add(self, key: GroupKey, facts: GroupFacts, images: list[Image], patient: str) -> None:
        self._used.add(images[0].path)
        key = self._clustered(key, add=True)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(key, facts, patient, [])
        elif group.stale:
            group.facts, group.stale = facts, False
        group.images.extend(images)

    def remove(self, path: str) -> None:
        """Take the images of file `path` out again (a copy of them turned out to be the one to use)."""
        for key in list(self.groups):
            group = self.groups[key]
            kept = [image for image in group.images if image.path != path]
            if len(kept) == len(group.images):
                continue
            if not kept:
                del self.groups[key]
            else:  # its facts may be the removed file's: the next image added gives them
                group.images, group.stale = kept, True
        for series_uid, held in self._isotropic.items():
            self._isotropic[series_uid] = [entry for entry in held if entry[2][0].path != path]
        self._used.discard(path)

    def _emitted(self, key: GroupKey) -> bool:
        """Whether the group's volumes are volumes (phase groups are otherwise only paired)."""
        return key.component is None or self.keep_components

    def volumes(self, pseudonymize: Pseudonymizer) -> Iterator[VolumeInfo | Skipped]:
        """The volumes, magnitudes with the phase images paired with them (`pairing.pair`); phase
        images paired with none are reported (and, with keep_components, are volumes themselves)."""
        derived: set[str] = set()
        for series_uid, held in self._isotropic.items():
            for key, facts, images, patient in held:
                if series_uid in self._directional:
                    derived.add(images[0].path)
                else:
                    self._add(key, facts, images, patient)
        out: list[VolumeInfo | Skipped] = [Skipped(path, _ISOTROPIC_REASON) for path in derived - self._used]
        by_series: dict[str, list[GroupKey]] = defaultdict(list)
        for key in self.groups:
            by_series[key.series_uid].append(key)
        magnitudes: list[Built] = []
        phases: list[Built] = []
        # only the studies with phase images pair anything (the others pay nothing for it)
        pairing = {(g.patient, g.facts.study_uid) for k, g in self.groups.items() if k.component == "phase"}
        for keys in by_series.values():
            # echo labels (names) from what is written: phase groups kept only for pairing do not count
            echo_labels = _echo_labels([k for k in keys if self._emitted(k)], self.groups)
            for key in keys:
                group = self.groups[key]
                pairs = key.component in (None, "phase") and (group.patient, group.facts.study_uid) in pairing
                positions_of = {(im.path, im.frame): im.position for im in group.images} if pairs else {}
                for item in _group_volumes(group, echo_labels.get(key), len(set(echo_labels.values())), pseudonymize):
                    if pairs and isinstance(item, VolumeInfo):
                        built = Built(item, key, group.facts, tuple(positions_of[(ref.path, ref.frame)] for ref in item.slices))
                        (magnitudes if key.component is None else phases).append(built)
                        if key.component is None:
                            continue
                    if self.keep_components or not (isinstance(item, VolumeInfo) and key.component == "phase"):
                        out.append(item)
        paired = pair(magnitudes, phases)
        out.extend(paired.magnitudes)
        if not self.keep_components:
            out.extend(paired.skipped)
        out.sort(key=lambda v: (0, v.meta.get("series_number") or 0, v.name) if isinstance(v, VolumeInfo)
                 else (1, 0, v.path))
        used: set[str] = set()
        for item in out:
            if isinstance(item, VolumeInfo) and item.name in used:  # (hash collision) keep names unique
                n = 2
                while f"{item.name}_{n}" in used:
                    n += 1
                item = replace(item, name=f"{item.name}_{n}")
            if isinstance(item, VolumeInfo):
                used.add(item.name)
            yield item


def _echo_labels(keys: list[GroupKey], groups: dict[GroupKey, Group]) -> dict[GroupKey, int]:
    """Echo label per group for series with more than one echo (empty dict for single-echo series)."""
    echoes = {(groups[k].facts.echo_number, rounded(groups[k].facts.echo_time, 3)) for k in keys}
    if len(echoes) <= 1:
        return {}
    numbers = {e[0] for e in echoes}
    by_number = None not in numbers and len(numbers) == len(echoes)
    times = sorted({e[1] for e in echoes}, key=lambda t: (t is None, t or 0.0))
    labels = {}
    for k in keys:
        facts = groups[k].facts
        labels[k] = facts.echo_number if by_number else times.index(rounded(facts.echo_time, 3)) + 1
    return labels  # type: ignore[return-value]


def _position_keys(group: Group, inplane: InPlane) -> tuple[list[float] | None, str]:
    """Per-image sort coordinate along the canonical normal, or instance numbers as fallback."""
    if group.iop is not None and all(im.position is not None for im in group.images):
        normal = np.asarray(inplane.normal)
        return [float(np.dot(im.position, normal)) for im in group.images], "position"  # type: ignore[arg-type]
    if "mosaic_grid" in group.facts.meta:  # a mosaic's slices are its tiles, in order (instance: the file's)
        return [float(im.frame or 0) for im in group.images], "mosaic_tile"
    if all(im.instance is not None for im in group.images):
        return [float(im.instance) for im in group.images], "instance_number"  # type: ignore[arg-type]
    return None, "file"


def _unique_positions(values: list[float]) -> bool:
    ordered = sorted(values)
    return all(b - a > _POS_TOL for a, b in zip(ordered, ordered[1:]))


def _split_duplicates(images: list[Image], coords: list[float]) -> list[tuple[Label, list[int]]] | None:
    """Index lists of volumes with unique positions, or None when the duplicates can't be resolved."""
    index = list(range(len(images)))
    if _unique_positions(coords):
        return [((), index)]
    for attr in ("acquisition", "trigger"):
        values = [getattr(im, attr) for im in images]
        if None in values or len(set(values)) < 2:
            continue
        parts: dict[Any, list[int]] = defaultdict(list)
        for i, v in enumerate(values):
            parts[v].append(i)
        if all(_unique_positions([coords[i] for i in part]) for part in parts.values()):
            return [(((attr, v),), parts[v]) for v in sorted(parts)]
    # repeated acquisitions in one series: every position present equally often -> split by order
    clusters: list[list[int]] = []
    for i in sorted(index, key=lambda i: coords[i]):
        if clusters and coords[i] - coords[clusters[-1][0]] <= _POS_TOL:
            clusters[-1].append(i)
        else:
            clusters.append([i])
    counts = {len(c) for c in clusters}
    if len(counts) != 1:
        return None
    repeats = counts.pop()
    for c in clusters:
        c.sort(key=lambda i: _acquisition_order(images[i]))
    return [((("repeat", r + 1),), [c[r] for c in clusters]) for r in range(repeats)]


def _acquisition_order(image: Image) -> tuple:
    """Images of one position (or mosaic files) in the order they were acquired, as far as known."""
    return (image.instance is None, image.instance or 0, image.path, image.frame or 0)


def _split_files(images: list[Image]) -> list[tuple[Label, list[int]]]:
    """One volume per file, in acquisition order: a Siemens mosaic file is a whole volume (one time
    point or diffusion direction), and its slice positions cannot tell it from the series' other
    mosaics (they are the same, or moved a little by prospective motion correction)."""
    by_file: dict[str, list[int]] = defaultdict(list)
    for i, image in enumerate(images):
        by_file[image.path].append(i)
    files = sorted(by_file.values(), key=lambda idx: _acquisition_order(images[idx[0]]))
    return [((("volume", k + 1),) if len(files) > 1 else (), idx) for k, idx in enumerate(files)]


def _split(images: list[Image], coords: list[float], inplane: InPlane, group: Group,
           by_position: bool) -> list[tuple[Label, list[int]]] | None:
    """Split a group into volumes: first parallel stacks side by side, then duplicated positions.

    Stacks with the same orientation but shifted in-plane (e.g. spine stations) are separate volumes;
    in MR all slices of one stack lie on a line along the normal. Mosaics are split by file.
    """
    if "mosaic_grid" in group.facts.meta:
        return _split_files(images)
    stacks = [list(range(len(images)))]
    if by_position and len(images) > 1:
        normal = np.asarray(inplane.normal)
        pos = np.asarray([im.position for im in images], dtype=float)
        offsets = pos - np.outer(pos @ normal, normal)
        tol = max(0.5, 0.5 * min(group.facts.pixel_spacing or (1.0, 1.0)))
        if float(np.max(np.linalg.norm(offsets - offsets[0], axis=1))) > tol:
            refs: list[np.ndarray] = []
            stacks = []
            for i, off in enumerate(offsets):
                for k, ref in enumerate(refs):
                    if float(np.linalg.norm(off - ref)) <= tol:
                        stacks[k].append(i)
                        break
                else:
                    refs.append(off)
                    stacks.append([i])
    out: list[tuple[Label, list[int]]] = []
    for k, members in enumerate(stacks):
        sub = _split_duplicates([images[i] for i in members], [coords[i] for i in members])
        if sub is None:
            return None
        prefix: Label = (("stack", k + 1),) if len(stacks) > 1 else ()
        out.extend((prefix + label, [members[i] for i in idx]) for label, idx in sub)
    return out


def _slice_step(coords: list[float] | None, by_position: bool, group: Group) -> tuple[float, dict[str, Any]]:
    notes: dict[str, Any] = {}
    if by_position and coords is not None and len(coords) > 1:
        gaps = np.diff(np.asarray(coords))
        step = float(np.median(gaps))
        if step > 0:
            spread = float(np.max(np.abs(gaps - step)))
            uniform = spread <= max(0.01, 0.05 * step)
            notes["uniform_slice_spacing"] = bool(uniform)
            if not uniform:
                notes["slice_gap_range_mm"] = [round(float(gaps.min()), 4), round(float(gaps.max()), 4)]
            return step, notes
    for value in (group.facts.spacing_between, group.facts.slice_thickness):
        if value is not None and value > 0:
            return float(value), notes
    return 1.0, notes


_LABEL_NAMES = {"stack": ("_st", "stack"), "acquisition": ("_a", "acquisition_number"),
                "repeat": ("_r", "repeat"), "volume": ("_v", "volume_index")}


def _group_volumes(group: Group, echo: int | None, n_echoes: int,
                   pseudonymize: Pseudonymizer) -> list[VolumeInfo | Skipped]:
    key, facts = group.key, group.facts
    series_uid = key.series_uid
    inplane = canonical_inplane(np.asarray(group.iop[:3]), np.asarray(group.iop[3:])) if group.iop else IDENTITY
    images = group.images
    coords, order_by = _position_keys(group, inplane)
    if coords is None:  # neither positions nor instance numbers: file name order
        ranked = sorted(range(len(images)), key=lambda i: (images[i].path, images[i].frame or 0))
        coords = [0.0] * len(images)
        for rank, i in enumerate(ranked):
            coords[i] = float(rank)
    parts = _split(images, coords, inplane, group, order_by == "position")
    series = facts.series_number if facts.series_number is not None else "?"
    if parts is None:  # a fault: images of the series are lost, so it is named, not counted
        return [Skipped(
            where(sorted({image.path for image in images})),
            f"series {series}: {len(images)} images with duplicated slice positions that could not be "
            "separated into volumes (neither by acquisition number, trigger time nor as repeats)",
            failed=True,
        )]
    trigger_rank = {t: i + 1 for i, t in enumerate(sorted({v for label, _ in parts for k, v in label
                                                            if k == "trigger"}))}
    out: list[VolumeInfo | Skipped] = []
    seed = key.name_seed()
    acquisition = _acquisition(group, inplane)
    for label, part in parts:
        part = sorted(part, key=lambda i: (coords[i], images[i].instance or 0, images[i].path, images[i].frame or 0))
        step, notes = _slice_step([coords[i] for i in part], order_by == "position", group)
        row_sp, col_sp = facts.pixel_spacing or (1.0, 1.0)
        r_sp, c_sp = inplane.spacing(row_sp, col_sp)
        rows, cols = (key.cols, key.rows) if inplane.transpose else (key.rows, key.cols)
        number = facts.series_number if facts.series_number is not None and facts.series_number >= 0 else 0
        name = f"s{number:03d}_{pseudonymize(series_uid + '|' + seed + '|' + repr(label), 8)}"
        if echo is not None:
            name += f"_e{echo}"
        if facts.component:
            name += _COMPONENT_SUFFIX.get(facts.component, "_x")
        meta = dict(facts.meta)
        meta.update(notes)
        for kind, value in label:
            if kind == "trigger":
                name += f"_t{trigger_rank[value]}"
                meta["trigger_time"] = value
            elif kind in _LABEL_NAMES:
                suffix, field = _LABEL_NAMES[kind]
                name += f"{suffix}{value}"
                meta[field] = value
        if label:
            meta["split_by"] = [kind for kind, _ in label]
        meta["series_number"] = facts.series_number
        meta["plane"] = inplane.plane
        meta["slice_order"] = order_by
        if group.iop is not None:
            meta["image_orientation"] = [round(v, 6) + 0.0 for v in group.iop]
        meta["inplane_transform"] = {
            "transpose": inplane.transpose, "flip_rows": inplane.flip_rows, "flip_cols": inplane.flip_cols,
        }
        meta["stored_shape"] = [key.rows, key.cols]
        if facts.slice_thickness is not None:
            meta["slice_thickness"] = facts.slice_thickness
        if facts.pixel_spacing is None:
            meta["pixel_spacing_assumed"] = True  # no PixelSpacing: 1 mm used
        if echo is not None:
            meta["echo_index"] = echo
            meta["n_echoes"] = n_echoes
        meta = {k: v for k, v in meta.items() if v is not None}
        out.append(VolumeInfo(
            source_kind="dicom",
            name=name,
            key=stable_key(series_uid, seed, repr(label)),
            patient=group.patient,
            slices=tuple(SliceRef(images[i].path, images[i].frame, images[i].native) for i in part),
            shape=(len(part), rows, cols),
            spacing=(float(step), float(r_sp), float(c_sp)),
            meta=meta,
            acquisition=acquisition,
        ))
    return out


def _acquisition(group: Group, inplane: InPlane) -> Acquisition:
    """The group's acquisition, from its first image's values (what is grouped by, echo and image
    type, is the same for all), the B0 direction from its orientation (unknown where that is)."""
    facts, meta = group.facts, group.facts.meta
    scanning, variant, echo_pulse, echo_planar, inversion = facts.sequence
    return from_header_fields({
        "MagneticFieldStrength": meta.get("magnetic_field_strength"), "EchoTime": facts.echo_time,
        "RepetitionTime": meta.get("repetition_time"), "InversionTime": meta.get("inversion_time"),
        "FlipAngle": meta.get("flip_angle"), "ScanningSequence": scanning, "SequenceVariant": variant,
        "ImageType": group.key.image_type, "EchoPulseSequence": echo_pulse, "EchoPlanarPulseSequence": echo_planar,
        "InversionRecovery": inversion,
    }, inplane.b0_direction())  # fmt: skip
