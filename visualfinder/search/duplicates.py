"""Duplicate groups in three tiers, from index neighbour search (never all pairs).

1. **identical**: the same bytes (content hash).
2. **same picture**: resized, recompressed, slightly cropped or re-encoded copies: CLIP
   neighbours above `candidate_similarity` that pass the perceptual check (perceptual.py).
3. **similar**: CLIP neighbours above `threshold` that are not the same picture.

The best file of a group (listed first) has the most pixels, then a lossless format, then the
most bytes. Each tier groups the groups of the tier before it: an identical group takes part in tier 2 as
its best file, a same-picture group in tier 3 as its best file. Groups are built greedily from
the best (largest) file down, each file joining at most one group per tier, and every member
is a neighbour of the group's first file (no chains of "A looks like B looks like C").

Decisions (kept in catalog.duplicates) are remembered by image id (ids survive renames and moves): a pair marked
`distinct` (not a duplicate) or `keep_both` is never grouped again in any tier.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from visualfinder.catalog.duplicates import (
    decided_pairs,
    embedded_images,
    save_fingerprints,
    stored_fingerprint,
)
from visualfinder.catalog.filters import Filters
from visualfinder.catalog.store import Catalog, ImageRecord
from visualfinder.errors import QueryError
from visualfinder.jobs import CancelToken, Progress, ProgressCallback, no_progress
from visualfinder.search.perceptual import as_array, fingerprint, load_small, same_picture
from visualfinder.search.vector_index import VectorIndex, similarity

log = logging.getLogger(__name__)

TIERS = ("identical", "same_picture", "similar")
_NEIGHBOURS = 16
_MAX_NEIGHBOURS = 1024
_SEARCH_CHUNK = 1024
_SMALL_CACHE = 1024
_LOSSLESS = {"PNG", "TIFF", "BMP", "GIF"}
# Formats a camera or editor writes first (lossless or raw): a copy in one of these is the
# original, a JPEG or WebP of the same picture a re-encoding of it.
ORIGINAL_FORMATS = _LOSSLESS | {"DNG", "CR2", "CR3", "NEF", "ARW", "ORF", "RW2", "RAF", "PEF", "SRW", "RAW",
                                "PPM", "PSD", "HEIF", "HEIC"}  # fmt: skip


def keep_rank(record: ImageRecord) -> tuple:
    """Sort key of the copy to keep, best first: the highest resolution, then the original format
    over a re-encoded one (then the larger file of the same kind), then the copy with product
    data, then the oldest file."""
    pixels = (record.width or 0) * (record.height or 0)
    original = (record.format or "").upper() in ORIGINAL_FORMATS
    return (-pixels, not original, -record.size, not has_product_data(record), record.mtime_ns, record.path)


def has_product_data(record: ImageRecord) -> bool:
    fields = (record.sku, record.title, record.description, record.url, record.price)
    return any(v not in (None, "") for v in fields) or bool(record.extra) or bool(record.tags)


def suggest_keeper(members: list[ImageRecord]) -> int:
    """The position in `members` of the copy to keep (see keep_rank)."""
    return min(range(len(members)), key=lambda i: keep_rank(members[i]))


@dataclass
class DuplicateGroup:
    """Files that are copies (or look-alikes) of each other, the best (largest) first."""

    tier: str
    members: list[ImageRecord]
    similarity: list[float]  # of each member to the first

    @cached_property
    def suggested(self) -> int:
        """The position of the copy to keep (suggest_keeper); the user may choose another."""
        return suggest_keeper(self.members)

    def to_json(self) -> dict:
        keep = self.suggested
        return {
            "tier": self.tier,
            "suggested": keep,
            "members": [
                {"id": r.id, "path": r.path, "width": r.width, "height": r.height, "bytes": r.size,
                 "format": r.format, "similarity": round(s, 6), "title": r.title, "sku": r.sku,
                 "keep": i == keep}
                for i, (r, s) in enumerate(zip(self.members, self.similarity, strict=True))
            ],
        }  # fmt: skip


@dataclass
class DuplicateReport:
    groups: list[DuplicateGroup]
    threshold: float
    candidate_similarity: float
    images: int
    suppressed: int  # pairs not grouped because of a remembered decision
    seconds: float = 0.0
    cancelled: bool = False

    def tier(self, name: str) -> list[DuplicateGroup]:
        return [g for g in self.groups if g.tier == name]

    def to_json(self) -> dict:
        return {"threshold": self.threshold, "candidate_similarity": self.candidate_similarity,
                "images": self.images, "suppressed_pairs": self.suppressed,
                "groups": [g.to_json() for g in self.groups]}  # fmt: skip


@dataclass
class _Image:
    id: int
    path: str
    size: int
    pixels: int
    digest: str | None
    thumb: str | None
    format: str | None

    @property
    def quality(self) -> tuple:
        """Sort key, best first: most pixels, then a lossless format, then the most bytes."""
        return (-self.pixels, self.format not in _LOSSLESS, -self.size, self.path)


@dataclass
class _Unit:
    """A group from the tier below, standing in for it by its best file."""

    rep: _Image
    members: set[int] = field(default_factory=set)


class DuplicateFinder:
    """One run over a library's active index."""

    def __init__(
        self,
        catalog: Catalog,
        index: VectorIndex,
        model_key: str,
        *,
        threshold: float,
        candidate_similarity: float,
        max_pixels: int = 250_000_000,
    ):
        if not -1.0 <= threshold <= 1.0:
            raise QueryError(f"the threshold is a similarity between -1 and 1, not {threshold}")
        self.catalog = catalog
        self.index = index
        self.metric = index.spec.metric
        self.model_key = model_key
        self.threshold = threshold
        self.floor = min(candidate_similarity, threshold)
        self.max_pixels = max_pixels
        self._decided: dict[int, set[int]] = defaultdict(set)
        self._suppressed: set[tuple[int, int]] = set()
        self._prints: dict[str, bytes] = {}
        self._new_prints: dict[str, bytes] = {}
        self._smalls: OrderedDict[str, np.ndarray | None] = OrderedDict()
        self._neighbours: dict[int, list[tuple[int, float]]] = {}

    def run(
        self,
        filters: Filters | None = None,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
    ) -> DuplicateReport:
        started = time.perf_counter()
        images = self._images(filters)
        for a, b in decided_pairs(self.catalog):
            self._decided[a].add(b)
            self._decided[b].add(a)
        groups: list[DuplicateGroup] = []
        identical, units = self._identical(images)
        groups += identical
        self._search(units, progress, cancel)
        same, units = self._cluster(units, "same_picture", progress, cancel)
        groups += same
        similar, _ = self._cluster(units, "similar", progress, cancel)
        groups += similar
        self._save_fingerprints()
        return DuplicateReport(
            groups,
            self.threshold,
            self.floor,
            len(images),
            len(self._suppressed),
            time.perf_counter() - started,
        )

    # --- tiers ---------------------------------------------------------------------------

    def _identical(self, images: dict[int, _Image]) -> tuple[list[DuplicateGroup], list[_Unit]]:
        by_hash: dict[str, list[_Image]] = defaultdict(list)
        units: list[_Unit] = []
        for image in images.values():
            if image.digest:
                by_hash[image.digest].append(image)
            else:
                units.append(_Unit(image, {image.id}))
        groups = []
        for same in by_hash.values():
            remaining = sorted(same, key=lambda i: i.quality)
            while remaining:
                leader, rest = remaining[0], remaining[1:]
                members = [leader]
                remaining = []
                for image in rest:
                    if self._is_decided({leader.id}, {image.id}) or any(
                        self._is_decided({m.id}, {image.id}) for m in members[1:]
                    ):
                        remaining.append(image)
                    else:
                        members.append(image)
                units.append(_Unit(leader, {m.id for m in members}))
                if len(members) > 1:
                    groups.append(self._group("identical", [m.id for m in members], [1.0] * len(members)))
        return groups, units

    def _cluster(
        self, units: list[_Unit], tier: str, progress: ProgressCallback, cancel: CancelToken | None
    ) -> tuple[list[DuplicateGroup], list[_Unit]]:
        """Greedy grouping around the best files; returns the groups and the next tier's units."""
        unit_of = {member: unit for unit in units for member in unit.members}
        ordered = sorted(units, key=lambda u: u.rep.quality)
        taken: set[int] = set()
        groups, next_units = [], []
        floor = self.floor if tier == "same_picture" else self.threshold
        for done, unit in enumerate(ordered):
            if cancel is not None and done % 256 == 0:
                cancel.raise_if_cancelled()
            if done % 256 == 0:
                progress(Progress(f"duplicates: {tier.replace('_', ' ')}", done, len(ordered)))
            if id(unit) in taken:
                continue
            taken.add(id(unit))
            members, scores = [unit], [1.0]
            for neighbour_id, score in self._neighbours.get(unit.rep.id, []):
                other = unit_of.get(neighbour_id)
                if other is None or id(other) in taken or score < floor:
                    continue
                if any(self._is_decided(m.members, other.members) for m in members):
                    continue
                if tier == "same_picture" and not self._same_picture(unit.rep, other.rep):
                    continue
                taken.add(id(other))
                members.append(other)
                scores.append(score)
            merged = _Unit(unit.rep, set().union(*(m.members for m in members)))
            next_units.append(merged)
            if len(members) > 1:
                ranked = [(members[0], scores[0])] + sorted(
                    zip(members[1:], scores[1:], strict=True), key=lambda p: p[0].rep.quality
                )
                groups.append(
                    self._group(tier, [m.rep.id for m, _ in ranked], [score for _, score in ranked])
                )
        return groups, next_units

    def _is_decided(self, a: set[int], b: set[int]) -> bool:
        for x in a:
            hit = self._decided.get(x)
            if hit and (found := hit & b):
                for y in found:
                    self._suppressed.add((min(x, y), max(x, y)))
                return True
        return False

    # --- neighbours ----------------------------------------------------------------------

    def _search(self, units: list[_Unit], progress: ProgressCallback, cancel: CancelToken | None) -> None:
        """Index neighbours of every unit's best file, widened while they stay above the floor."""
        total = len(self.index)
        pending = [u.rep.id for u in units]
        count = min(total, _NEIGHBOURS + 1)
        done = 0
        while pending and count > 0:
            widen = []
            for start in range(0, len(pending), _SEARCH_CHUNK):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                chunk = np.asarray(pending[start : start + _SEARCH_CHUNK], dtype=np.uint64)
                found, vectors = self.index.vectors(chunk)
                keys, distances, counts = self.index.search_batch(vectors, count)
                scores = similarity(self.metric, distances)
                for row, image_id in enumerate(found.tolist()):
                    n = int(counts[row])
                    hits = [(int(k), float(s)) for k, s in zip(keys[row, :n], scores[row, :n], strict=True)
                            if int(k) != image_id]  # fmt: skip
                    self._neighbours[image_id] = hits
                    if n == count and count < total and hits and hits[-1][1] >= self.floor:
                        widen.append(image_id)
                done += len(chunk)
                progress(Progress("duplicates: neighbours", min(done, len(units)), len(units)))
            if count >= min(total, _MAX_NEIGHBOURS):
                break
            pending, count = widen, min(total, count * 4, _MAX_NEIGHBOURS)

    # --- perceptual checks ---------------------------------------------------------------

    def _same_picture(self, a: _Image, b: _Image) -> bool:
        fa, fb = self._fingerprint(a), self._fingerprint(b)
        if fa is None or fb is None:
            return False
        return same_picture(fa, fb, self._small(a), self._small(b))

    def _fingerprint(self, image: _Image) -> bytes | None:
        key = image.digest or f"id:{image.id}"
        if key not in self._prints:
            stored = None
            if image.digest:
                stored = stored_fingerprint(self.catalog, image.digest)
            if stored is None:
                small = load_small(image.thumb, image.path, self.max_pixels)
                if small is None:
                    return None
                stored = fingerprint(small)
                self._remember_small(key, as_array(small))
                if image.digest:
                    self._new_prints[image.digest] = stored
            self._prints[key] = stored
        return self._prints[key]

    def _small(self, image: _Image) -> np.ndarray | None:
        key = image.digest or f"id:{image.id}"
        if key in self._smalls:
            self._smalls.move_to_end(key)
            return self._smalls[key]
        small = load_small(image.thumb, image.path, self.max_pixels)
        array = as_array(small) if small is not None else None
        self._remember_small(key, array)
        return array

    def _remember_small(self, key: str, array: np.ndarray | None) -> None:
        self._smalls[key] = array
        while len(self._smalls) > _SMALL_CACHE:
            self._smalls.popitem(last=False)

    def _save_fingerprints(self) -> None:
        if self._new_prints:
            save_fingerprints(self.catalog, self._new_prints)

    # --- records -------------------------------------------------------------------------

    def _images(self, filters: Filters | None) -> dict[int, _Image]:
        rows = embedded_images(self.catalog, self.model_key, filters or Filters())
        images = {r[0]: _Image(*r) for r in rows}
        present = set(self.index.keys().tolist())
        return {i: image for i, image in images.items() if i in present}

    def _group(self, tier: str, ids: list[int], scores: list[float]) -> DuplicateGroup:
        records = self.catalog.records(ids)
        return DuplicateGroup(tier, [records[i] for i in ids], scores)
