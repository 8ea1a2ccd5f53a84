"""Semantic search: text out of elements, passages, `Tier0.index`/`Tier0.search`, the CLI.

The extraction and passage tests need neither a store nor the model. The
others run on both metadata backends (the ``t0`` fixture) with the real
all-MiniLM-L6-v2 model, loaded once per test session by the module's own
singleton (the first test to use it pays a few seconds: they are marked
slow), over a small corpus written here: nine short documents on distinct
topics in plain text, Markdown, HTML, JSON, CSV and a PDF built byte by byte
below, plus a picture, a binary blob, and a JSON and a PDF that do not parse.
Queries are paraphrases that share almost no words with their document.
"""

from __future__ import annotations

import io
import json
import sys
import threading

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import tier0
from tier0.cli import cli
from tier0.db import _extract, _semantic
from tier0.db._extract import cut_passages, passage_spans
from tier0.errors import (
    InvalidArgument,
    InvalidKey,
    NoSuchBucket,
    NoSuchTable,
    TableSchemaError,
)

BUCKET = "bkt"
PASSAGES = f"{BUCKET}/_passages"


def _pdf(pages: list[str]) -> bytes:
    """A minimal PDF with one page per string (lines by '\\n'), Helvetica text that
    pypdf extracts: objects written in order, then the cross-reference table of
    their byte offsets."""
    count = len(pages)
    page_ids = [4 + 2 * n for n in range(count)]
    kids = b" ".join(b"%d 0 R" % page for page in page_ids)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % count,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for page_id, text in zip(page_ids, pages, strict=True):
        shown = b" ".join(b"(" + line.encode("latin-1") + b") Tj T*" for line in text.split("\n"))
        content = b"BT /F1 12 Tf 72 720 Td 14 TL " + shown + b" ET"
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
            b" /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (page_id + 1)
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.writelines(b"%010d 00000 n \n" % offset for offset in offsets)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1))
    out.write(b"startxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


VOLCANO_PDF = _pdf(
    [
        "Volcanoes erupt when magma rises through the crust.",
        "Lava flows downhill and ash clouds ground aircraft.",
    ]
)
#: key -> (bytes, content type or None for the store's guess from the extension)
TEXT_DOCUMENTS: dict[str, tuple[bytes, str | None]] = {
    "notes/bread.txt": (
        b"To bake sourdough bread, feed the starter the night before. Mix flour, water and"
        b" salt, fold the dough every half hour, let it rise slowly in a cool kitchen and bake"
        b" it in a very hot oven with steam.",
        None,
    ),
    "notes/mars.md": (
        b"# Perseverance\n\nNASA's Perseverance rover landed in Jezero crater on Mars in 2021."
        b" It drills rock cores that may hold traces of ancient microbial life, and it carried"
        b" the Ingenuity helicopter.",
        None,
    ),
    "notes/chess.txt": (
        b"The Sicilian Defence answers 1.e4 with c5. Black fights for the centre from the side,"
        b" castles early and counterattacks on the queenside while White attacks the king.",
        None,
    ),
    "notes/garden.md": (
        b"## Tomatoes\n\nPlant tomato seedlings after the last frost in a sunny bed, water them"
        b" deeply twice a week, tie the stems to stakes and pinch off side shoots for a bigger"
        b" harvest.",
        None,
    ),
    "web/taxes.html": (
        b"<html><head><title>Filing deadline</title><style>body { color: red; }</style>"
        b"<script>var football = 'goal';</script></head><body><h1>Income tax</h1><p>File your"
        b" federal income tax return and pay what you owe before April 15, or ask for an"
        b" extension to avoid late penalties and interest.</p></body></html>",
        None,
    ),
    "web/worldcup.html": (
        b"<html><body><article><h2>World Cup final</h2><p>Argentina beat France on penalties"
        b" after a 3-3 draw in Qatar; Messi lifted the trophy and Mbappe scored a hat-trick."
        b"</p></article></body></html>",
        None,
    ),
    "data/dogs.json": (
        json.dumps(
            {
                "title": "Dog training",
                "tips": ["Reward good behaviour with treats right away", "Keep lessons short"],
                "topics": {"commands": "sit, stay, come and heel on the leash"},
            }
        ).encode(),
        None,
    ),
    "data/coffee.csv": (
        b"method,water temperature,grind,brew time\nespresso,93 C,fine,30 seconds\n"
        b"pour over,96 C,medium,3 minutes\nfrench press,95 C,coarse,4 minutes\n",
        None,
    ),
    "papers/volcano.pdf": (VOLCANO_PDF, None),
}
OTHER_DOCUMENTS: dict[str, tuple[bytes, str | None]] = {
    "images/photo.png": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00", None),
    "blobs/raw": (bytes(range(256)) * 4, "application/octet-stream"),
    "data/broken.json": (b'{"title": "unfinished', None),
    "papers/broken.pdf": (b"%PDF-1.4\nthis is not a PDF at all", None),
}
#: paraphrased query -> the document it means
QUERIES = {
    "how do I make a loaf with wild yeast at home": "notes/bread.txt",
    "a robot exploring the red planet": "notes/mars.md",
    "when must my yearly return reach the revenue service": "web/taxes.html",
    "teaching a puppy to obey": "data/dogs.json",
    "molten rock pouring from a mountain": "papers/volcano.pdf",
    "how hot should the water be when making a cup of joe": "data/coffee.csv",
    "growing vegetables in the backyard": "notes/garden.md",
    "board game opening strategy": "notes/chess.txt",
    "soccer championship match decided by a shootout": "web/worldcup.html",
}


def _fill(t0: tier0.Tier0, documents: dict[str, tuple[bytes, str | None]]) -> None:
    for key, (data, content_type) in documents.items():
        t0.put(BUCKET, key, data, content_type=content_type)


@pytest.fixture
def corpus(t0: tier0.Tier0) -> tier0.Tier0:
    """``t0`` with bucket ``bkt`` holding every document above, not indexed yet."""
    t0.create_bucket(BUCKET)
    _fill(t0, TEXT_DOCUMENTS | OTHER_DOCUMENTS)
    return t0


@pytest.fixture
def indexed(corpus: tier0.Tier0) -> tier0.Tier0:
    """The corpus, indexed once."""
    corpus.index(BUCKET)
    return corpus


def _passages(t0: tier0.Tier0) -> dict[str, list[tuple[int, int, str]]]:
    """key -> [(seq, passage, text)] of what the passages table holds, in order."""
    rows = t0.table(PASSAGES).to_arrow(columns=["key", "seq", "passage", "text"]).to_pylist()
    held: dict[str, list[tuple[int, int, str]]] = {}
    for row in sorted(rows, key=lambda r: (r["key"], r["seq"], r["passage"])):
        held.setdefault(row["key"], []).append((row["seq"], row["passage"], row["text"]))
    return held


def _keys(result: object) -> list[str]:
    import pyarrow as pa

    assert isinstance(result, pa.Table)
    return [str(key) for key in result.column("key").to_pylist()]


# -- what is read as text ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "key", "kind"),
    [
        ("text/plain", "a.txt", _extract.TEXT),
        ("text/markdown", "a.md", _extract.TEXT),
        ("text/plain", "b/notes.md", _extract.TEXT),
        ("text/plain", "data.json", _extract.JSON),  # text/plain leaves it to the extension
        ("application/json", "x", _extract.JSON),
        ("application/vnd.api+json", "x", _extract.JSON),
        ("application/octet-stream", "rows.jsonl", _extract.JSON_LINES),
        ("text/csv", "x", _extract.CSV),
        ("application/octet-stream", "t.tsv", _extract.TSV),
        ("text/html; charset=utf-8", "x", _extract.HTML),
        ("application/pdf", "x", _extract.PDF),
        ("application/octet-stream", "doc.pdf", _extract.PDF),
        ("application/x-yaml", "x", _extract.TEXT),
        ("image/svg+xml", "logo.svg", None),
        ("image/png", "notes.txt", None),  # a specific content type wins over the extension
        ("application/zip", "a.zip", None),
        ("application/octet-stream", "archive.tar.gz", None),
        ("application/octet-stream", "README", _extract.SNIFF),
        ("", "no-extension", _extract.SNIFF),
    ],
)
def test_classify_reads_content_type_then_extension(
    content_type: str, key: str, kind: str | None
) -> None:
    assert _extract.classify(content_type, key) == kind


