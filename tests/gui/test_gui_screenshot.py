"""The screenshot script renders the main window with results to a PNG."""

from __future__ import annotations

from PIL import Image

from visualfinder.gui import screenshot


def test_screenshot_script_renders_the_window_with_results(qapp, tmp_path):
    out = tmp_path / "shot.png"

    assert screenshot.main([str(out), "--width", "900", "--height", "620"]) == 0

    image = Image.open(out)
    assert image.size == (900, 620)
    assert image.mode == "P"  # quantised: small enough to commit
    colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is not None and len(colours) > 64  # thumbnails, not an empty window


def test_screenshot_script_renders_the_duplicates_and_batch_match_windows(qapp, tmp_path):
    for view in ("duplicates", "batch"):
        out = tmp_path / f"{view}.png"
        assert screenshot.main([str(out), "--view", view, "--width", "900", "--height", "560"]) == 0
        image = Image.open(out)
        assert image.size == (900, 560)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is not None and len(colours) > 64  # thumbnails of the copies / photos
