"""The planner: filtered results equal a brute force over the filtered set, on the exact path and
on the HNSW path, and the exact path is taken exactly when the candidate count is small."""

from __future__ import annotations

import os
import random
from datetime import datetime

import numpy as np
import pytest
from imagegen import write_image
from searching import query_vector

from visualfinder.catalog.filters import FieldCondition, Filters
from visualfinder.library.facade import QueryTerm, SearchRequest, open_library

TAGS = ["red", "blue", "big", "oak"]


@pytest.fixture
def catalog_files(tmp_path):
    """48 images in four folders, three types, spread over two years, with tags and metadata."""
    root = tmp_path / "catalog"
    truth = {}
    layout = [("chairs", 16), ("chairs2", 8), ("lamps/desk", 12), ("lamps", 12)]
    n = 0
    for folder, count in layout:
        for _ in range(count):
            ext = ["jpg", "png", "webp"][n % 3]
            path = write_image(root / folder / f"item_{n:03d}.{ext}", 1000 + n, size=(160 + 8 * (n % 7), 120))
            mtime = datetime(2024, 1 + n % 12, 1 + n % 27).timestamp() + n * 3600 * 24 * 7 % (3600 * 24 * 300)
            os.utime(path, (mtime, mtime))
            tags = [t for i, t in enumerate(TAGS) if (n >> i) & 1]
            truth[str(path)] = {
                "n": n, "folder": folder, "type": ext, "mtime": mtime, "size": path.stat().st_size, "tags": tags,
                "sku": f"SKU-{n}", "price": float(n * 10), "title": ("Chair " if "chairs" in folder else "Lamp ") + str(n),
            }  # fmt: skip
            n += 1
    return root, truth


def _setup(settings, root, truth, exact_max):
    lib = open_library(settings.replace(exact_search_max_candidates=exact_max))
    lib.index([root])
    for path, t in truth.items():
        lib.products.add_tags(path, t["tags"])
        lib.products.update_metadata(path, sku=t["sku"], title=t["title"], price=t["price"])
    return lib


def _random_filters(rng: random.Random, root, truth) -> tuple[Filters, callable]:
    """A random combination of filters and the same conditions as a plain Python predicate."""
    f, checks = Filters(), []
    sizes = sorted(t["size"] for t in truth.values())
    if rng.random() < 0.4:
        folder = rng.choice(["chairs", "lamps", "lamps/desk"])
        f.folders.append(str(root / folder))
        checks.append(lambda p, t, folder=folder: p.startswith(str(root / folder) + os.sep))
    if rng.random() < 0.2:
        f.folder_names.append("desk")
        checks.append(lambda p, t: t["folder"] == "lamps/desk")
    if rng.random() < 0.4:
        tags = rng.sample(TAGS, rng.randint(1, 2))
        if rng.random() < 0.5:
            f.tags_any = tags
            checks.append(lambda p, t, tags=tags: bool(set(tags) & set(t["tags"])))
        else:
            f.tags_all = tags
            checks.append(lambda p, t, tags=tags: set(tags) <= set(t["tags"]))
    if rng.random() < 0.3:
        types = rng.sample(["jpg", "png", "webp"], rng.randint(1, 2))
        f.types = types
        checks.append(lambda p, t, types=types: t["type"] in types)
    if rng.random() < 0.3:
        after = datetime(2024, rng.randint(1, 12), 1)
        f.modified_after = after
        checks.append(lambda p, t, after=after: t["mtime"] >= after.timestamp())
    if rng.random() < 0.3:
        low, high = sorted(rng.sample(sizes, 2))
        f.min_bytes, f.max_bytes = low, high
        checks.append(lambda p, t, low=low, high=high: low <= t["size"] <= high)
    if rng.random() < 0.3:
        limit = rng.randint(5, 45) * 10
        f.fields.append(FieldCondition("price", str(limit), op="<"))
        checks.append(lambda p, t, limit=limit: t["price"] < limit)
    if rng.random() < 0.2:
        f.fields.append(FieldCondition("title", "chair", contains=True))
        checks.append(lambda p, t: t["title"].startswith("Chair"))
    if rng.random() < 0.1:
        n = rng.randrange(48)
        f.fields.append(FieldCondition("sku", f"sku-{n}"))
        checks.append(lambda p, t, n=n: t["n"] == n)
    return f, lambda p, t: all(check(p, t) for check in checks)


