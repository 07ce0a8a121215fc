"""Render the main window with results to a PNG: `python -m visualfinder.gui.screenshot OUT.png`.

`--view duplicates` renders the duplicates window instead, `--view batch` the batch-match
window (a folder of customer photos matched against the catalog).

Builds a demo catalog (drawn product shots) in a temporary library, indexes it, searches with
a 'customer photo' of one product, waits for the thumbnails and grabs the window. `--view
import` grabs File › Import product data… with the demo sheet checked; `--view opensearch` the
Settings › OpenSearch page after Test connection (against osmem-server when it is installed). Runs
offscreen (QT_QPA_PLATFORM=offscreen) or on a real or virtual display (xvfb-run). The model
is vf-tiny unless --model/--pretrained say otherwise, so it needs no download.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QEventLoop, QSettings
from PySide6.QtWidgets import QApplication

from visualfinder.config import Settings
from visualfinder.gui import app as gui_app
from visualfinder.gui.demo import query_photo, write_demo_catalog, write_demo_products
from visualfinder.gui.main_window import MainWindow
from visualfinder.gui.session import LibrarySession


def wait_for(
    app: QApplication, condition: Callable[[], bool], timeout: float = 120.0, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or condition}")
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)


def render(out: Path, *, width: int = 1280, height: int = 800, dark: bool = False, model: str = "vf-tiny",
           pretrained: str = "none", colours: int = 256,
           crop: tuple[float, float, float, float] | None = (0.17, 0.28, 0.66, 0.62), view: str = "main") -> Path:  # fmt: skip
    """Build the demo, show the results window (or `view`: duplicates, batch, import, opensearch),
    and save it to `out` (a PNG)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = gui_app.create_application()
    if dark:
        app.setPalette(gui_app.dark_palette())
    with tempfile.TemporaryDirectory(prefix="visualfinder-demo-") as tmp:
        root = Path(tmp)
        catalog = root / "Product photos"
        paths = write_demo_catalog(catalog)
        if view == "duplicates":
            write_demo_copies(catalog)
        query = root / "customer-photo.jpg"
        query_photo("mug", "red").save(query, "JPEG", quality=92)
        settings = Settings.load(root / "library", model=model, pretrained=pretrained, device="cpu")
        session = LibrarySession(settings)
        window = MainWindow(session, QSettings(str(root / "ui.ini"), QSettings.Format.IniFormat))
        window.resize(width, height)
        window.filters.k.setValue(30)
        window.filters.set_threshold(0.5)
        window.show()
        session.open()
        wait_for(app, lambda: session.snapshot is not None, what="the library to open")
        (job,) = window.library_actions.add_folders([str(catalog)])
        wait_for(app, lambda: job.done, what="indexing")
        if job.state != "succeeded":
            raise RuntimeError(job.error or job.state)
        sheet = write_demo_products(paths, root / "products.csv")  # titles, prices, tags
        importing = session.run(
            session.writer, "Importing", lambda lib, ctx: lib.products.import_metadata(sheet)
        )
        wait_for(app, lambda: importing.done, what="the product sheet")
        if importing.state != "succeeded":
            raise RuntimeError(importing.error or importing.state)
        session.refresh()
        wait_for(app, lambda: session.snapshot is not None and session.snapshot.tags, what="the tags")
        if view in ("duplicates", "batch"):
            image = _render_review(app, window, view, root, width, height)
        elif view in ("import", "opensearch"):
            grab = _render_import if view == "import" else _render_opensearch
            image = grab(app, window, sheet, root)
        if view != "main":
            window.close()
            wait_for(app, lambda: session.state == "shut", what="the library to close")
            return save_png(image, out, colours)
        window.search_file(query)
        wait_for(app, lambda: window.response is not None, what="the results")
        if crop:  # the object, as a user would drag it (Lens-style region search)
            first = window.response
            window.query_panel.view.set_crop(crop)
            wait_for(app, lambda: window.response is not first, what="the region's results")
        window.results_view.setCurrentIndex(window.results_model.index(1))
        for _ in range(3):  # the view asks for thumbnails as it paints
            window.results_view.viewport().repaint()
            app.processEvents()
        view, rows = window.results_view, window.results_model
        visible = [rows.result(i).record.path for i in range(rows.rowCount())
                   if view.visualRect(rows.index(i)).intersects(view.viewport().rect())]  # fmt: skip
        wait_for(app, lambda: all(window.thumbnails.is_cached(p) for p in visible), what="the thumbnails")
        window.statusBar().clearMessage()
        window.message_bar.dismiss()
        for _ in range(5):
            app.processEvents()
        image = window.grab().toImage()
        window.close()
        wait_for(app, lambda: session.state == "shut", what="the library to close")
    return save_png(image, out, colours)


def write_demo_copies(catalog: Path) -> None:
    """Copies a shop accumulates: an original PNG beside its JPEG, a byte-identical copy, a
    web-sized and a recompressed re-encoding."""
    from PIL import Image

    from visualfinder.gui.demo import COLOURS, draw_product

    downloads = catalog / "Downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(catalog / "mug" / "mug-red.jpg", downloads / "mug-red copy.jpg")
    lamp = Image.open(catalog / "lamp" / "lamp-yellow.jpg")
    lamp.resize((240, 240), Image.Resampling.LANCZOS).save(
        downloads / "lamp-yellow-web.jpg", "JPEG", quality=80
    )
    lamp.save(downloads / "lamp-yellow (1).jpg", "JPEG", quality=55)
    mug = Image.open(catalog / "mug" / "mug-blue.jpg")
    mug.save(downloads / "mug-blue-small.jpg", "JPEG", quality=70)
    # The original the JPEG was made from: same pixels, lossless, no product data.
    draw_product("chair", COLOURS["blue"], seed=200 + 3).save(downloads / "chair-blue original.png", "PNG")


