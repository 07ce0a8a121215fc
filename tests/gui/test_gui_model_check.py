"""The Settings dialog's model check builds the embedder the library would: backend included."""

from __future__ import annotations

from guihelpers import WAIT_MS

from visualfinder.models.embedder import ONNX_DIR


def test_the_model_check_goes_through_the_libraries_backend_choice(qtbot, make_window, settings, tmp_path):
    window = make_window(settings_=settings.replace(backend="onnx"))
    dialog = window.library_actions.open_settings()
    other = tmp_path / "other-library"
    dialog.data_dir.setText(str(other))
    dialog.device.setCurrentIndex(dialog.device.findData("auto"))  # a model field changed: checked first

    with qtbot.waitSignal(dialog.modelChecked, timeout=WAIT_MS * 4) as checked:
        dialog.buttons.button(dialog.buttons.StandardButton.Ok).click()

    assert checked.args == [True]
    # The ONNX backend exported vf-tiny into the chosen library's folder, as opening it will use.
    assert any((other / ONNX_DIR).rglob("*.onnx"))
    qtbot.waitUntil(
        lambda: window.session.is_open and window.session.settings.data_dir == other, timeout=WAIT_MS
    )