def _brute_force(lib, query, allowed_ids, k):
    ids, vectors = [], []
    for chunk_ids, chunk in lib.catalog.iter_embeddings(lib.model_key):
        ids += chunk_ids.tolist()
        vectors.append(chunk.astype(np.float32))
    vectors = np.vstack(vectors)
    sims = vectors @ query / np.linalg.norm(vectors, axis=1) / np.linalg.norm(query)
    ranked = sorted((i for i in range(len(ids)) if ids[i] in allowed_ids), key=lambda i: (-sims[i], ids[i]))
    return [ids[i] for i in ranked[:k]]


@pytest.mark.parametrize("exact_max", [10_000, 0], ids=["exact-path", "hnsw-path"])
def test_filtered_results_equal_a_brute_force_over_the_filtered_set(settings, catalog_files, exact_max):
    root, truth = catalog_files
    lib = _setup(settings, root, truth, exact_max)
    try:
        rng = random.Random(7)
        paths = list(truth)
        tried = 0
        for _ in range(60):
            filters, predicate = _random_filters(rng, root, truth)
            if filters.is_empty():
                continue
            tried += 1
            allowed = {lib.image_id(p) for p, t in truth.items() if predicate(p, t)}
            query_path = rng.choice(paths)
            k = rng.choice([1, 3, 5, 10, 60])
            response = lib.search(SearchRequest([QueryTerm("similar", query_path)], k=k, filters=filters))
            expected = _brute_force(lib, query_vector(lib, QueryTerm("similar", query_path)), allowed, k)
            assert [r.id for r in response.results] == expected, filters
            assert len(response.results) == min(k, len(allowed))
            assert response.plan.method == ("exact" if len(allowed) <= exact_max else "hnsw")
            # SQLite stops counting past the exact-search limit unless k needs the full count.
            capped = len(allowed) > exact_max and k < exact_max + 1
            assert response.plan.candidates == (exact_max + 1 if capped else len(allowed))
        assert tried >= 40
    finally:
        lib.close()


def test_a_selective_filter_on_the_hnsw_path_still_returns_k(settings, catalog_files):
    root, truth = catalog_files
    lib = _setup(settings, root, truth, exact_max=1)
    try:
        query = next(p for p, t in truth.items() if t["folder"] == "chairs")
        filters = Filters(folder_names=["desk"], tags_any=["red", "blue"])
        expected = sum(
            1 for t in truth.values() if t["folder"] == "lamps/desk" and {"red", "blue"} & set(t["tags"])
        )
        response = lib.search(SearchRequest([QueryTerm("similar", query)], k=expected, filters=filters))
        assert expected >= 3 and response.plan.method == "hnsw" and len(response.results) == expected
        # k above the capped count: the planner counted them all to know k are reachable.
        assert response.plan.candidates == expected
    finally:
        lib.close()


def test_a_filter_that_matches_nothing_returns_nothing(library, catalog_files):
    root, truth = catalog_files
    library.index([root])
    response = library.search(
        SearchRequest([QueryTerm("similar", next(iter(truth)))], k=5, filters=Filters(tags_all=["nope"]))
    )
    assert response.results == [] and response.plan.candidates == 0


def test_repeated_filtered_searches_see_every_change_since_the_last_one(library, tmp_path):
    folder = tmp_path / "catalog" / "chairs"
    files = [write_image(folder / f"c{i}.jpg", 400 + i) for i in range(5)]
    write_image(tmp_path / "catalog" / "other" / "o.jpg", 499)
    library.index([tmp_path / "catalog"])
    in_folder = Filters(folders=[str(folder)])

    def found(filters) -> set[str]:
        request = SearchRequest([QueryTerm("image", files[0])], k=20, filters=filters)
        response = library.search(request)
        assert response.plan.method == "exact"
        return {r.path for r in response.results}

    assert found(in_folder) == {str(f) for f in files}
    assert found(in_folder) == {str(f) for f in files}  # the same filter again
    added = write_image(folder / "new.jpg", 450)
    files[1].unlink()
    library.index()
    assert found(in_folder) == {str(f) for f in files if f != files[1]} | {str(added)}
    library.products.add_tags(files[2], ["oak"])
    oak = Filters(folders=[str(folder)], tags_any=["oak"])
    assert found(oak) == {str(files[2])}
    library.products.add_tags(files[3], ["oak"])
    assert found(oak) == {str(files[2]), str(files[3])}  # tags change without a new generation
