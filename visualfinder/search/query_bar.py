"""The query bar language: filters typed among the words, for the CLI and the GUI search box.

    folder:chairs tag:oak sku:AB-12 type:png after:2025-01 red armchair -leather

The `key:value` filters go to SQLite (search.Filters); the remaining words are the CLIP text
query, and `-word` / `-"two words"` become "less like this" text. Keys, case-insensitive:

    folder:NAME | folder:/abs/path   a folder anywhere in the path, or a subtree (also in:, dir:)
    tag:oak  tag:oak,walnut          has the tag; a comma or | list means any of them
    type:png  type:jpg,webp          file type (also ext:, format:)
    after:DATE  before:DATE          modified on/after or before a date: 2025, 2025-01,
                                     2025-01-31, today, yesterday, 7d or 2w (days/weeks ago)
    size:>2mb  size:<500kb  size:1mb..5mb   file size
    sku: title: description: url: price:    product metadata, and any extra column an import
                                     kept (colour:red). sku, url and extras match exactly
                                     (case-insensitive); title and description contain the
                                     value. A value may start with = ~ < <= > >= (price:<100),
                                     and price takes a range (price:10..50).

Values with spaces are quoted: `title:"oak chair"`. A `word:thing` whose key is not known
stays part of the text (so "16:9 poster" searches for that text).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from visualfinder.catalog.filters import META_FIELDS, FieldCondition, Filters
from visualfinder.errors import QueryError
from visualfinder.search.request import QueryTerm

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<neg>-)?(?P<key>[A-Za-z_][\w.-]*):(?P<value>"[^"]*"|'[^']*'|\S*)
      | (?P<qneg>-)?"(?P<quoted>[^"]*)"
      | (?P<word>\S+)
    )""",
    re.VERBOSE,
)
_FOLDER_KEYS = {"folder", "in", "dir"}
_TAG_KEYS = {"tag", "tags"}
_TYPE_KEYS = {"type", "ext", "format"}
_AFTER_KEYS = {"after", "since"}
_BEFORE_KEYS = {"before", "until"}
_SIZE_KEYS = {"size"}
_FIELD_ALIASES = {"desc": "description", "name": "title"}
_CONTAINS_FIELDS = {"title", "description"}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_RELATIVE = re.compile(r"^(\d+)([dw])$", re.IGNORECASE)


@dataclass
class ParsedQuery:
    """A query bar's content: the CLIP text, "less like this" texts and the SQLite filters."""

    text: str = ""
    minus: list[str] = field(default_factory=list)
    filters: Filters = field(default_factory=Filters)

    @property
    def has_text(self) -> bool:
        return bool(self.text or self.minus)

    def terms(self) -> list[QueryTerm]:
        """The words as query terms: the text, then each minus text ("less like this")."""
        terms = [QueryTerm("text", self.text)] if self.text else []
        return terms + [QueryTerm("text", t, weight=-1.0) for t in self.minus]


def parse_query(text: str, extra_fields: set[str] | frozenset[str] = frozenset()) -> ParsedQuery:
    """Split a query bar's text into filters and CLIP text; `extra_fields` are the extra
    metadata columns the library knows (so `colour:red` is a filter, not text)."""
    parsed = ParsedQuery()
    words: list[str] = []
    extras = {name.lower(): name for name in extra_fields}
    for match in _TOKEN.finditer(text or ""):
        if match.group("key") is not None:
            key = match.group("key")
            value = _unquote(match.group("value"))
            if not _apply(parsed.filters, key, value, extras, negated=bool(match.group("neg"))):
                token = match.group(0).strip()
                (parsed.minus.append(token[1:]) if match.group("neg") else words.append(token))
        elif match.group("quoted") is not None:
            phrase = match.group("quoted").strip()
            if phrase:
                (parsed.minus if match.group("qneg") else words).append(phrase)
        elif match.group("word"):
            word = match.group("word")
            if word.startswith("-") and len(word) > 1:
                parsed.minus.append(word[1:])
            else:
                words.append(word)
    parsed.text = " ".join(words)
    return parsed


