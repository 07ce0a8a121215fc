"""What a drop or the clipboard carries, sorted into folders to add and one image to search with."""

from __future__ import annotations

import io

from imagegen import product_image, write_image
from PySide6.QtCore import QByteArray, QMimeData, QUrl
from PySide6.QtGui import QImage

from visualfinder.gui.query import load_query, read_mime
from visualfinder.jobs import CancelToken, no_progress


def png(seed: int) -> bytes:
    out = io.BytesIO()
    product_image(seed).save(out, "PNG")
    return out.getvalue()


def test_folders_are_added_and_the_first_file_is_the_query(tmp_path):
    folder = tmp_path / "shop"
    folder.mkdir()
    first = write_image(tmp_path / "a.jpg", 1)
    second = write_image(tmp_path / "b.jpg", 2)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in (folder, first, second)])

    content = read_mime(mime)

    assert content.folders == [str(folder)]
    assert content.query.kind == "file" and content.query.value == str(first)


def test_a_local_file_is_preferred_to_image_data_and_image_data_to_a_web_address(tmp_path):
    path = write_image(tmp_path / "a.png", 1)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path)), QUrl("https://shop.example/item.jpg")])
    mime.setData("image/png", QByteArray(png(2)))
    assert read_mime(mime).query.kind == "file"

    browser = QMimeData()
    browser.setUrls([QUrl("https://shop.example/item.jpg")])
    browser.setData("image/png", QByteArray(png(2)))
    assert read_mime(browser).query.kind == "data"

    link_only = QMimeData()
    link_only.setUrls([QUrl("https://shop.example/images/item.jpg?size=large")])
    query = read_mime(link_only).query
    assert (query.kind, query.value, query.name) == (
        "url", "https://shop.example/images/item.jpg?size=large", "item.jpg")  # fmt: skip


def test_text_naming_a_file_or_web_address_is_a_query(tmp_path):
    path = write_image(tmp_path / "a.png", 1)
    mime = QMimeData()
    mime.setText(f'"{path}"\n')
    assert read_mime(mime).query.value == str(path)

    mime = QMimeData()
    mime.setText("https://shop.example/a.webp")
    assert read_mime(mime).query.kind == "url"

    mime = QMimeData()
    mime.setText("")
    assert read_mime(mime).empty


def test_pasted_image_with_transparency_is_flattened_onto_white(library):
    image = QImage(40, 30, QImage.Format.Format_ARGB32)
    image.fill(0x00000000)  # fully transparent
    mime = QMimeData()
    mime.setImageData(image)
    source = read_mime(mime, "pasted").query

    query = load_query(library, source, CancelToken(), no_progress)

    assert source.name == "the pasted image"
    assert query.image.mode == "RGB" and query.image.size == (40, 30)
    assert query.image.getpixel((5, 5)) == (255, 255, 255)
    assert (query.preview.width(), query.preview.height()) == (40, 30)
