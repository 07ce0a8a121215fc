"""Product sheets: CSV, JSON and JSON Lines files read into rows of product fields.

A row has the known fields (sku, title, description, tags, url, price), an image reference
(an `image`/`path`/`file` column) and extra columns, which are kept as JSON. Matching rows to
images is `products.importer`'s; writing them, `catalog.products`'.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from visualfinder.catalog.records import META_FIELDS as FIELDS
from visualfinder.catalog.records import normalise_tags
from visualfinder.errors import VisualFinderError
from visualfinder.products.roles import EXTRA_ROLE, IMAGE_ROLE, MATCH_MODES, ROLES, SKIP_ROLE

log = logging.getLogger(__name__)

IMAGE_COLUMNS = ("image", "image_path", "path", "file", "filename", "file_name", "photo", "picture")
# Header spellings seen in shop exports, mapped to our names.
ALIASES = {
    "name": "title", "product": "title", "product_name": "title", "productname": "title",
    "desc": "description", "product_description": "description", "link": "url", "product_url": "url",
    "keywords": "tags", "tag": "tags", "labels": "tags", "article": "sku", "article_number": "sku",
    "item_number": "sku", "product_id": "sku",
}  # fmt: skip
MAX_FILE_BYTES = 512 * 1024 * 1024


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


@dataclass
class ColumnMapping:
    """What each column of a sheet is (`roles`: column -> one of ROLES) and how rows find images."""

    roles: dict[str, str]
    match_by: str = "auto"

    def __post_init__(self) -> None:
        wrong = {c: r for c, r in self.roles.items() if r not in ROLES}
        if wrong:
            column, role = next(iter(wrong.items()))
            raise MetadataError(f"column {column!r}: unknown role {role!r}; use one of {', '.join(ROLES)}")
        if self.match_by not in MATCH_MODES:
            raise MetadataError(f"match by must be one of {', '.join(MATCH_MODES)}, not {self.match_by!r}")
        for role in (IMAGE_ROLE, *FIELDS, "tags"):
            columns = [c for c, r in self.roles.items() if r == role]
            if len(columns) > 1:
                raise MetadataError(f"only one column can be the {role}: {', '.join(columns)}")
        needed = {"path": IMAGE_ROLE, "name": IMAGE_ROLE, "sku": "sku"}.get(self.match_by)
        if needed and needed not in self.roles.values():
            raise MetadataError(
                f"matching by {self.match_by} needs a column marked as the {needed}"
                + (" (the image path or file name)" if needed == IMAGE_ROLE else "")
            )

    def column_for(self, role: str) -> str | None:
        return next((c for c, r in self.roles.items() if r == role), None)


@dataclass
class Sheet:
    """A product sheet as read: its columns (first-seen order) and records, before any mapping."""

    path: Path
    columns: list[str]
    records: list[tuple[int, dict | None, str]]  # (line, record or None, why it is not a record)
    format: str  # csv, json, jsonl


def suggest_mapping(columns: list[str]) -> ColumnMapping:
    """The mapping an import without one uses: known headers and their aliases, extras for the rest."""
    roles: dict[str, str] = {}
    taken: set[str] = set()
    for column in columns:
        key = _column_name(column)
        role = IMAGE_ROLE if key in IMAGE_COLUMNS else key if key in (*FIELDS, "tags") else EXTRA_ROLE
        if role != EXTRA_ROLE and role in taken:
            role = SKIP_ROLE if role == IMAGE_ROLE else EXTRA_ROLE  # the first such column wins
        if not key:
            role = SKIP_ROLE
        taken.add(role)
        roles[column] = role
    return ColumnMapping(roles)


def read_sheet(path: str | Path) -> Sheet:
    """Read a .csv/.tsv/.txt, .json or .jsonl/.ndjson file; raises MetadataError if unreadable."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise MetadataError(f"{path} is too large for a metadata file ({size / 1024**2:.0f} MB)")
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise MetadataError(f"metadata file not found: {path}") from exc
    except IsADirectoryError as exc:
        raise MetadataError(f"{path} is a folder, not a metadata file") from exc
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


