"""A streaming .xlsx writer for report tables: text and number cells, a bold header row, rows written as they come.

The report lists reach 100,000 rows × 13 columns; openpyxl and XlsxWriter both spend ~10 µs a cell building each
cell as an object (12–18 s for such a list here), which a daily job cannot afford. A table needs none of that: each
row is one XML string (inline strings, no shared-string table), written into the zip member as it is made. The
package is the minimal SpreadsheetML one (ECMA-376 part 1): content types, the workbook and its relationships, a
style sheet with a bold font, and one worksheet part per sheet; Excel, WPS and openpyxl open it."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterable
from decimal import Decimal
from xml.sax.saxutils import escape

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")  # characters XML 1.0 cannot carry
_MAX_TEXT = 32767  # Excel's limit on the characters of one cell

_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/styles.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
    "{sheets}</Types>"
)
_SHEET_TYPE = ('<Override PartName="/xl/worksheets/sheet{n}.xml" '
               'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>')
_ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
    'Target="xl/workbook.xml"/></Relationships>'
)
_WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>{sheets}</sheets>'
    "</workbook>"
)
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">{sheets}'
    '<Relationship Id="rIdStyles" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/>'
    "</Relationships>"
)
_SHEET_REL = ('<Relationship Id="rId{n}" '
              'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
              'Target="worksheets/sheet{n}.xml"/>')
_STYLES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    '<fonts count="2"><font><sz val="11"/><name val="Calibri"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="2"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/></cellXfs>'
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>"
)
_SHEET_HEAD = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
               '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>')
_SHEET_TAIL = "</sheetData></worksheet>"


def _column(k: int) -> str:
    """Column letters of the 0-based column k (A, B, …, Z, AA, …)."""
    name = ""
    k += 1
    while k:
        k, rest = divmod(k - 1, 26)
        name = chr(65 + rest) + name
    return name


def _text(value: str) -> str:
    return escape(_NOT_XML.sub("", value[:_MAX_TEXT]))


def _cell(ref: str, value: object, style: str) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return f'<c r="{ref}"{style} t="b"><v>{int(value)}</v></c>'
    if isinstance(value, int | float | Decimal):
        return f'<c r="{ref}"{style}><v>{value}</v></c>'
    return f'<c r="{ref}"{style} t="inlineStr"><is><t xml:space="preserve">{_text(str(value))}</t></is></c>'


class Sheet:
    """One worksheet of a Book: rows appended in order."""

    def __init__(self, out: io.TextIOWrapper) -> None:
        self._out = out
        self._row = 0
        self._letters: list[str] = []

    def append(self, values: Iterable[object], *, bold: bool = False) -> None:
        """Write the next row: str as text, int/float/Decimal as numbers, bool as TRUE/FALSE, None as empty."""
        self._row += 1
        n, style = self._row, ' s="1"' if bold else ""
        cells = list(values)
        while len(self._letters) < len(cells):
            self._letters.append(_column(len(self._letters)))
        letters = self._letters
        self._out.write(f'<row r="{n}">' + "".join(_cell(f"{letters[k]}{n}", v, style) for k, v in enumerate(cells))
                        + "</row>")


class Book:
    """A workbook written sheet by sheet into memory; bytes() once every sheet is done."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()
        self._zip = zipfile.ZipFile(self._buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1)
        self._names: list[str] = []
        self._open: io.TextIOWrapper | None = None

    def sheet(self, name: str) -> Sheet:
        """Start the next sheet (the previous one is finished); names are cut to Excel's 31 characters."""
        self._finish_sheet()
        self._names.append(name[:31])
        raw = self._zip.open(f"xl/worksheets/sheet{len(self._names)}.xml", "w", force_zip64=True)
        self._open = io.TextIOWrapper(raw, encoding="utf-8", write_through=False)
        self._open.write(_SHEET_HEAD)
        return Sheet(self._open)

    def _finish_sheet(self) -> None:
        if self._open is not None:
            self._open.write(_SHEET_TAIL)
            self._open.close()
            self._open = None

    def bytes(self) -> bytes:
        """Finish the package and return the .xlsx file."""
        self._finish_sheet()
        count = range(1, len(self._names) + 1)
        self._zip.writestr("[Content_Types].xml",
                           _CONTENT_TYPES.format(sheets="".join(_SHEET_TYPE.format(n=n) for n in count)))
        self._zip.writestr("_rels/.rels", _ROOT_RELS)
        self._zip.writestr("xl/workbook.xml", _WORKBOOK.format(sheets="".join(
            f'<sheet name="{escape(name, {chr(34): "&quot;"})}" sheetId="{n}" r:id="rId{n}"/>'
            for n, name in zip(count, self._names, strict=True))))
        self._zip.writestr("xl/_rels/workbook.xml.rels",
                           _WORKBOOK_RELS.format(sheets="".join(_SHEET_REL.format(n=n) for n in count)))
        self._zip.writestr("xl/styles.xml", _STYLES)
        self._zip.close()
        return self._buffer.getvalue()