def _apply(filters: Filters, key: str, value: str, extras: dict[str, str], negated: bool) -> bool:
    """Add one key:value filter; False when `key` is not a filter key (the token is text)."""
    name = key.lower()
    name = _FIELD_ALIASES.get(name, name)
    known = (
        name in _FOLDER_KEYS | _TAG_KEYS | _TYPE_KEYS | _AFTER_KEYS | _BEFORE_KEYS | _SIZE_KEYS
        or name in META_FIELDS
        or name in extras
    )
    if not known:
        return False
    if negated:
        raise QueryError(f"-{key}:{value}: excluding by a filter is not supported; filters can only narrow")
    if not value:
        raise QueryError(f"{key}: needs a value, as in {key}:something")
    if name in _FOLDER_KEYS:
        expanded = os.path.expanduser(value)
        if os.path.isabs(expanded):
            filters.folders.append(os.path.abspath(expanded))
        else:
            filters.folder_names.append(value)
    elif name in _TAG_KEYS:
        tags = split_list(value)
        if len(tags) > 1:
            filters.tags_any += tags
        else:
            filters.tags_all += tags
    elif name in _TYPE_KEYS:
        filters.types += split_list(value)
    elif name in _AFTER_KEYS:
        filters.modified_after = parse_date(value, key)
    elif name in _BEFORE_KEYS:
        filters.modified_before = parse_date(value, key)
    elif name in _SIZE_KEYS:
        _size_filter(filters, value, key)
    else:
        filters.fields += field_conditions(extras.get(name, name), value)
    return True


def field_conditions(name: str, value: str) -> list[FieldCondition]:
    """Conditions for `name:value` as typed: an operator prefix, a range, or the field's default."""
    if name == "price" and ".." in value:
        low, _, high = value.partition("..")
        out = []
        if low.strip():
            out.append(FieldCondition(name, low.strip(), op=">="))
        if high.strip():
            out.append(FieldCondition(name, high.strip(), op="<="))
        return out
    for op in ("<=", ">=", "<", ">", "=", "~"):
        if value.startswith(op) and len(value) > len(op):
            return [FieldCondition(name, value[len(op) :].strip(), op=op)]
    return [FieldCondition(name, value, op="~" if name in _CONTAINS_FIELDS else "=")]


def split_list(value: str) -> list[str]:
    """'oak, walnut' or 'oak|walnut' -> ['oak', 'walnut'] (empty items dropped)."""
    return [part.strip() for part in re.split(r"[,|]", value) if part.strip()]


def parse_date(text: str, what: str = "date") -> datetime:
    """The first instant of a date or period: 2025, 2025-01, 2025-01-31 (local time), today,
    yesterday, or Nd / Nw for N days / weeks ago."""
    value = text.strip().lower()
    now = datetime.now()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if value == "today":
        return today
    if value == "yesterday":
        return today - timedelta(days=1)
    relative = _RELATIVE.match(value)
    if relative:
        amount = int(relative.group(1))
        return now - timedelta(days=amount if relative.group(2) == "d" else 7 * amount)
    for fmt in ("%Y-%m-%d", "%Y-%m", "%Y", "%Y/%m/%d", "%Y/%m"):
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            continue
    raise QueryError(
        f"{what}:{text}: not a date; use 2025, 2025-01, 2025-01-31, today, yesterday, or 7d / 2w ago"
    )


def parse_size(text: str) -> int:
    """'2mb', '500 KB', '1.5GiB', '1200' -> bytes (binary units: 1 KB = 1024 bytes)."""
    match = _SIZE.match(text)
    if not match:
        raise QueryError(f"size {text!r}: use a number with an optional unit, as in 500kb or 2mb")
    unit = match.group(2).lower()[:1]
    return int(float(match.group(1)) * _UNITS[unit])


def _size_filter(filters: Filters, value: str, key: str) -> None:
    if ".." in value:
        low, _, high = value.partition("..")
        if low.strip():
            filters.min_bytes = parse_size(low)
        if high.strip():
            filters.max_bytes = parse_size(high)
        return
    for op in ("<=", ">=", "<", ">"):
        if value.startswith(op):
            size = parse_size(value[len(op) :])
            if op[0] == "<":
                filters.max_bytes = size if op == "<=" else max(size - 1, 0)
            else:
                filters.min_bytes = size if op == ">=" else size + 1
            return
    raise QueryError(f"{key}:{value}: give a bound, as in size:>2mb, size:<500kb or size:1mb..5mb")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value