def test_extract_html_keeps_visible_text_in_paragraphs() -> None:
    text = _extract.extract(TEXT_DOCUMENTS["web/taxes.html"][0], _extract.HTML)
    assert text.split("\n\n") == [
        "Filing deadline",
        "Income tax",
        "File your federal income tax return and pay what you owe before April 15, or ask for"
        " an extension to avoid late penalties and interest.",
    ]
    assert "football" not in text and "color" not in text  # script and style left out


def test_extract_html_decodes_entities_and_breaks_lines() -> None:
    text = _extract.extract(b"<p>fish &amp; chips<br>caf&eacute;</p><div>next</div>", "html")
    assert text == "fish & chips\ncafé\n\nnext"


def test_extract_json_gives_string_values_after_their_key_paths() -> None:
    text = _extract.extract(TEXT_DOCUMENTS["data/dogs.json"][0], _extract.JSON)
    assert text.split("\n") == [
        "title: Dog training",
        "tips: Reward good behaviour with treats right away",
        "tips: Keep lessons short",
        "topics.commands: sit, stay, come and heel on the leash",
    ]


def test_extract_json_without_strings_keeps_small_text_as_written() -> None:
    assert _extract.extract(b"[1, 2, 3]", _extract.JSON) == "[1, 2, 3]"
    big = json.dumps(list(range(_extract.JSON_RAW_CHARS_MAX))).encode()
    assert _extract.extract(big, _extract.JSON) == ""


