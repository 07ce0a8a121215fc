"""Product metadata files: CSV, JSON and JSON Lines read into rows, and rows written to the catalog.

A row has the known fields (sku, title, description, tags, url, price), an image reference
(an `image`/`path`/`file` column) and extra columns, which are kept as JSON. Matching rows to
images lives in `metadata_import.py`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from visualfinder.catalog.store import Catalog, normalise_tags
from visualfinder.errors import VisualFinderError

log = logging.getLogger(__name__)

FIELDS = ("sku", "title", "description", "url", "price")
IMAGE_COLUMNS = ("image", "image_path", "path", "file", "filename", "file_name", "photo", "picture")
# Header spellings seen in shop exports, mapped to our names.
ALIASES = {
    "name": "title", "product": "title", "product_name": "title", "productname": "title",
    "desc": "description", "product_description": "description", "link": "url", "product_url": "url",
    "keywords": "tags", "tag": "tags", "labels": "tags", "article": "sku", "article_number": "sku",
    "item_number": "sku", "product_id": "sku",
}  # fmt: skip
MAX_FILE_BYTES = 512 * 1024 * 1024
META_EXTRA_FIELDS = "extra_fields"  # meta key: JSON list of the extra column names ever imported


class MetadataError(VisualFinderError):
    """A metadata file cannot be read at all (rows with problems are reported, not raised)."""

    exit_code = 2


@dataclass
class MetadataRow:
    """One product record from a file. `fields` holds only the known columns the file has."""

    line: int
    image: str | None
    fields: dict[str, object] = field(default_factory=dict)
    tags: list[str] | None = None
    extra: dict[str, object] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def read_metadata_file(path: str | Path) -> list[MetadataRow]:
    """Rows of a .csv/.tsv/.txt, .json or .jsonl/.ndjson file; raises MetadataError if unreadable."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise MetadataError(f"{path} is too large for a metadata file ({size / 1024**2:.0f} MB)")
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise MetadataError(f"metadata file not found: {path}") from exc
    except OSError as exc:
        raise MetadataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    text = _decode(data)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return _json_lines(text, path)
    if suffix == ".json":
        return _json(text, path)
    if suffix in (".csv", ".tsv", ".txt", ""):
        return _csv(text, path)
    raise MetadataError(f"{path}: unknown metadata format {suffix!r}; use .csv, .json or .jsonl")


def row_from_mapping(record: dict, line: int) -> MetadataRow:
    """A row from one JSON object or CSV record (keys matched case- and space-insensitively)."""
    row = MetadataRow(line, None)
    for raw_key, value in record.items():
        if raw_key is None:  # csv: more cells than headers
            row.problems.append("more cells than the header has columns")
            continue
        key = _column_name(str(raw_key))
        if not key:
            continue
        if key in IMAGE_COLUMNS:
            if row.image is None and _text(value):
                row.image = _text(value)
        elif key == "tags":
            row.tags = parse_tags(value)
        elif key == "price":
            row.fields["price"] = None
            if _text(value):
                try:
                    row.fields["price"] = parse_price(value)
                except ValueError:
                    row.problems.append(f"price {value!r} is not a number (left unchanged)")
                    del row.fields["price"]
        elif key in FIELDS:
            row.fields[key] = _text(value) or None
        elif key == "extra" and isinstance(value, dict):
            row.extra.update({str(k): v for k, v in value.items()})
        else:
            row.extra[str(raw_key).strip()] = value if not isinstance(value, str) else value.strip()
    return row


def parse_tags(value: object) -> list[str]:
    """Tags given as a list, or as text separated by commas, pipes or semicolons."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return normalise_tags(str(v) for v in value)
    return normalise_tags(re.split(r"[,|;]", str(value)))


def parse_price(value: object) -> float:
    """12.5, '12.50', '€ 12,50', '1,299.00', '1.299,00 EUR' -> float; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        return float(value)
    text = re.sub(r"[^\d.,\-]", "", str(value))
    if not re.search(r"\d", text):
        raise ValueError(value)
    if "," in text and "." in text:  # the later one is the decimal separator
        text = (
            text.replace(".", "").replace(",", ".")
            if text.rfind(",") > text.rfind(".")
            else text.replace(",", "")
        )
    elif "," in text:
        head, _, tail = text.rpartition(",")
        text = f"{head.replace(',', '')}.{tail}" if len(tail) in (1, 2) else text.replace(",", "")
    return float(text)


# --- writing -------------------------------------------------------------------------------