def _render_review(app: QApplication, window: MainWindow, view: str, root: Path, width: int, height: int):
    """Open the duplicates or the batch-match window on the demo library and grab it."""
    if view == "duplicates":
        review = window.review_actions.show_duplicates()
        wait_for(app, lambda: review.report is not None, what="the duplicate groups")
        review.tier_box.setCurrentIndex(review.tier_box.findData("same_picture"))
        rows = range(review.model.rowCount())
        largest = max(rows, key=lambda r: len(review.model.group(r).members))
        review.list.setCurrentIndex(review.model.index(largest))
        cards = lambda: review.cards  # noqa: E731
        loaders = [review.thumbnails, review.list_thumbnails]
        keys = lambda: [c.record.path for c in cards()]  # noqa: E731
    elif view == "batch":
        photos = root / "Customer photos"
        photos.mkdir()
        for kind, colour in (("mug", "red"), ("lamp", "yellow"), ("chair", "blue"), ("sneaker", "blue"),
                             ("vase", "yellow"), ("clock", "black")):  # fmt: skip
            query_photo(kind, colour).save(
                photos / f"IMG_{len(list(photos.iterdir())) + 2041}.jpg", "JPEG", quality=88
            )
        (photos / "IMG_2047.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated upload")
        review = window.review_actions.match_folder(str(photos))
        wait_for(app, lambda: review.report is not None, what="the batch match")
        loaders = [review.thumbnails]
        matches = review.model.matches()
        keys = lambda: [m.photo for m in matches] + [m.best.path for m in matches if m.best]  # noqa: E731
    else:
        raise ValueError(f"unknown view {view!r}: main, duplicates or batch")
    review.resize(width, height)
    review.show()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(
        any(loader.is_cached(k) for loader in loaders) for k in keys()
    ):
        review.repaint()
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
    review.statusBar().clearMessage()
    for _ in range(5):
        app.processEvents()
    return review.grab().toImage()


def _settle(app: QApplication) -> None:
    for _ in range(5):
        app.processEvents()


def _render_import(app: QApplication, window: MainWindow, sheet: Path, root: Path):
    """The import dialog with the demo sheet previewed, one column remapped and its matches checked."""
    export = root / "shop-export.csv"  # the demo sheet and one product without a photo yet
    export.write_text(sheet.read_text(encoding="utf-8") + "vase-green.jpg,VA-999,Glass vase,24.99,home\n",
                      encoding="utf-8")  # fmt: skip
    dialog = window.library_actions.import_products()
    dialog.path.setText(str(export))
    job = dialog.load(str(export))
    wait_for(app, lambda: job.done and dialog.preview is not None, what="the sheet preview")
    checking = dialog.run_import(dry_run=True)
    wait_for(
        app, lambda: checking is not None and checking.done and dialog.report is not None, what="the check"
    )
    _settle(app)
    image = dialog.grab().toImage()
    dialog.reject()
    return image


def _render_opensearch(app: QApplication, window: MainWindow, sheet: Path, root: Path):
    """Settings › OpenSearch, filled in and tested against osmem-server when it is installed."""
    dialog = window.library_actions.open_settings()
    page = dialog.opensearch
    dialog.tabs.setCurrentWidget(page)
    page.index.setText("products")
    page.user.setText("catalog")
    page.password.setText("password")  # shown as dots; never stored by the screenshot
    server = None
    try:
        from osmem_server import OsmemServer

        server = OsmemServer.start(japanese=False)
        page.url.setText(server.url)
        page.user.setText("")
        page.password.clear()
        job = page.test_connection()
        wait_for(app, lambda: job is not None and job.done, what="the connection test")
    except ImportError:
        page.url.setText("https://search.example.com:9200")
    _settle(app)
    image = dialog.grab().toImage()
    dialog.reject()
    if server is not None:
        server.close()
    return image


def save_png(image, out: Path, colours: int) -> Path:
    """Save a QImage as a PNG, optionally quantised (a 256-colour PNG is a third the size)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if colours >= 16777216 or colours <= 0:
        image.save(str(out), "PNG")
        return out
    from PIL import Image
    from PySide6.QtGui import QImage

    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    pil = Image.frombuffer("RGB", (rgb.width(), rgb.height()), bytes(rgb.constBits()), "raw", "RGB",
                           rgb.bytesPerLine(), 1)  # fmt: skip
    pil.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(
        out, optimize=True
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m visualfinder.gui.screenshot", description=__doc__.splitlines()[0]
    )
    parser.add_argument("out", type=Path, help="PNG file to write")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--dark", action="store_true", help="use the dark palette")
    parser.add_argument("--model", default="vf-tiny")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument(
        "--colours", type=int, default=256, help="quantise to this many colours (0: full colour)"
    )
    parser.add_argument("--view", choices=("main", "duplicates", "batch", "import", "opensearch"), default="main",
                        help="the main window (default), the duplicates or batch-match window, the import dialog, "
                        "or Settings › OpenSearch")  # fmt: skip
    args = parser.parse_args(argv)
    path = render(args.out, width=args.width, height=args.height, dark=args.dark, model=args.model,
                  pretrained=args.pretrained, colours=args.colours, view=args.view)  # fmt: skip
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