def test_extract_json_lines_puts_each_record_in_its_own_paragraph() -> None:
    data = b'{"q": "first question"}\n\n{"q": "second", "a": "answer"}\n'
    assert (
        _extract.extract(data, _extract.JSON_LINES) == "q: first question\n\nq: second\na: answer"
    )


def test_extract_csv_and_tsv_give_rows_as_lines() -> None:
    text = _extract.extract(TEXT_DOCUMENTS["data/coffee.csv"][0], _extract.CSV)
    assert text.split("\n") == [
        "method, water temperature, grind, brew time",
        "espresso, 93 C, fine, 30 seconds",
        "pour over, 96 C, medium, 3 minutes",
        "french press, 95 C, coarse, 4 minutes",
    ]
    assert _extract.extract(b"a b\tc\n1\t\t2\n", _extract.TSV) == "a b, c\n1, 2"


def test_extract_pdf_joins_page_texts_as_paragraphs() -> None:
    text = _extract.extract(VOLCANO_PDF, _extract.PDF)
    assert text == (
        "Volcanoes erupt when magma rises through the crust.\n\n"
        "Lava flows downhill and ash clouds ground aircraft."
    )


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (OTHER_DOCUMENTS["data/broken.json"][0], _extract.JSON),
        (b'{"a": "b"}\nnot json\n', _extract.JSON_LINES),
        (OTHER_DOCUMENTS["papers/broken.pdf"][0], _extract.PDF),
        (b"", _extract.PDF),
    ],
)
def test_extract_raises_extraction_failed_for_documents_that_do_not_parse(
    data: bytes, kind: str
) -> None:
    with pytest.raises(_extract.ExtractionFailed, match="does not parse"):
        _extract.extract(data, kind)


@pytest.mark.parametrize(
    "data",
    [b"\x89PNG\r\n\x1a\n\x00\x00", bytes(range(256)), b"caf\xe9 au lait"],  # NUL; NUL; Latin-1
)
def test_extract_raises_not_text_for_bytes_of_unknown_type_that_are_not_utf8(
    data: bytes,
) -> None:
    with pytest.raises(_extract.NotText):
        _extract.extract(data, _extract.SNIFF)


def test_extract_reads_unknown_type_as_text_when_it_is_utf8() -> None:
    data = "naïve café\r\nsecond line".encode()
    assert _extract.extract(data, _extract.SNIFF) == "naïve café\nsecond line"


def test_extract_decodes_the_declared_charset_and_strips_a_bom() -> None:
    charset = _extract.charset_of('text/plain; charset="ISO-8859-1"')
    assert charset == "iso8859-1"
    assert _extract.extract(b"caf\xe9", _extract.TEXT, charset=charset) == "café"
    assert _extract.extract(b"\xef\xbb\xbfhello", _extract.TEXT) == "hello"
    assert _extract.extract("hi there".encode("utf-16"), _extract.SNIFF) == "hi there"
    assert _extract.charset_of("text/plain; charset=no-such-codec") is None


def test_extract_drops_a_character_cut_by_a_partial_read() -> None:
    data = "ab€".encode()[:-1]  # the read stopped inside the euro sign
    assert _extract.extract(data, _extract.TEXT, complete=False) == "ab"