def write_rows(
    catalog: Catalog,
    conn: sqlite3.Connection,
    image_ids: Iterable[int],
    row: MetadataRow,
    *,
    replace_tags: bool = False,
) -> None:
    """Inside a transaction: give these images the row's fields, extras and tags.

    Fields the row has replace the stored ones (an empty cell clears); fields it lacks are
    kept; extras are merged; tags are added, or replace the old ones with `replace_tags`.
    """
    ids = list(image_ids)
    for image_id in ids:
        write_fields(conn, image_id, row.fields, row.extra)
        if row.tags is not None:
            if replace_tags:
                conn.execute("DELETE FROM tags WHERE image_id = ?", (image_id,))
            conn.executemany(
                "INSERT OR IGNORE INTO tags(image_id, tag) VALUES (?, ?)", [(image_id, t) for t in row.tags]
            )
    if row.extra:
        remember_extra_fields(conn, row.extra)
    catalog.enqueue_upserts(conn, ids)


def write_fields(
    conn: sqlite3.Connection, image_id: int, fields: dict[str, object], extra: dict[str, object]
) -> None:
    """Upsert one image's image_meta row: `fields` replace, `extra` merges (None removes a key)."""
    current = conn.execute("SELECT extra FROM image_meta WHERE image_id = ?", (image_id,)).fetchone()
    merged = json.loads(current[0]) if current and current[0] else {}
    for key, value in extra.items():
        if value is None or value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    columns = [name for name in FIELDS if name in fields]
    values = [fields[name] for name in columns]
    extra_json = json.dumps(merged, ensure_ascii=False, sort_keys=True) if merged else None
    names = ", ".join(["image_id", *columns, "extra"])
    marks = ", ".join("?" * (len(columns) + 2))
    updates = ", ".join([f"{c} = excluded.{c}" for c in columns] + ["extra = excluded.extra"])
    conn.execute(
        f"INSERT INTO image_meta({names}) VALUES ({marks}) ON CONFLICT(image_id) DO UPDATE SET {updates}",
        (image_id, *values, extra_json),
    )


def remember_extra_fields(conn: sqlite3.Connection, extra: Iterable[str]) -> None:
    """Record extra column names so the query bar knows `colour:red` is a filter."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (META_EXTRA_FIELDS,)).fetchone()
    known = set(json.loads(row[0])) if row else set()
    if set(extra) <= known:
        return
    conn.execute(
        "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (META_EXTRA_FIELDS, json.dumps(sorted(known | set(extra)), ensure_ascii=False)),
    )


def extra_fields(catalog: Catalog) -> set[str]:
    raw = catalog.meta(META_EXTRA_FIELDS)
    return set(json.loads(raw)) if raw else set()


# --- readers -------------------------------------------------------------------------------


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        log.info("metadata file is not UTF-8; reading it as Windows-1252")
        return data.decode("cp1252", errors="replace")


def _csv(text: str, path: Path) -> list[MetadataRow]:
    sample = text[: 64 * 1024]
    try:
        dialect = csv.Sniffer().sniff(sample.split("\n", 1)[0], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=dialect)
    if not reader.fieldnames:
        raise MetadataError(f"{path} is empty")
    columns = {_column_name(c) for c in reader.fieldnames if c}
    if not columns & (set(FIELDS) | set(IMAGE_COLUMNS) | {"tags"}):
        raise MetadataError(
            f"{path}: the first line must name the columns (sku, title, description, tags, url, price, "
            f"image); found {', '.join(reader.fieldnames)}"
        )
    try:
        return [row_from_mapping(record, reader.line_num) for record in reader]
    except csv.Error as exc:
        raise MetadataError(f"{path}, line {reader.line_num}: {exc}") from exc


def _json(text: str, path: Path) -> list[MetadataRow]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MetadataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if isinstance(data, dict):
        lists = [
            v for k, v in data.items() if isinstance(v, list) and k.lower() in ("products", "items", "images")
        ]
        if lists:
            data = lists[0]
        elif all(isinstance(v, dict) for v in data.values()) and data:  # {"a.jpg": {...}, ...}
            data = [{"image": key, **value} for key, value in data.items()]
        else:
            data = [data]
    if not isinstance(data, list):
        raise MetadataError(f"{path}: expected a list of products (JSON objects)")
    rows = []
    for number, item in enumerate(data, start=1):
        if isinstance(item, dict):
            rows.append(row_from_mapping(item, number))
        else:
            rows.append(MetadataRow(number, None, problems=["not a JSON object"]))
    return rows


def _json_lines(text: str, path: Path) -> list[MetadataRow]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            rows.append(MetadataRow(number, None, problems=[f"not valid JSON ({exc.msg})"]))
            continue
        if isinstance(item, dict):
            rows.append(row_from_mapping(item, number))
        else:
            rows.append(MetadataRow(number, None, problems=["not a JSON object"]))
    return rows


def _column_name(raw: str) -> str:
    key = re.sub(r"[\s\-]+", "_", raw.strip().lower())
    return ALIASES.get(key, key)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()
