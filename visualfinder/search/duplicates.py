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

import itertools
import logging
import os
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import Image

from visualfinder.catalog.duplicates import (
    decided_pairs,
    embedded_images,
    save_fingerprints,
    stored_fingerprints,
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
_SEARCH_CHUNK = 4096
# The HNSW beam of the neighbour searches. Duplicates are each other's nearest neighbours, far
# above anything else, so a narrow beam finds them: on the 16k benchmark library a beam of 32
# finds every pair above 0.9 that an exact scan finds (16 misses 4 of 9,594), in 0.6x the time
# of the index's default 128.
_BEAM = 32
_SMALL_CACHE = 1024
_STREAM_S = 0.25  # a tier's groups go to `on_groups` at least this often
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


GroupsCallback = Callable[[list[DuplicateGroup]], None]


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


class _Images:
    """The scanned images as arrays by position (0..n-1, in id order)."""

    def __init__(self, rows: list[tuple]):
        rows = sorted(rows, key=lambda r: r[0])
        self.ids = np.fromiter((r[0] for r in rows), dtype=np.uint64, count=len(rows))
        self.paths = [r[1] for r in rows]
        self.digests = [r[4] for r in rows]
        self.thumbs = [r[5] for r in rows]
        # Sort key, best first: most pixels, then a lossless format, then the most bytes (then the path).
        order = sorted(range(len(rows)), key=lambda p: (-rows[p][3], rows[p][6] not in _LOSSLESS, -rows[p][2],
                                                        rows[p][1]))  # fmt: skip
        self.rank = np.empty(len(rows), dtype=np.int64)
        self.rank[order] = np.arange(len(rows))

    def __len__(self) -> int:
        return len(self.ids)

    def positions(self, keys: np.ndarray) -> np.ndarray:
        """The position of each image id in `keys` (any shape); -1 for ids not scanned."""
        keys = np.asarray(keys, dtype=np.uint64)
        if len(self.ids) == 0:
            return np.full(keys.shape, -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.ids, keys), len(self.ids) - 1)
        return np.where(self.ids[at] == keys, at, -1)


class _Unit:
    """A group from the tier below, standing in for it by its best file (`rep`, a position)."""

    __slots__ = ("rep", "members")

    def __init__(self, rep: int, members: list[int]):
        self.rep = rep
        self.members = members  # image ids


# A group before its records are read: member positions, best first, and their similarities.
_Raw = tuple[list[int], list[float]]


