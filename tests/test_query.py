"""The query bar: `folder:chairs tag:oak sku:AB-12 type:png after:2025-01 red armchair`."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import pytest
from imagegen import make_catalog
from searching import search_query

from visualfinder.errors import QueryError
from visualfinder.search.query_bar import parse_date, parse_query, parse_size


def test_filters_go_to_sqlite_and_the_rest_is_the_clip_text():
    q = parse_query("folder:chairs tag:oak sku:AB-12 type:png after:2025-01 red armchair")
    assert q.text == "red armchair" and q.minus == []
    f = q.filters
    assert f.folder_names == ["chairs"] and f.folders == []
    assert f.tags_all == ["oak"] and f.types == ["png"]
    assert f.modified_after == datetime(2025, 1, 1)
    assert [(c.field, c.value, c.op) for c in f.fields] == [("sku", "AB-12", "=")]


def test_quoted_values_lists_ranges_and_operators():
    q = parse_query(
        'title:"oak chair" tag:oak,walnut type:jpg|webp price:10..50 size:>2mb before:2024-03-15 "living room"'
    )
    f = q.filters
    assert q.text == "living room"
    assert [(c.field, c.value, c.op) for c in f.fields] == [
        ("title", "oak chair", "~"), ("price", "10", ">="), ("price", "50", "<="),
    ]  # fmt: skip
    assert f.tags_any == ["oak", "walnut"] and f.types == ["jpg", "webp"]
    assert f.min_bytes == 2 * 1024**2 + 1 and f.max_bytes is None
    assert f.modified_before == datetime(2024, 3, 15)
    assert parse_query("price:<100 sku:~AB").filters.fields[0].op == "<"
    assert parse_query("sku:~AB").filters.fields[0].contains


def test_absolute_folders_are_subtrees_and_minus_words_are_less_like_this(tmp_path):
    q = parse_query(f'folder:{tmp_path}/chairs sofa -leather -"dark wood" in:~/x')
    assert q.filters.folders == [f"{tmp_path}/chairs", os.path.expanduser("~/x")]
    assert q.text == "sofa" and q.minus == ["leather", "dark wood"]


def test_unknown_keys_stay_text_and_known_extra_fields_become_filters():
    assert parse_query("poster 16:9 note:x").text == "poster 16:9 note:x"
    q = parse_query("Colour:red lamp", extra_fields={"colour"})
    assert q.text == "lamp" and [(c.field, c.value) for c in q.filters.fields] == [("colour", "red")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("after:someday", "not a date"),
        ("size:big", "give a bound"),
        ("tag:", "needs a value"),
        ("-tag:oak", "not supported"),
    ],
)
def test_bad_filters_are_one_line_errors(text, message):
    with pytest.raises(QueryError, match=message):
        parse_query(text)


def test_dates_and_sizes():
    assert parse_date("2025") == datetime(2025, 1, 1)
    assert parse_date("2025/02/03") == datetime(2025, 2, 3)
    assert abs(parse_date("7d") - (datetime.now() - timedelta(days=7))) < timedelta(seconds=5)
    assert parse_date("today").hour == 0
    assert (
        parse_size("500kb") == 500 * 1024
        and parse_size("1.5 GiB") == int(1.5 * 1024**3)
        and parse_size("12") == 12
    )


def test_the_library_runs_a_query_bar_search(library, tmp_path):
    root = tmp_path / "catalog"
    chairs = make_catalog(root / "chairs", 3)
    make_catalog(root / "lamps", 3, start_seed=10)
    make_catalog(root / "chairs" / "png", 2, start_seed=20, ext="png")
    library.index([root])
    library.products.add_tags(chairs[1], ["Oak"])
    library.products.add_tags(chairs[2], ["oak"])
    response = search_query(library, "folder:chairs tag:oak red armchair", k=10)
    assert sorted(r.path for r in response.results) == sorted([str(chairs[1]), str(chairs[2])])
    assert response.plan.method == "exact" and response.plan.candidates == 2
    only_filters = search_query(library, "folder:chairs type:png", k=10)
    assert only_filters.plan.method == "filter" and len(only_filters.results) == 2
    assert all(not r.ranked and r.to_json()["score"] is None for r in only_filters.results)
    with pytest.raises(QueryError, match="nothing to search for"):
        search_query(library, "   ")