def test_extract_keeps_at_most_text_chars_max_characters() -> None:
    data = b"word " * (_extract.TEXT_CHARS_MAX // 5 + 1000)
    assert len(_extract.extract(data, _extract.TEXT)) == _extract.TEXT_CHARS_MAX


# -- passages ----------------------------------------------------------------------------------


def _numbered(count: int, start: int = 0) -> str:
    return " ".join(f"w{n}" for n in range(start, start + count))


def test_cut_passages_keeps_a_short_text_whole() -> None:
    assert cut_passages("  one short text \n") == ["one short text"]
    assert cut_passages(" \n\n ") == []


def test_cut_passages_overlaps_passages_cut_inside_a_paragraph() -> None:
    passages = cut_passages(_numbered(300), words_max=120, overlap_words=20)
    assert passages == [_numbered(120), _numbered(120, 100), _numbered(100, 200)]


def test_cut_passages_ends_at_a_paragraph_break_without_overlap() -> None:
    text = _numbered(80) + "\n\n" + _numbered(80, 80)
    assert cut_passages(text, words_max=120, overlap_words=20) == [
        _numbered(80),
        _numbered(80, 80),
    ]


def test_cut_passages_carries_whole_lines_into_the_next_passage() -> None:
    rows = [f"row{n} a b c d" for n in range(10)]  # lines of 5 words
    passages = cut_passages("\n".join(rows), words_max=12, overlap_words=6)
    assert passages[0] == "\n".join(rows[0:2])  # cut at the line break before word 12
    assert passages[1] == "\n".join(rows[1:3])  # one whole row carried over
    assert passages[-1].endswith("row9 a b c d")


def test_cut_passages_cuts_overlong_tokens_into_words() -> None:
    passages = cut_passages("x" * 1000, words_max=4, overlap_words=0)
    assert [len(passage) for passage in passages] == [256, 256, 256, 232]


def test_cut_passages_stops_at_passages_max() -> None:
    assert len(cut_passages(_numbered(1000), words_max=10, overlap_words=0, passages_max=7)) == 7


def test_cut_passages_rejects_overlap_as_long_as_a_passage() -> None:
    with pytest.raises(ValueError, match="overlap_words"):
        cut_passages("a b c", words_max=5, overlap_words=5)


_TEXTS = st.lists(
    st.tuples(
        st.sampled_from(["alpha", "beta", "gamma", "é", "x" * 70]),
        st.sampled_from([" ", "\n", "\n\n", "  \n \n"]),
    ),
    max_size=300,
).map(lambda parts: "".join(word + gap for word, gap in parts))


@settings(max_examples=200, deadline=None)
@given(text=_TEXTS, words_max=st.integers(2, 40), overlap=st.integers(0, 39))
def test_passage_spans_cover_every_word_in_order_within_bounds(
    text: str, words_max: int, overlap: int
) -> None:
    overlap = min(overlap, words_max - 1)
    spans = passage_spans(text, words_max=words_max, overlap_words=overlap)
    starts = {match.start(): n for n, match in enumerate(_extract._WORD.finditer(text))}
    ends = {match.end(): n + 1 for n, match in enumerate(_extract._WORD.finditer(text))}
    covered = 0  # words [0, covered) are in a passage so far
    for start, end in spans:
        first, last = starts[start], ends[end]  # KeyError: not cut at word boundaries
        assert 1 <= last - first <= words_max
        assert first <= covered  # no word skipped
        assert covered - first <= overlap  # overlap bounded
        assert last > covered  # progress
        covered = last
    assert covered == len(starts)
    assert cut_passages(text, words_max=words_max, overlap_words=overlap) == [
        text[start:end] for start, end in spans
    ]


# -- the model ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_embedder_is_loaded_once_per_process_and_gives_unit_vectors() -> None:
    found: list[_semantic.Embedder] = []
    threads = [
        threading.Thread(target=lambda: found.append(_semantic.embedder())) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 4 and all(embedder is found[0] for embedder in found)
    vectors = found[0].embed(["a cat on a mat", "a kitten on a rug", "stock market crash"])
    assert vectors.shape == (3, 384) and vectors.dtype.name == "float32"
    assert abs(float((vectors * vectors).sum(axis=1).max()) - 1) < 1e-5
    similar, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert similar > 0.5 > unrelated


def test_embedder_without_the_extra_raises_invalid_argument_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Simulated: the packages are installed here. A None in sys.modules makes their
    # import raise ImportError, as on an installation without the extra; the
    # process's loaded model is set aside for the test and put back after it.
    monkeypatch.setattr(_semantic, "_embedder", None)
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(InvalidArgument, match=r"pip install 'tier0\[embeddings\]'"):
        _semantic.embedder()
    assert _semantic._embedder is None  # nothing half-loaded is kept


@pytest.mark.slow
def test_index_without_the_extra_fails_before_writing_passages(
    t0: tier0.Tier0, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulated as above.
    t0.create_bucket(BUCKET)
    _fill(t0, {"notes/bread.txt": TEXT_DOCUMENTS["notes/bread.txt"]})
    monkeypatch.setattr(_semantic, "_embedder", None)
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(InvalidArgument, match=r"pip install 'tier0\[embeddings\]'"):
        t0.index(BUCKET)
    assert t0.table(PASSAGES).count() == 0
    monkeypatch.undo()
    report = t0.index(BUCKET)  # the cursor was not saved: the next run walks again
    assert report.walked and report.elements_indexed == 1


# -- indexing ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_index_first_run_walks_and_counts_every_element(corpus: tier0.Tier0) -> None:
    report = corpus.index(BUCKET)
    assert report.walked
    assert report.elements_indexed == len(TEXT_DOCUMENTS)
    assert report.elements_skipped == 2  # the picture and the binary blob
    assert report.elements_failed == 2
    assert sorted(key for key, _ in report.failures) == ["data/broken.json", "papers/broken.pdf"]
    assert all("does not parse" in reason for _, reason in report.failures)
    assert report.elements_unchanged == report.elements_removed == 0
    held = _passages(corpus)
    assert sorted(held) == sorted(TEXT_DOCUMENTS)
    assert report.passages_written == report.passages_embedded == sum(map(len, held.values()))
    for key in TEXT_DOCUMENTS:
        assert [seq for seq, _, _ in held[key]] == [corpus.head(BUCKET, key).seq] * len(held[key])
    last_put = max(corpus.head(BUCKET, key).seq for key in TEXT_DOCUMENTS | OTHER_DOCUMENTS)
    assert report.seq >= last_put
    assert all(event.type.startswith("Table") for event in corpus.events.read(report.seq))


@pytest.mark.slow
def test_index_second_run_without_changes_embeds_nothing(indexed: tier0.Tier0) -> None:
    before = _passages(indexed)
    report = indexed.index(BUCKET)
    assert not report.walked
    assert report.passages_embedded == report.passages_written == 0
    assert report.elements_indexed == report.elements_unchanged == report.elements_skipped == 0
    assert _passages(indexed) == before


@pytest.mark.slow
def test_index_follows_modified_deleted_and_new_elements(indexed: tier0.Tier0) -> None:
    before = _passages(indexed)
    indexed.put(BUCKET, "notes/chess.txt", b"Knitting a wool scarf: cast on forty stitches.")
    indexed.delete(BUCKET, "notes/mars.md")
    indexed.put(BUCKET, "notes/moon.txt", b"Apollo 11 astronauts walked on the lunar surface.")
    indexed.set_tags(BUCKET, "notes/bread.txt", {"kind": "recipe"})  # no new version
    report = indexed.index(BUCKET)
    assert not report.walked  # read from the events, not by listing the bucket
    assert (report.elements_indexed, report.elements_removed) == (2, 1)
    assert report.elements_unchanged == report.elements_skipped == report.elements_failed == 0
    assert report.passages_embedded == 2
    after = _passages(indexed)
    assert "notes/mars.md" not in after
    chess = indexed.head(BUCKET, "notes/chess.txt").seq
    assert after["notes/chess.txt"] == [
        (chess, 0, "Knitting a wool scarf: cast on forty stitches.")
    ]
    assert after["notes/moon.txt"][0][2].startswith("Apollo 11")
    for key in set(before) - {"notes/mars.md", "notes/chess.txt"}:
        assert after[key] == before[key]  # untouched
    assert _keys(indexed.search("men landing on the moon", bucket=BUCKET, k=1)) == [
        "notes/moon.txt"
    ]
    assert _keys(indexed.search("making winter clothes by hand", bucket=BUCKET, k=1)) == [
        "notes/chess.txt"
    ]
    found = _keys(indexed.search("board game opening strategy", bucket=BUCKET, k=20))
    assert "notes/mars.md" not in found and len(found) == len(set(found))


@pytest.mark.slow
def test_index_removes_passages_of_an_element_overwritten_by_binary(indexed: tier0.Tier0) -> None:
    indexed.put(BUCKET, "notes/bread.txt", b"\x00\x01\x02 binary now", content_type="image/jpeg")
    report = indexed.index(BUCKET)
    assert report.elements_skipped == 1 and report.elements_indexed == 0
    assert "notes/bread.txt" not in _passages(indexed)


@pytest.mark.slow
def test_index_follows_delete_markers_in_a_versioned_bucket(indexed: tier0.Tier0) -> None:
    indexed.set_versioning(BUCKET, "Enabled")
    indexed.delete(BUCKET, "notes/garden.md")  # a delete marker
    assert indexed.index(BUCKET).elements_removed == 1
    assert "notes/garden.md" not in _passages(indexed)


@pytest.mark.slow
def test_index_with_a_prefix_then_the_whole_bucket_embeds_only_the_rest(
    corpus: tier0.Tier0,
) -> None:
    notes = corpus.index(BUCKET, prefix="notes/")
    assert notes.walked and notes.elements_indexed == 4
    assert set(_passages(corpus)) == {key for key in TEXT_DOCUMENTS if key.startswith("notes/")}
    whole = corpus.index(BUCKET)
    assert whole.walked  # no cursor for the whole bucket yet
    assert whole.elements_unchanged == 4  # not read, not embedded again
    assert whole.elements_indexed == len(TEXT_DOCUMENTS) - 4
    assert set(_passages(corpus)) == set(TEXT_DOCUMENTS)
    corpus.put(BUCKET, "web/new.html", b"<p>Hello</p>")
    corpus.put(BUCKET, "notes/new.txt", b"Hello")
    again = corpus.index(BUCKET, prefix="notes/")
    assert (again.walked, again.elements_indexed) == (False, 1)  # web/ is not its business
    assert "web/new.html" not in _passages(corpus)


@pytest.mark.slow
def test_index_without_a_cursor_reconciles_with_the_table(indexed: tier0.Tier0) -> None:
    # As after a crash between the last write and saving the cursor, or a lost cursor:
    # the walk finds every element indexed at its current version, and a key deleted
    # meanwhile loses its passages.
    indexed.delete(BUCKET, "notes/chess.txt")

    def forget(tx: object) -> None:
        tx.execute("DELETE FROM t0_cursors")  # type: ignore[attr-defined]

    indexed._kernel.committer.run(forget)
    report = indexed.index(BUCKET)
    assert report.walked
    assert report.passages_embedded == 0
    assert report.elements_unchanged == len(TEXT_DOCUMENTS) - 1
    assert report.elements_removed == 1
    assert "notes/chess.txt" not in _passages(indexed)


@pytest.mark.slow
def test_index_cuts_a_long_document_into_overlapping_passages(t0: tier0.Tier0) -> None:
    t0.create_bucket(BUCKET)
    filler = " ".join(["The committee met and discussed the budget at length."] * 30)
    tail = "Finally, the lighthouse keeper polished the great lens before the storm arrived."
    t0.put(BUCKET, "minutes.txt", (filler + " " + tail).encode())
    report = t0.index(BUCKET)
    held = _passages(t0)["minutes.txt"]
    # 282 words: 0-119, 100-219 and 200-281, each overlapping the one before by 20.
    assert report.passages_written == len(held) == 3
    assert [passage for _, passage, _ in held] == [0, 1, 2]
    texts = [text for _, _, text in held]
    assert [len(text.split()) for text in texts] == [120, 120, 82]
    assert texts[1].split()[:20] == texts[0].split()[-20:]
    best = t0.search("a sailor's beacon on the coast", bucket=BUCKET, k=1).to_pylist()[0]
    assert best["passage"] == 2 and best["text"].endswith(tail)


@pytest.mark.slow
def test_index_builds_a_vector_index_once_the_table_is_large(
    corpus: tier0.Tier0, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The threshold is lowered rather than thousands of passages embedded.
    monkeypatch.setattr(_semantic, "INDEX_ROWS_MIN", 5)
    corpus.index(BUCKET)
    [index] = corpus.table(PASSAGES).indexes()
    assert (index.column, index.metric, index.rows) == ("embedding", "cosine", len(TEXT_DOCUMENTS))
    assert _keys(corpus.search("teaching a puppy to obey", bucket=BUCKET, k=1)) == [
        "data/dogs.json"
    ]


@pytest.mark.slow
def test_index_in_small_batches_writes_what_one_batch_would(
    corpus: tier0.Tier0, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of two passages and two keys: many inserts and deletes per run, and a
    # follow-up run with more changed keys than a batch (read by one table scan).
    monkeypatch.setattr(_semantic, "BATCH_PASSAGES_MAX", 2)
    monkeypatch.setattr(_semantic, "BATCH_KEYS_MAX", 2)
    first = corpus.index(BUCKET)
    assert first.elements_indexed == len(TEXT_DOCUMENTS)
    inserts = [e for e in corpus.events.read(0) if e.type == "TableRowsInserted"]
    assert len(inserts) >= len(TEXT_DOCUMENTS) // 2  # a commit per two passages
    for key in ("notes/bread.txt", "notes/chess.txt", "web/taxes.html"):
        corpus.put(BUCKET, key, f"Rewritten: {key} now tells of rivers.".encode())
    for key in ("notes/mars.md", "data/dogs.json"):
        corpus.delete(BUCKET, key)
    second = corpus.index(BUCKET)
    assert (second.elements_indexed, second.elements_removed) == (3, 2)
    held = _passages(corpus)
    assert sorted(held) == sorted(set(TEXT_DOCUMENTS) - {"notes/mars.md", "data/dogs.json"})
    for key, passages in held.items():
        seq = corpus.head(BUCKET, key).seq
        assert [(s, n) for s, n, _ in passages] == [(seq, n) for n in range(len(passages))]
    assert held["web/taxes.html"][0][2] == "Rewritten: web/taxes.html now tells of rivers."


@pytest.mark.slow
def test_index_runs_at_once_in_one_process_write_each_passage_once(corpus: tier0.Tier0) -> None:
    reports: list[_semantic.IndexReport] = []
    threads = [
        threading.Thread(target=lambda: reports.append(corpus.index(BUCKET))) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(report.elements_indexed for report in reports) == [0, 0, len(TEXT_DOCUMENTS)]
    rows = corpus.table(PASSAGES).to_arrow(columns=["key", "seq", "passage"]).to_pylist()
    assert len(rows) == len({(row["key"], row["seq"], row["passage"]) for row in rows})
    assert {row["key"] for row in rows} == set(TEXT_DOCUMENTS)


def test_index_refuses_a_passages_table_it_did_not_make(t0: tier0.Tier0) -> None:
    t0.create_bucket(BUCKET)
    t0.create_table(PASSAGES, {"id": "BIGINT"})
    with pytest.raises(TableSchemaError, match="other columns"):
        t0.index(BUCKET)


def test_index_checks_bucket_and_prefix(t0: tier0.Tier0) -> None:
    with pytest.raises(NoSuchBucket):
        t0.index("nope")
    t0.create_bucket(BUCKET)
    with pytest.raises(InvalidKey):
        t0.index(BUCKET, prefix="a\x00b")
    with pytest.raises(InvalidArgument):
        t0.index(BUCKET, prefix=7)  # type: ignore[arg-type]


@pytest.mark.slow
def test_index_reports_progress_for_every_element(corpus: tier0.Tier0) -> None:
    seen: list[tuple[int, int | None]] = []
    corpus.index(BUCKET, progress=lambda done, total: seen.append((done, total)))
    count = len(TEXT_DOCUMENTS) + len(OTHER_DOCUMENTS)
    assert seen == [(done, count) for done in range(1, count + 1)]


# -- searching ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_search_finds_the_paraphrased_document_first(indexed: tier0.Tier0) -> None:
    for query, key in QUERIES.items():
        result = indexed.search(query, bucket=BUCKET, k=3)
        assert result.column_names == ["key", "version_id", "passage", "text", "_distance"]
        assert _keys(result)[0] == key, query
        distances = result.column("_distance").to_pylist()
        assert distances == sorted(distances) and 0 <= distances[0] < 0.7


@pytest.mark.slow
def test_search_elements_returns_each_element_once(indexed: tier0.Tier0) -> None:
    indexed.put(BUCKET, "notes/bread-2.txt", TEXT_DOCUMENTS["notes/bread.txt"][0] * 8)
    indexed.index(BUCKET)
    passages = _keys(indexed.search("baking bread", bucket=BUCKET, k=6))
    assert len(passages) > len(set(passages))  # the long copy has several passages
    elements = _keys(indexed.search("baking bread", bucket=BUCKET, k=6, elements=True))
    assert len(elements) == len(set(elements)) == 6
    assert set(elements[:2]) == {"notes/bread.txt", "notes/bread-2.txt"}


@pytest.mark.slow
def test_search_with_a_prefix_returns_only_keys_under_it(indexed: tier0.Tier0) -> None:
    found = _keys(
        indexed.search("molten rock pouring from a mountain", bucket=BUCKET, k=50, prefix="web/")
    )
    assert sorted(found) == ["web/taxes.html", "web/worldcup.html"]


@pytest.mark.slow
def test_search_hides_passages_of_deleted_and_overwritten_elements_until_reindexed(
    indexed: tier0.Tier0,
) -> None:
    indexed.delete(BUCKET, "data/dogs.json")
    indexed.put(BUCKET, "notes/garden.md", b"Nothing about plants any more.")
    assert "data/dogs.json" in _passages(indexed)  # not re-indexed yet
    found = _keys(indexed.search("teaching a puppy to obey", bucket=BUCKET, k=50))
    assert "data/dogs.json" not in found and "notes/garden.md" not in found
    assert len(found) == len(TEXT_DOCUMENTS) - 2


@pytest.mark.slow
def test_search_returns_only_elements_the_principal_may_read(indexed: tier0.Tier0) -> None:
    indexed.create_user("ann")
    indexed.grant("ann", "tier0:ReadTable", f"/{PASSAGES}")
    indexed.grant("ann", "s3:GetObject", f"/{BUCKET}/notes/*")
    ann = indexed.as_principal("ann")
    found = _keys(
        ann.search("when must my yearly return reach the revenue service", bucket=BUCKET, k=20)
    )
    assert sorted(found) == sorted(key for key in TEXT_DOCUMENTS if key.startswith("notes/"))
    assert _keys(
        indexed.search("when must my yearly return reach the revenue service", bucket=BUCKET, k=1)
    ) == ["web/taxes.html"]


@pytest.mark.slow
def test_index_reads_as_its_caller_and_skips_what_it_may_not_read(corpus: tier0.Tier0) -> None:
    corpus.create_user("ann")
    corpus.grant("ann", "s3:ListBucket", f"/{BUCKET}")
    corpus.grant("ann", "tier0:*", f"/{PASSAGES}")
    corpus.grant("ann", "s3:GetObject", f"/{BUCKET}/notes/*")
    report = corpus.as_principal("ann").index(BUCKET)
    assert report.elements_indexed == 4
    assert report.elements_skipped == len(TEXT_DOCUMENTS) + len(OTHER_DOCUMENTS) - 4
    assert set(_passages(corpus)) == {key for key in TEXT_DOCUMENTS if key.startswith("notes/")}


def test_search_of_a_bucket_never_indexed_says_to_index_it(t0: tier0.Tier0) -> None:
    t0.create_bucket(BUCKET)
    with pytest.raises(NoSuchTable, match=f"tier0 index {BUCKET}"):
        t0.search("anything", bucket=BUCKET)
    with pytest.raises(NoSuchBucket):
        t0.search("anything", bucket="nope")


@pytest.mark.parametrize(
    ("query", "k", "message"),
    [
        ("", 10, "empty"),
        ("   ", 10, "empty"),
        ("x" * (_semantic.QUERY_CHARS_MAX + 1), 10, "at most"),
        ("fine", 0, "k is"),
        ("fine", _semantic.RESULTS_MAX + 1, "k is"),
        ("fine", True, "k is"),
    ],
)
def test_search_rejects_bad_queries_and_k(
    t0: tier0.Tier0, query: str, k: int, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        t0.search(query, bucket=BUCKET, k=k)


# -- the CLI -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_index_prints_its_report_as_a_table_and_as_json(corpus: tier0.Tier0) -> None:
    result = CliRunner().invoke(cli, ["--data", str(corpus.data_dir), "index", BUCKET])
    assert result.exit_code == 0, result.output
    indexed_line = next(line for line in result.stdout.splitlines() if "elements indexed" in line)
    assert indexed_line.split() == ["elements", "indexed", str(len(TEXT_DOCUMENTS))]
    assert "every element (first run)" in result.stdout
    assert "failed: data/broken.json: JSON that does not parse" in result.stderr
    corpus.put(BUCKET, "notes/new.txt", b"A brand new note about sailing boats.")
    result = CliRunner().invoke(
        cli,
        ["--data", str(corpus.data_dir), "index", "--format", "json", f"tier0://{BUCKET}/notes/"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # A first run for the prefix: it walks, and finds the four notes indexed already.
    assert (report["prefix"], report["walked"]) == ("notes/", True)
    assert (report["elements_indexed"], report["elements_unchanged"]) == (1, 4)
    assert report["failures"] == []


@pytest.mark.slow
def test_cli_search_prints_a_table_and_json(indexed: tier0.Tier0) -> None:
    data = str(indexed.data_dir)
    result = CliRunner().invoke(
        cli, ["--data", data, "search", "teaching a puppy to obey", "--bucket", BUCKET, "-k", "2"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    first = next(line for line in lines if "data/dogs.json" in line)
    assert "Dog training" in first
    assert "2 passages" in result.stdout
    result = CliRunner().invoke(
        cli,
        [
            "--data",
            data,
            "search",
            "--format",
            "json",
            "--elements",
            "board game opening strategy",
            "--bucket",
            BUCKET,
            "--prefix",
            "notes/",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 4 and rows[0]["key"] == "notes/chess.txt"
    assert set(rows[0]) == {"key", "version_id", "passage", "text", "distance"}
    assert rows[0]["text"].startswith("The Sicilian Defence") and 0 < rows[0]["distance"] < 1


def test_cli_search_of_a_bucket_never_indexed_fails_with_one_line(t0: tier0.Tier0) -> None:
    t0.create_bucket(BUCKET)
    result = CliRunner().invoke(
        cli, ["--data", str(t0.data_dir), "search", "anything", "--bucket", BUCKET]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and f"tier0 index {BUCKET}" in result.stderr
    assert "Traceback" not in result.output


def test_cli_index_refuses_a_prefix_given_twice(t0: tier0.Tier0) -> None:
    result = CliRunner().invoke(
        cli, ["--data", str(t0.data_dir), "index", f"tier0://{BUCKET}/a/", "--prefix", "b/"]
    )
    assert result.exit_code == 2 and "not both" in result.stderr
