"""Edit the tags of one or more results: a comma-separated list, completed from the library's tags."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCompleter, QDialog, QDialogButtonBox, QLabel, QLineEdit, QVBoxLayout, QWidget

from visualfinder.search.planner import SearchResult


def parse_tags(text: str) -> list[str]:
    """'Oak, chair ,, oak' -> ['oak', 'chair'] (tags are stored lower-case, once each)."""
    seen: dict[str, None] = {}
    for part in text.split(","):
        tag = part.strip().lower()
        if tag:
            seen.setdefault(tag, None)
    return list(seen)


class TagsDialog(QDialog):
    """Shows the tags the selected images share; the answer is what to add and what to remove."""

    tagsEdited = Signal(list, list, list)  # image ids, tags to add, tags to remove

    def __init__(self, results: list[SearchResult], known_tags: list[str], parent: QWidget | None = None):
        super().__init__(parent)
        self.results = results
        self.setWindowTitle("Edit tags")
        self.setMinimumWidth(420)
        common = set(results[0].record.tags) if results else set()
        for result in results[1:]:
            common &= set(result.record.tags)
        self._before = sorted(common)
        who = results[0].label if len(results) == 1 else f"{len(results)} images"
        label = QLabel(f"Tags of {who}, separated by commas:", self)
        label.setWordWrap(True)
        self.edit = QLineEdit(", ".join(self._before), self)
        self.edit.setPlaceholderText("e.g. oak, dining chair, summer 2024")
        self.edit.setClearButtonEnabled(True)
        completer = QCompleter(known_tags, self)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        self._completer = completer
        self.edit.textEdited.connect(self._complete_last)
        completer.setWidget(self.edit)
        completer.activated.connect(self._insert_completion)
        note = QLabel(
            "Removing a tag here removes it from every selected image." if len(results) > 1 else "", self
        )
        note.setEnabled(False)
        note.setVisible(len(results) > 1)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(label)
        layout.addWidget(self.edit)
        layout.addWidget(note)
        layout.addWidget(buttons)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

    def changes(self) -> tuple[list[str], list[str]]:
        after = parse_tags(self.edit.text())
        add = [t for t in after if t not in self._before]
        remove = [t for t in self._before if t not in after]
        return add, remove

    def accept(self) -> None:
        add, remove = self.changes()
        if add or remove:
            self.tagsEdited.emit([r.id for r in self.results], add, remove)
        super().accept()

    def _current_word(self) -> str:
        return self.edit.text()[: self.edit.cursorPosition()].split(",")[-1].strip()

    def _complete_last(self, _text: str) -> None:
        word = self._current_word()
        if not word:
            self._completer.popup().hide()
            return
        self._completer.setCompletionPrefix(word)
        self._completer.complete()

    def _insert_completion(self, tag: str) -> None:
        text = self.edit.text()
        cursor = self.edit.cursorPosition()
        head, tail = text[:cursor], text[cursor:]
        parts = head.split(",")
        parts[-1] = (" " if len(parts) > 1 else "") + tag
        head = ",".join(parts) + ", "
        self.edit.setText(head + tail.lstrip(", "))
        self.edit.setCursorPosition(len(head))