def read_metadata_file(path: str | Path, mapping: ColumnMapping | None = None) -> list[MetadataRow]:
    """Rows of a product sheet: by `mapping`, or by its headers (which must then name known columns)."""
    sheet = read_sheet(path)
    if mapping is None and sheet.format == "csv":
        columns = {_column_name(c) for c in sheet.columns if c}
        if not columns & (set(FIELDS) | set(IMAGE_COLUMNS) | {"tags"}):
            raise MetadataError(
                f"{sheet.path}: the first line must name the columns (sku, title, description, tags, url, "
                f"price, image); found {', '.join(sheet.columns)}"
            )
    return sheet_rows(sheet, mapping)


def sheet_rows(sheet: Sheet, mapping: ColumnMapping | None = None) -> list[MetadataRow]:
    roles = mapping.roles if mapping is not None else None
    rows = []
    for line, record, problem in sheet.records:
        if record is None:
            rows.append(MetadataRow(line, None, problems=[problem]))
        else:
            rows.append(row_from_mapping(record, line, roles))
    return rows


def row_from_mapping(record: dict, line: int, roles: dict[str, str] | None = None) -> MetadataRow:
    """A row from one JSON object or CSV record: by `roles` (column -> role), or by its keys
    (matched case- and space-insensitively, aliases included)."""
    row = MetadataRow(line, None)
    for raw_key, value in record.items():
        if raw_key is None:  # csv: more cells than headers
            row.problems.append("more cells than the header has columns")
            continue
        if roles is not None:
            key = roles.get(str(raw_key), SKIP_ROLE)
            if key == SKIP_ROLE:
                continue
        else:
            key = _column_name(str(raw_key))
            if not key:
                continue
            if key in IMAGE_COLUMNS:
                key = IMAGE_ROLE
        if key == IMAGE_ROLE:
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
        elif key == EXTRA_ROLE and _column_name(str(raw_key)) == "extra" and isinstance(value, dict):
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


# --- readers -------------------------------------------------------------------------------


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        log.info("metadata file is not UTF-8; reading it as Windows-1252")
        return data.decode("cp1252", errors="replace")


def _csv(text: str, path: Path) -> Sheet:
    sample = text[: 64 * 1024]
    try:
        dialect = csv.Sniffer().sniff(sample.split("\n", 1)[0], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=dialect)
    if not reader.fieldnames:
        raise MetadataError(f"{path} is empty")
    try:
        records = [(reader.line_num, record, "") for record in reader]
    except csv.Error as exc:
        raise MetadataError(f"{path}, line {reader.line_num}: {exc}") from exc
    return Sheet(path, [c for c in reader.fieldnames if c], records, "csv")


def _json(text: str, path: Path) -> Sheet:
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
    records = [
        (number, item, "") if isinstance(item, dict) else (number, None, "not a JSON object")
        for number, item in enumerate(data, start=1)
    ]
    return Sheet(path, _columns(records), records, "json")


def _json_lines(text: str, path: Path) -> Sheet:
    records: list[tuple[int, dict | None, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            records.append((number, None, f"not valid JSON ({exc.msg})"))
            continue
        records.append((number, item, "") if isinstance(item, dict) else (number, None, "not a JSON object"))
    return Sheet(path, _columns(records), records, "jsonl")


def _columns(records: list[tuple[int, dict | None, str]]) -> list[str]:
    seen: dict[str, None] = {}
    for _, record, _ in records:
        for key in record or ():
            seen.setdefault(str(key), None)
    return list(seen)


def _column_name(raw: str) -> str:
    key = re.sub(r"[\s\-]+", "_", raw.strip().lower())
    return ALIASES.get(key, key)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


@dataclass
class SheetPreview:
    """The first records of a sheet, as text, with the mapping an import would use by default."""

    path: Path
    format: str
    columns: list[str]
    rows: list[list[str]]  # the first records, one cell per column
    total: int  # records in the file
    suggested: ColumnMapping


def preview_sheet(path: str | Path, limit: int = 20) -> SheetPreview:
    """Read a sheet and keep its first `limit` records for a preview; raises MetadataError."""
    sheet = read_sheet(path)
    rows = []
    for _, record, problem in sheet.records[:limit]:
        if record is None:
            rows.append([f"({problem})", *[""] * (len(sheet.columns) - 1)])
        else:
            rows.append([_preview_cell(record.get(column)) for column in sheet.columns])
    return SheetPreview(sheet.path, sheet.format, sheet.columns, rows, len(sheet.records),
                        suggest_mapping(sheet.columns))  # fmt: skip


def _preview_cell(value: object) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return _text(value)
