"""Streaming, checked reads of a user's tables (CSV, TSV or Parquet) for ``semid data import``.

A table is read a block at a time (``pyarrow.csv.open_csv``: 1 MiB of text per block; Parquet: record batches),
so a 100M-row log never sits in memory. Every fault names the file, the line (CSV/TSV: the physical line,
header = line 1; blank lines and quoted line breaks are refused, so lines and rows stay in step) or the row
(Parquet, 1-based) and the field, with the fix:

* a column the flags name that the header lacks;
* a line with the wrong number of fields (a blank line included);
* bytes that are not valid in the declared ``--encoding``;
* a repeated header row inside the file (files concatenated with their headers).

Example::

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "log.csv"; _ = p.write_text("user,item\\n1,7\\n")
    >>> t = TableFile.of(p)
    >>> t.header()
    ['user', 'item']
    >>> [(first, cols["item"].to_pylist()) for first, cols in t.batches(["user", "item"])]
    [(0, ['7'])]
"""
from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from semid.core.errors import DataError, SemidError

FORMATS = ("csv", "tsv", "parquet")
# CSV text per block (~45k rows of a 4-column log). Small on purpose: Arrow's streaming CSV reader reads up to 32
# blocks ahead on its IO thread (a background generator, not configurable), so the raw text in memory is up to 32x
# this: 16 MiB blocks held the first 240 MB of a 10M-row file (the whole of it) before the first row was used.
BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class TableFile:
    """A table file and how to read it."""

    path: Path
    fmt: str  # csv | tsv | parquet
    encoding: str = "utf-8"
    header_row: bool = True  # CSV/TSV: line 1 names the columns

    @staticmethod
    def of(path: Path, fmt: str | None = None, encoding: str = "utf-8", flag: str = "--format") -> "TableFile":
        """The file at ``path``, its format from ``fmt`` or its suffix (.csv, .tsv/.tab/.txt, .parquet/.pq)."""
        path = Path(path)
        if fmt is None:
            fmt = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "tsv", ".parquet": "parquet",
                   ".pq": "parquet"}.get(path.suffix.lower())
            if fmt is None:
                raise SemidError(f"{path}: cannot tell the format from the suffix {path.suffix!r} (pass {flag} "
                                 f"{'|'.join(FORMATS)})")
        if fmt not in FORMATS:
            raise SemidError(f"{flag} {fmt!r} is not one of {', '.join(FORMATS)}")
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise SemidError(f"--encoding {encoding!r} is not an encoding Python knows (e.g. utf-8, latin-1, "
                             "cp1252)") from None
        if not path.is_file():
            raise SemidError(f"{path}: no such file")
        return TableFile(path, fmt, encoding)

    @property
    def delimiter(self) -> str:
        return "\t" if self.fmt == "tsv" else ","

    def where(self, row: int) -> str:
        """'FILE, line N' (CSV/TSV) or 'FILE, row N' (Parquet) of 0-based data row ``row``."""
        if self.fmt == "parquet":
            return f"{self.path}, row {row + 1}"
        return f"{self.path}, line {row + 1 + int(self.header_row)}"

    def header(self) -> list[str]:
        """The column names (Parquet: from the footer; CSV/TSV: line 1, decoded in the declared encoding)."""
        if self.fmt == "parquet":
            try:
                return pq.ParquetFile(self.path).schema_arrow.names
            except (pa.ArrowInvalid, OSError) as e:
                raise DataError(self.path, None, f"not a readable Parquet file ({str(e).splitlines()[0]})",
                                "pass --format csv or tsv if it is text") from None
        with open(self.path, "rb") as f:
            first = f.readline().rstrip(b"\r\n")
        try:
            text = first.decode(self.encoding)
        except UnicodeDecodeError as e:
            raise DataError(f"{self.path}, line 1", None, f"bytes not valid {self.encoding} at byte {e.start}",
                            "pass --encoding with the file's encoding (e.g. latin-1)") from None
        return [c.strip() for c in next(csv.reader([text.lstrip("\ufeff")], delimiter=self.delimiter))]

    def require(self, columns: dict[str, str]) -> None:
        """Each flag's column (``{flag: column}``) is in the header, else a DataError naming line 1 and the flag."""
        names = self.header()
        for flag, col in columns.items():
            if col not in names:
                raise DataError(self.path if self.fmt == "parquet" else f"{self.path}, line 1", col,
                                f"column is missing (found: {', '.join(names)})",
                                f"name the right column with {flag} COLUMN")

    def batches(self, columns: list[str], names: list[str] | None = None) -> Iterator[tuple[int, dict[str, pa.Array]]]:
        """(0-based first data row, {column: array}) per block; CSV/TSV values are strings (converted by the caller,
        which names the line of a bad value). ``names``: the columns of a headerless file."""
        if self.fmt == "parquet":
            yield from self._parquet_batches(columns)
            return
        read = pacsv.ReadOptions(block_size=BLOCK_BYTES, encoding=self.encoding, column_names=names,
                                 skip_rows=0)
        parse = pacsv.ParseOptions(delimiter=self.delimiter, ignore_empty_lines=False,
                                   quote_char='"' if self.fmt == "csv" else False)
        convert = pacsv.ConvertOptions(include_columns=columns, column_types={c: pa.string() for c in columns},
                                       strings_can_be_null=False, quoted_strings_can_be_null=False)
        first = 0
        try:
            reader = pacsv.open_csv(self.path, read_options=read, parse_options=parse, convert_options=convert)
            for batch in reader:
                yield first, {c: batch.column(c) for c in columns}
                first += batch.num_rows
        except (pa.ArrowInvalid, UnicodeDecodeError, ValueError) as e:
            raise self._locate(len(names) if names else len(self.header()), e) from None

    def _parquet_batches(self, columns: list[str]) -> Iterator[tuple[int, dict[str, pa.Array]]]:
        try:
            f = pq.ParquetFile(self.path)
            first = 0
            for batch in f.iter_batches(batch_size=1 << 19, columns=columns):
                yield first, {c: batch.column(c) for c in columns}
                first += batch.num_rows
        except (pa.ArrowInvalid, OSError) as e:
            raise DataError(self.path, None, f"not a readable Parquet file ({str(e).splitlines()[0]})",
                            "rewrite it with pyarrow / pandas.to_parquet") from None

    def _locate(self, n_fields: int, e: BaseException) -> DataError:
        """The first line the block reader refused, found by a line-by-line scan (only on this error path)."""
        header = self.header() if self.header_row else []
        with open(self.path, "rb") as f:
            for n, raw in enumerate(f, 1):
                line = raw.rstrip(b"\r\n")
                try:
                    text = line.decode(self.encoding)
                except UnicodeDecodeError as u:
                    fields = line.split(self.delimiter.encode())
                    pos, field = 0, None
                    for i, fb in enumerate(fields):  # the field holding the first bad byte
                        if pos + len(fb) >= u.start:
                            field = header[i] if i < len(header) else f"field {i + 1}"
                            break
                        pos += len(fb) + 1
                    return DataError(f"{self.path}, line {n}", field, f"bytes not valid {self.encoding} "
                                     f"({line[max(u.start - 10, 0):u.start + 10]!r})",
                                     "pass --encoding with the file's real encoding (e.g. latin-1, cp1252), or "
                                     "re-save the file")
                fields = next(csv.reader(io.StringIO(text), delimiter=self.delimiter,
                                         quoting=csv.QUOTE_MINIMAL if self.fmt == "csv" else csv.QUOTE_NONE), [])
                if len(fields) != n_fields:
                    what = "a blank line" if not text.strip() else f"{len(fields)} field(s) where {n_fields} are " \
                        f"expected: {text[:80]!r}"
                    sep = "tab" if self.fmt == "tsv" else "comma"
                    return DataError(f"{self.path}, line {n}", None, what,
                                     f"fix or delete that line (fields are {sep}-separated; quoted line breaks are "
                                     "not supported)")
        return DataError(self.path, None, f"not a readable {self.fmt.upper()} file ({str(e).splitlines()[0]})",
                         "check --format and --encoding")

    def read_all(self, columns: list[str]) -> dict[str, pa.Array]:
        """Every row of ``columns`` (for catalogue-sized tables: the items table)."""
        parts: dict[str, list[pa.Array]] = {c: [] for c in columns}
        for _, cols in self.batches(columns):
            for c in columns:
                parts[c].append(cols[c])
        out = {}
        for c in columns:
            chunks = parts[c]
            out[c] = pa.chunked_array(chunks).combine_chunks() if chunks else pa.array([], pa.string())
        return out
