"""Delimited text files with a header row: TSV without quoting, CSV with RFC 4180 quoting.

Why not ``csv.reader`` for both: TSV files (Tatoeba, the VADER ratings, most corpora) have no
quoting, and treating ``"`` as a quote character silently merges rows at a stray ``9"``.
So ``.tsv``/``.tab`` files are split on tabs and newlines only (``csv.QUOTE_NONE`` semantics);
``.csv`` files keep RFC 4180 quotes (``"a, b"``, ``""`` for a quote, fields over several lines)
and a quote that never closes is reported at the line where it **begins**. Every problem is one
:class:`~tasks.common.errors.UserError` naming ``FILE:LINE``.

Example:

```python
table = read_table("tasks/samples/sentiment/train.tsv")
text, label = table.column("text"), table.column("label")
for line, fields in table.rows:
    print(line, fields[text], fields[label])
```
"""

from __future__ import annotations

import csv
import dataclasses
import io
import sys
from pathlib import Path

from tasks.common.errors import UserError
from tasks.common.io import read_user_file

TSV_SUFFIXES = (".tsv", ".tab")
CSV_SUFFIXES = (".csv",)


@dataclasses.dataclass
class Table:
    """A parsed file: the header, and every non-blank row with the line it starts on.

    Attributes:
        path: the file read.
        delimiter: ``"\\t"`` or ``","``.
        header: the header's field names (stripped, as written).
        header_line: the header's line number (1-based).
        rows: ``(line, fields)`` per non-blank row; ``line`` is where the row starts.
    """

    path: Path
    delimiter: str
    header: list[str]
    header_line: int
    rows: list[tuple[int, list[str]]]

    @property
    def kind(self) -> str:
        return "tab-separated" if self.delimiter == "\t" else "comma-separated"

    def column(self, name: str, required: bool = True, flag: str | None = None) -> int | None:
        """Index of the column called ``name`` (case-insensitive); missing → error (naming ``flag``) or None."""
        lowered = [h.lower() for h in self.header]
        if name.lower() in lowered:
            return lowered.index(name.lower())
        if not required:
            return None
        hint = f"; pass {flag} NAME" if flag else ""
        raise UserError(
            f"{self.path}:{self.header_line}: header has columns {self.header} but no '{name}' column "
            f"({self.kind}){hint}"
        )

    def field(self, line: int, fields: list[str], index: int) -> str:
        """``fields[index]``, or an error naming the line when the row is too short."""
        if index >= len(fields):
            raise UserError(
                f"{self.path}:{line}: {len(fields)} field(s) but the header has {len(self.header)}; "
                f"expected '{self.header[index]}' in column {index + 1} ({self.kind})"
            )
        return fields[index]


def decode_utf8(path: str | Path) -> str:
    """The file's text (UTF-8, a BOM is dropped); unreadable or non-UTF-8 → ``FILE:LINE`` error."""
    path = Path(path)
    raw = read_user_file(path, "a delimited text file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        bad = raw[err.start : err.end].hex(" ")
        raise UserError(f"{path}:{line}: not UTF-8 (byte {bad} at column {column}); save the file as UTF-8") from None


def delimiter_for(path: Path, header_line: str) -> str:
    """Tab for ``.tsv``/``.tab``, comma for ``.csv``, else a tab if the header has one."""
    suffix = path.suffix.lower()
    if suffix in TSV_SUFFIXES:
        return "\t"
    if suffix in CSV_SUFFIXES:
        return ","
    return "\t" if "\t" in header_line else ","


def read_table(path: str | Path, delimiter: str | None = None) -> Table:
    """Read a delimited file with a header row (see the module docstring for the rules).

    Args:
        path: the file.
        delimiter: ``"\\t"`` (no quoting) or ``","`` (RFC 4180); default from the suffix.

    Blank lines are skipped; an empty file or one without rows after the header is an error.
    """
    path = Path(path)
    content = decode_utf8(path)
    if not content.strip():
        raise UserError(f"{path}: file is empty; expected a header line followed by one row per line")
    if delimiter is None:
        delimiter = delimiter_for(path, content.lstrip("\r\n").splitlines()[0])
    records = _tsv_records(content) if delimiter == "\t" else _csv_records(path, content, delimiter)
    header, header_line, rows = None, 0, []
    for line, fields in records:
        if not fields or all(not f.strip() for f in fields):
            continue
        if header is None:
            header, header_line = [f.strip() for f in fields], line
        else:
            rows.append((line, fields))
    if not rows:
        raise UserError(f"{path}:{header_line}: header only, no rows after it")
    return Table(path, delimiter, header, header_line, rows)


def _lines(content: str) -> list[str]:
    """Physical lines as editors number them (``\n`` or ``\r\n``; no other line breaks)."""
    return [line[:-1] if line.endswith("\r") else line for line in content.split("\n")]


def _tsv_records(content: str):
    for number, text in enumerate(_lines(content), 1):
        yield number, text.split("\t")


def _csv_records(path: Path, content: str, delimiter: str):
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter, strict=True)
    lines = _lines(content)
    previous_end = 0
    while True:
        start = previous_end + 1
        while start <= len(lines) and not lines[start - 1].strip():
            start += 1  # the record begins at its first non-blank line
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            if "unexpected end of data" in str(err):
                raise UserError(
                    f"{path}:{start}: a quoted field starts here and is never closed (a lone '\"'); "
                    'close it, or double quotes inside quoted fields ("")'
                ) from None
            raise UserError(f"{path}:{reader.line_num}: malformed CSV line ({err})") from None
        previous_end = reader.line_num
        yield start, fields
