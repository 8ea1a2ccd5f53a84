"""Text out of stored elements, cut into passages, for semantic search.

`classify` decides from an element's content type and key (its extension)
how to read it: plain text (``text/*``, Markdown kept as it is, XML, YAML,
source code), JSON (each string value after its key path, one a line; JSON
Lines record by record), CSV and TSV (rows as lines), HTML (the visible
text: scripts and styles left out, blocks as paragraphs), PDF (the pages'
text, by pypdf). An element of no known type is read as plain text when its
first bytes are UTF-8 without NUL; images, audio, video, archives and office
documents are not read at all.

`extract` turns an element's bytes into text under limits (`TEXT_CHARS_MAX`);
it raises `NotText` for bytes that are not text and `ExtractionFailed` for a
document its reader cannot parse, so an indexer can count both and go on.
`cut_passages` cuts text into passages of at most `PASSAGE_WORDS` words,
each a slice of the text as written: a passage ends at a paragraph break
(else a line break) in its second half where there is one, and the next
passage begins there; a passage cut inside a paragraph is overlapped by the
next one's first `OVERLAP_WORDS` words, so no sentence loses its context.

    >>> cut_passages("one two\\n\\nthree", words_max=2, overlap_words=1)
    ['one two', 'three']
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import mimetypes
import posixpath
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any, Final

#: Bytes of an element read at most; longer plain text is read up to here, and
#: a longer PDF or JSON (which cannot be parsed in part) is not read.
ELEMENT_BYTES_MAX: Final = 32 * 1024**2
#: Characters of text kept per element (the rest is left out of its passages).
TEXT_CHARS_MAX: Final = 2_000_000
PASSAGES_MAX: Final = 10_000
PASSAGE_WORDS: Final = 120
OVERLAP_WORDS: Final = 20
#: Bytes looked at to tell text from binary in an element of no known type.
SNIFF_BYTES: Final = 8192
PDF_PAGES_MAX: Final = 5_000
#: JSON nested deeper than this is not read (its values are left out).
JSON_DEPTH_MAX: Final = 64
#: A JSON document with no string values is indexed as written up to this size.
JSON_RAW_CHARS_MAX: Final = 4_000
#: A "word" longer than this is cut into pieces (a base64 blob is no one word).
_WORD: Final = re.compile(r"\S{1,64}")

# The kinds of reader.
TEXT: Final = "text"
JSON: Final = "json"
JSON_LINES: Final = "jsonl"
CSV: Final = "csv"
TSV: Final = "tsv"
HTML: Final = "html"
PDF: Final = "pdf"
#: No known type: read as text if the first bytes look like text.
SNIFF: Final = "sniff"
#: Read as a whole or not at all (a prefix of one does not parse).
WHOLE_KINDS: Final = frozenset({JSON, PDF})

_MEDIA_KINDS: Final = {
    "text/html": HTML,
    "application/xhtml+xml": HTML,
    "application/json": JSON,
    "text/json": JSON,
    "application/x-ndjson": JSON_LINES,
    "application/ndjson": JSON_LINES,
    "application/jsonl": JSON_LINES,
    "application/x-jsonlines": JSON_LINES,
    "application/jsonlines": JSON_LINES,
    "text/csv": CSV,
    "text/tab-separated-values": TSV,
    "application/pdf": PDF,
    "application/xml": TEXT,
    "application/javascript": TEXT,
    "application/x-javascript": TEXT,
    "application/yaml": TEXT,
    "application/x-yaml": TEXT,
    "application/toml": TEXT,
    "application/sql": TEXT,
    "application/x-sh": TEXT,
    "application/x-tex": TEXT,
    "application/x-latex": TEXT,
    "application/rtf": TEXT,
}
#: Content types that say nothing: the key's extension decides, else the bytes.
_UNKNOWN_MEDIA: Final = frozenset(
    {"", "application/octet-stream", "binary/octet-stream", "application/unknown"}
)
#: Extensions the standard library's table may lack or map to no text type.
_EXTENSION_KINDS: Final = {
    ".md": TEXT, ".markdown": TEXT, ".txt": TEXT, ".text": TEXT, ".rst": TEXT,
    ".log": TEXT, ".yaml": TEXT, ".yml": TEXT, ".toml": TEXT, ".ini": TEXT, ".cfg": TEXT,
    ".org": TEXT, ".adoc": TEXT, ".tex": TEXT, ".srt": TEXT, ".vtt": TEXT,
    ".json": JSON, ".jsonl": JSON_LINES, ".ndjson": JSON_LINES,
    ".csv": CSV, ".tsv": TSV, ".html": HTML, ".htm": HTML, ".xhtml": HTML, ".pdf": PDF,
}  # fmt: skip
_BINARY_MEDIA_TOPS: Final = ("image/", "audio/", "video/", "font/", "model/")


class NotText(Exception):
    """The element's bytes are not text (binary data, or a type no reader takes)."""


