"""Query images that are not plain files (pasted, dropped from a browser), and decoding for display."""

from __future__ import annotations

import io

import pytest
from imagegen import make_catalog, product_image, write_image

from visualfinder.errors import QueryError
from visualfinder.search.request import QueryTerm, SearchRequest


def test_query_image_data_decodes_like_the_same_file(library, tmp_path):
    make_catalog(tmp_path / "cat", 6)
    library.index([tmp_path / "cat"])
    buffer = io.BytesIO()
    product_image(4).save(buffer, "PNG")

    decoded = library.decode_query_bytes(buffer.getvalue(), "the pasted image")
    results = library.search(SearchRequest([QueryTerm("pil", decoded.image)], k=3)).results

    assert results[0].record.file_name == "product_0004.jpg"
    assert (decoded.width, decoded.height) == (320, 240)


def test_query_data_that_is_not_an_image_names_where_it_came_from(library):
    with pytest.raises(QueryError) as error:
        library.decode_query_bytes(b"<!DOCTYPE html><html></html>", "https://shop.example/a.jpg")
    assert str(error.value) == (
        "cannot use https://shop.example/a.jpg as a query image: not an image (content is an HTML page)"
    )


def test_a_query_image_can_be_decoded_larger_than_the_model_needs(library, tmp_path):
    path = write_image(tmp_path / "big.jpg", 3, size=(2400, 1600))

    for_model = library.decode_query_image(path)
    for_display = library.decode_query_image(path, min_side=800)

    assert min(for_model.image.size) < 800  # JPEG draft decode: just enough for the model
    assert min(for_display.image.size) >= 800
    assert (for_display.width, for_display.height) == (2400, 1600)