class DuplicateFinder:
    """One run over a library's active index.

    The index searches are batched (usearch releases the GIL while it searches); around them
    the work is numpy on whole chunks, and Python only loops over the images that have a
    neighbour above the floor. Groups are final as soon as they are formed (greedy, best file
    first), so `run` hands them to `on_groups` as each tier finds them, a batch at a time.
    """

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
        self._prints: dict[str, bytes | None] = {}
        self._new_prints: dict[str, bytes] = {}
        self._smalls: OrderedDict[str, np.ndarray | None] = OrderedDict()
        # Neighbours above the floor of each searched image (by position): positions, similarities.
        self._hits: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.images = _Images([])

    def run(
        self,
        filters: Filters | None = None,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
        on_groups: GroupsCallback | None = None,
    ) -> DuplicateReport:
        """Every group, tier by tier; `on_groups` (if given) receives them as they are found."""
        started = time.perf_counter()
        self.images = self._images(filters)
        for a, b in decided_pairs(self.catalog):
            self._decided[a].add(b)
            self._decided[b].add(a)
        groups: list[DuplicateGroup] = []

        def emit(tier: str, raw: list[_Raw]) -> None:
            found = self._groups(tier, raw)
            groups.extend(found)
            if found and on_groups is not None:
                on_groups(found)

        progress(Progress("duplicates: identical files", 0, len(self.images)))
        identical, units = self._identical()
        emit("identical", identical)
        self._search(units, progress, cancel)
        units = self._cluster(units, "same_picture", emit, progress, cancel)
        self._cluster(units, "similar", emit, progress, cancel)
        self._save_fingerprints()
        return DuplicateReport(
            groups,
            self.threshold,
            self.floor,
            len(self.images),
            len(self._suppressed),
            time.perf_counter() - started,
        )

    # --- tiers ---------------------------------------------------------------------------

    def _identical(self) -> tuple[list[_Raw], list[_Unit]]:
        images = self.images
        ids = images.ids.tolist()
        by_hash: dict[str, list[int]] = defaultdict(list)
        units: list[_Unit] = []
        for position, digest in enumerate(images.digests):
            if digest:
                by_hash[digest].append(position)
            else:
                units.append(_Unit(position, [ids[position]]))
        rank = images.rank
        groups: list[_Raw] = []
        for same in by_hash.values():
            if len(same) == 1:
                units.append(_Unit(same[0], [ids[same[0]]]))
                continue
            remaining = sorted(same, key=lambda p: rank[p])
            while remaining:
                leader, rest = remaining[0], remaining[1:]
                members = [leader]
                remaining = []
                for p in rest:
                    if self._decided and any(self._is_decided([ids[m]], [ids[p]]) for m in members):
                        remaining.append(p)
                    else:
                        members.append(p)
                units.append(_Unit(leader, [ids[m] for m in members]))
                if len(members) > 1:
                    groups.append((members, [1.0] * len(members)))
        return groups, units

    def _cluster(
        self,
        units: list[_Unit],
        tier: str,
        emit: Callable[[str, list[_Raw]], None],
        progress: ProgressCallback,
        cancel: CancelToken | None,
    ) -> list[_Unit]:
        """Greedy grouping around the best files; emits the groups and returns the next tier's units.

        Only units whose best file has a neighbour above the tier's floor can lead a group; the
        others stay as they are unless a better file takes them in."""
        floor = self.floor if tier == "same_picture" else self.threshold
        rank = self.images.rank
        unit_of = np.full(len(self.images), -1, dtype=np.int64)
        members = np.fromiter(itertools.chain.from_iterable(u.members for u in units), dtype=np.uint64)
        unit_of[self.images.positions(members)] = np.repeat(
            np.arange(len(units)), [len(u.members) for u in units]
        )
        leaders = []
        for u, unit in enumerate(units):
            hits = self._hits.get(unit.rep)
            if hits is not None and hits[1][0] >= floor:  # best first: the first hit decides
                leaders.append(u)
        leaders.sort(key=lambda u: rank[units[u].rep])
        if tier == "same_picture":
            self._prepare_fingerprints(units, leaders, floor, unit_of)
        taken = np.zeros(len(units), dtype=bool)
        merged: dict[int, _Unit] = {}  # leader -> its group as one unit
        absorbed: set[int] = set()
        pending: list[_Raw] = []
        phase = f"duplicates: {tier.replace('_', ' ')}"
        last_emit = time.perf_counter()
        for done, u in enumerate(leaders):
            if done % 256 == 0:
                if cancel is not None:
                    cancel.raise_if_cancelled()
                progress(Progress(phase, done, len(leaders)))
            if taken[u]:
                continue
            taken[u] = True
            unit = units[u]
            positions, scores = self._hits[unit.rep]
            keep = scores >= floor
            members, member_scores = [u], [1.0]
            for other, score in zip(unit_of[positions[keep]].tolist(), scores[keep].tolist(), strict=True):
                if other < 0 or taken[other]:
                    continue
                if self._decided and any(
                    self._is_decided(units[m].members, units[other].members) for m in members
                ):
                    continue
                if tier == "same_picture" and not self._same_picture(unit.rep, units[other].rep):
                    continue
                taken[other] = True
                members.append(other)
                member_scores.append(score)
            if len(members) == 1:
                continue
            merged[u] = _Unit(unit.rep, [i for m in members for i in units[m].members])
            absorbed.update(members[1:])
            ranked = sorted(
                zip(members[1:], member_scores[1:], strict=True), key=lambda p: rank[units[p[0]].rep]
            )
            pending.append(([unit.rep] + [units[m].rep for m, _ in ranked], [1.0] + [s for _, s in ranked]))
            if time.perf_counter() - last_emit >= _STREAM_S:
                emit(tier, pending)
                pending, last_emit = [], time.perf_counter()
        emit(tier, pending)
        progress(Progress(phase, len(leaders), len(leaders)))
        return [merged.get(u, unit) for u, unit in enumerate(units) if u not in absorbed]

    def _is_decided(self, a: list[int], b: list[int]) -> bool:
        others = set(b)
        for x in a:
            hit = self._decided.get(x)
            if hit and (found := hit & others):
                for y in found:
                    self._suppressed.add((min(x, y), max(x, y)))
                return True
        return False

    # --- neighbours ----------------------------------------------------------------------

    def _search(self, units: list[_Unit], progress: ProgressCallback, cancel: CancelToken | None) -> None:
        """Index neighbours of every unit's best file above the floor, widened while the
        farthest one found is still above it."""
        images = self.images
        total = len(self.index)
        pending = np.fromiter((u.rep for u in units), dtype=np.int64, count=len(units))
        count = min(total, _NEIGHBOURS + 1)
        done = 0
        while len(pending) and count > 1:
            widen = []
            for start in range(0, len(pending), _SEARCH_CHUNK):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                chunk = pending[start : start + _SEARCH_CHUNK]
                found, vectors = self.index.vectors(images.ids[chunk])
                rows = images.positions(found)
                keys, distances, counts = self.index.search_batch(vectors, count, beam=_BEAM)
                if keys.shape[1] < count:  # fewer results than asked for everywhere: pad
                    keys = np.pad(keys, ((0, 0), (0, count - keys.shape[1])))
                    distances = np.pad(
                        distances, ((0, 0), (0, count - distances.shape[1])), constant_values=2.0
                    )
                scores = similarity(self.metric, distances)
                own = keys == found[:, None]
                hits = images.positions(keys)
                valid = np.arange(count)[None, :] < counts[:, None]
                keep = valid & ~own & (hits >= 0) & (scores >= self.floor)
                # Widened when the list came back full and its farthest (other) image is above the floor.
                last = np.where(own[:, -1], scores[:, -2], scores[:, -1])
                if count < min(total, _MAX_NEIGHBOURS):
                    widen.append(rows[(counts == count) & (last >= self.floor)])
                for r in np.flatnonzero(keep.any(axis=1)).tolist():
                    self._hits[int(rows[r])] = (hits[r][keep[r]], scores[r][keep[r]])
                done += len(chunk)
                progress(Progress("duplicates: neighbours", min(done, len(units)), len(units)))
            if count >= min(total, _MAX_NEIGHBOURS):
                break
            pending = np.concatenate(widen) if widen else np.zeros(0, np.int64)
            count = min(total, count * 4, _MAX_NEIGHBOURS)

    # --- perceptual checks ---------------------------------------------------------------

    def _prepare_fingerprints(self, units: list[_Unit], leaders: list[int], floor: float,
                              unit_of: np.ndarray) -> None:  # fmt: skip
        """Read the stored fingerprints of every image the tier may compare in one query, and
        compute the missing ones on a few threads (decoding thumbnails releases the GIL)."""
        wanted: set[int] = set()
        for u in leaders:
            positions, scores = self._hits[units[u].rep]
            others = unit_of[positions[scores >= floor]]
            if (others >= 0).any():
                wanted.add(units[u].rep)
                wanted.update(units[o].rep for o in others[others >= 0].tolist())
        digests = {self.images.digests[p] for p in wanted if self.images.digests[p]}
        self._prints.update(stored_fingerprints(self.catalog, digests))
        missing = [p for p in wanted if self._key(p) not in self._prints]
        if not missing:
            return
        workers = min(4, os.cpu_count() or 1, len(missing))
        slices = [missing[i::workers] for i in range(workers)]
        with ThreadPoolExecutor(workers, thread_name_prefix="vf-fingerprint") as pool:
            for part, computed in zip(
                slices, pool.map(lambda ps: [self._compute(p) for p in ps], slices), strict=True
            ):
                for p, one in zip(part, computed, strict=True):
                    self._store_fingerprint(p, one)

    def _key(self, p: int) -> str:
        return self.images.digests[p] or f"id:{int(self.images.ids[p])}"

    def _load_small(self, p: int) -> Image.Image | None:
        return load_small(self.images.thumbs[p], self.images.paths[p], self.max_pixels)

    def _compute(self, p: int) -> tuple[bytes, np.ndarray] | None:
        """The fingerprint and the small pixels of one image; None when it cannot be read."""
        small = self._load_small(p)
        return None if small is None else (fingerprint(small), as_array(small))

    def _store_fingerprint(self, p: int, computed: tuple[bytes, np.ndarray] | None) -> None:
        key = self._key(p)
        if computed is None:
            self._prints[key] = None  # unreadable: never the same picture
            return
        self._prints[key], small = computed
        self._remember_small(key, small)
        if self.images.digests[p]:
            self._new_prints[self.images.digests[p]] = computed[0]

    def _same_picture(self, a: int, b: int) -> bool:
        fa, fb = self._fingerprint(a), self._fingerprint(b)
        if fa is None or fb is None:
            return False
        return same_picture(fa, fb, self._small(a), self._small(b))

    def _fingerprint(self, p: int) -> bytes | None:
        key = self._key(p)
        if key not in self._prints:
            self._store_fingerprint(p, self._compute(p))
        return self._prints[key]

    def _small(self, p: int) -> np.ndarray | None:
        key = self._key(p)
        if key in self._smalls:
            self._smalls.move_to_end(key)
            return self._smalls[key]
        small = self._load_small(p)
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

    def _images(self, filters: Filters | None) -> _Images:
        """The embedded images that pass the filters and are in the index."""
        rows = list(embedded_images(self.catalog, self.model_key, filters or Filters()))
        ids = np.fromiter((r[0] for r in rows), dtype=np.uint64, count=len(rows))
        inside = np.isin(ids, self.index.keys()).tolist()
        return _Images([r for r, ok in zip(rows, inside, strict=True) if ok])

    def _groups(self, tier: str, raw: list[_Raw]) -> list[DuplicateGroup]:
        """The groups with their records, read in one go; an image gone from the catalog since
        the scan (moved to the trash meanwhile) leaves its group, which needs two to remain."""
        ids = self.images.ids
        records = self.catalog.records({int(ids[p]) for positions, _ in raw for p in positions})
        groups = []
        for positions, scores in raw:
            members = [(records[int(ids[p])], s) for p, s in zip(positions, scores, strict=True)
                       if int(ids[p]) in records]  # fmt: skip
            if len(members) > 1:
                groups.append(DuplicateGroup(tier, [r for r, _ in members], [s for _, s in members]))
        return groups