class ExtractionFailed(Exception):
    """The element claims a format its reader could not parse; the message says why."""


def classify(content_type: str, key: str) -> str | None:
    """The kind of reader for an element (`TEXT`, `JSON`, ..., `SNIFF`), or None for
    one that is not text and is not to be read at all.

    A specific content type decides; ``text/plain`` and the types that say
    nothing (``application/octet-stream``, none) leave it to the extension.

    >>> classify("text/plain", "notes/a.md"), classify("image/png", "a.png")
    ('text', None)
    """
    media = _media(content_type)
    if media not in _UNKNOWN_MEDIA and media != "text/plain":
        return _media_kind(media)
    extension = posixpath.splitext(key)[1].lower()
    if extension in _EXTENSION_KINDS:
        return _EXTENSION_KINDS[extension]
    guessed = mimetypes.guess_type(key, strict=False)[0]
    if guessed is not None and _media(guessed) not in _UNKNOWN_MEDIA:
        return _media_kind(_media(guessed))
    return TEXT if media == "text/plain" else SNIFF


def _media(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _media_kind(media: str) -> str | None:
    if media in _MEDIA_KINDS:
        return _MEDIA_KINDS[media]
    if media.endswith("+json"):
        return JSON
    if media.endswith("+xml") and not media.startswith(_BINARY_MEDIA_TOPS):
        return TEXT
    if media.startswith("text/"):
        return TEXT
    return None  # images, audio, video, archives, office documents, other binaries


def charset_of(content_type: str) -> str | None:
    """The ``charset`` parameter of a content type, if it names a codec Python knows."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
            try:
                return codecs.lookup(charset).name
            except LookupError:
                return None
    return None


def looks_like_text(head: bytes) -> bool:
    """Whether the first bytes of an element of no known type are text: no NUL, and
    UTF-8 (a UTF-16 byte order mark counts too)."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return True
    if b"\x00" in head:
        return False
    try:
        # Not final: the sample may end inside a character.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


def extract(data: bytes, kind: str, *, charset: str | None = None, complete: bool = True) -> str:
    """The text of an element's bytes read as ``kind`` (see `classify`), at most
    `TEXT_CHARS_MAX` characters, with line breaks normalised to ``\\n``.

    ``complete`` is False when ``data`` is only the element's first bytes (a
    character cut at the end is then dropped). Raises `NotText` for bytes that
    are not text, `ExtractionFailed` for a document that does not parse.
    """
    if kind == PDF:
        return _limit(_pdf_text(data))
    if kind == SNIFF and not looks_like_text(data[:SNIFF_BYTES]):
        raise NotText("binary data")
    text = _decode(data, charset=charset, complete=complete, strict=kind == SNIFF)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    try:
        if kind == JSON:
            return _limit(_json_text(text))
        if kind == JSON_LINES:
            return _limit(_json_lines_text(text))
        if kind in (CSV, TSV):
            return _limit(_csv_text(text, tab=kind == TSV))
        if kind == HTML:
            return _limit(_html_text(text))
    except (ValueError, RecursionError, csv.Error) as error:
        raise ExtractionFailed(f"{kind.upper()} that does not parse: {error}") from error
    return _limit(text)


def _limit(text: str) -> str:
    return text[:TEXT_CHARS_MAX]


def _decode(data: bytes, *, charset: str | None, complete: bool, strict: bool) -> str:
    if data.startswith(codecs.BOM_UTF8):
        data, charset = data[len(codecs.BOM_UTF8) :], "utf-8"
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        charset = "utf-16"
    if charset is not None and charset != "utf-8":
        decoder = codecs.getincrementaldecoder(charset)(errors="replace")
        text: str = decoder.decode(data, final=complete)
        if "\x00" in text:
            raise NotText(f"binary data (NUL characters in {charset} text)")
        return text
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(data, final=complete)
    except UnicodeDecodeError as error:
        if strict:  # no type said this is text: a stray non-UTF-8 byte says it is not
            raise NotText(f"not UTF-8 ({error.reason} at byte {error.start})") from error
    # Declared text in another encoding, or with a few bad bytes: keep what reads.
    return codecs.getincrementaldecoder("utf-8")(errors="replace").decode(data, final=complete)


# -- JSON -------------------------------------------------------------------------------------


def _json_text(text: str) -> str:
    lines = list(_json_lines(json.loads(text), ""))
    if lines:
        return "\n".join(lines)
    # No strings to speak of (numbers, booleans): a small document is still words.
    return text if len(text) <= JSON_RAW_CHARS_MAX else ""


def _json_lines_text(text: str) -> str:
    records = []
    total = 0
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as error:
            raise ValueError(f"line {number}: {error}") from error
        record = "\n".join(_json_lines(value, ""))
        if record:
            records.append(record)
            total += len(record)
        if total > TEXT_CHARS_MAX:
            break
    return "\n\n".join(records)  # a record per paragraph: passages end between records


def _json_lines(value: Any, path: str, depth: int = 0) -> Iterator[str]:
    """``path: string`` for each string value (list indexes are left out of the path:
    they carry no meaning, the keys do)."""
    if depth > JSON_DEPTH_MAX:
        return
    if isinstance(value, str):
        if value.strip():
            yield f"{path}: {value}" if path else value
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from _json_lines(item, f"{path}.{name}" if path else str(name), depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from _json_lines(item, path, depth + 1)


# -- CSV --------------------------------------------------------------------------------------


def _csv_text(text: str, *, tab: bool) -> str:
    if tab:
        dialect: Any = csv.excel_tab
    else:
        try:
            dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
        except csv.Error:
            dialect = csv.excel
    lines = []
    total = 0
    for row in csv.reader(io.StringIO(text), dialect):
        line = ", ".join(cell.strip() for cell in row if cell.strip())
        if line:
            lines.append(line)
            total += len(line) + 1
        if total > TEXT_CHARS_MAX:
            break
    return "\n".join(lines)


# -- HTML -------------------------------------------------------------------------------------


class _VisibleText(HTMLParser):
    """The text a browser shows: no scripts, styles or templates; blocks as paragraphs."""

    HIDDEN: Final = frozenset({"script", "style", "noscript", "template", "svg", "math"})
    BLOCKS: Final = frozenset({
        "address", "article", "aside", "blockquote", "caption", "dd", "div", "dl", "dt",
        "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
        "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "td", "th", "title",
        "tr", "ul",
    })  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self._hidden += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")
        elif tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def _html_text(text: str) -> str:
    parser = _VisibleText()
    parser.feed(text)
    parser.close()
    paragraphs = []
    for block in re.split(r"\n\s*\n", "".join(parser.parts)):
        lines = [" ".join(line.split()) for line in block.split("\n")]
        paragraph = "\n".join(line for line in lines if line)
        if paragraph:
            paragraphs.append(paragraph)
    return "\n\n".join(paragraphs)


# -- PDF --------------------------------------------------------------------------------------


def _pdf_text(data: bytes) -> str:
    try:
        import pypdf
    except ImportError as error:
        raise ExtractionFailed("PDF needs pypdf: pip install 'tier0[embeddings]'") from error
    pages = []
    total = 0
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ExtractionFailed("the PDF is encrypted")
        for number, page in enumerate(reader.pages):
            if number >= PDF_PAGES_MAX or total > TEXT_CHARS_MAX:
                break
            page_text = (page.extract_text() or "").replace("\r\n", "\n").replace("\r", "\n")
            pages.append(page_text.strip())
            total += len(page_text)
    except ExtractionFailed:
        raise
    except Exception as error:
        # pypdf raises whatever a malformed file provokes (PdfReadError, but also
        # KeyError, TypeError, ValueError deep in its parser): one bad document
        # must fail alone, not the run that reads it.
        raise ExtractionFailed(
            f"PDF that does not parse: {type(error).__name__}: {error}"
        ) from error
    return "\n\n".join(page for page in pages if page)


# -- passages ---------------------------------------------------------------------------------


def cut_passages(
    text: str, *, words_max: int = PASSAGE_WORDS, overlap_words: int = OVERLAP_WORDS,
    passages_max: int = PASSAGES_MAX,
) -> list[str]:  # fmt: skip
    """``text`` cut into at most ``passages_max`` passages of at most ``words_max``
    words each (see the module docstring and `passage_spans`)."""
    spans = passage_spans(
        text, words_max=words_max, overlap_words=overlap_words, passages_max=passages_max
    )
    return [text[start:end] for start, end in spans]


def passage_spans(
    text: str, *, words_max: int = PASSAGE_WORDS, overlap_words: int = OVERLAP_WORDS,
    passages_max: int = PASSAGES_MAX,
) -> list[tuple[int, int]]:  # fmt: skip
    """Where `cut_passages` cuts: (start, end) character offsets of each passage, in
    order, from a word's start to a word's end. Every word of the text is in a
    passage unless the text needed more than ``passages_max``; a passage begins
    after the previous one began, at most ``overlap_words`` words before it ended."""
    if not 0 <= overlap_words < words_max:
        raise ValueError(f"overlap_words is 0..{words_max - 1}, not {overlap_words}")
    words = [match.span() for match in _WORD.finditer(text)]
    count = len(words)
    # breaks[i]: what lies before word i: 2 a paragraph break, 1 a line break, 0 neither.
    breaks = [0] * (count + 1)
    for i in range(1, count):
        breaks[i] = min(text.count("\n", words[i - 1][1], words[i][0]), 2)
    spans: list[tuple[int, int]] = []
    start = covered = 0  # the passage's first word; the words before `covered` are in one
    while start < count and len(spans) < passages_max:
        end = min(start + words_max, count)  # exclusive
        if end < count:
            # At a break in the passage's second half, and past the previous passage's
            # end: a passage of words all carried over would say nothing new.
            end = _break_before(breaks, max(start + words_max // 2, covered), end) or end
        spans.append((words[start][0], words[end - 1][1]))
        covered = end
        if end >= count:
            break
        if breaks[end] == 2:
            start = end  # the passage ended with its paragraph: nothing to carry over
            continue
        # Carry the last words over, from the start of a line among them if there is one
        # (a CSV row or a list item whole, rather than its tail).
        carried = max(end - overlap_words, start + 1)
        start = next((i for i in range(carried, end) if breaks[i]), carried)
    return spans


def _break_before(breaks: list[int], low: int, high: int) -> int | None:
    """The last word index in (low, high] after a paragraph break, else after a line break."""
    for level in (2, 1):
        for i in range(high, low, -1):
            if breaks[i] >= level:
                return i
    return None
