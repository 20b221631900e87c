"""Message payloads: an agent's Telegram-HTML becomes text and entities, long texts split."""

from __future__ import annotations

import html
import re
from bisect import bisect_left
from itertools import accumulate
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.telegram_text import (
    html_to_entities,
    split_caption,
    split_text,
    strip_html,
    utf16_len,
)

Entity = dict[str, Any]
Part = tuple[str, list[Entity]]

MODEST = settings(max_examples=200, deadline=None)


# --- helpers: an independent model of what the parts must preserve ---------------------


def u16_starts(text: str) -> list[int]:
    """UTF-16 offset of every code point, plus the total at the end."""
    widths = [1] * len(text)
    for index in [i for i, char in enumerate(text) if char > "\uffff"]:
        widths[index] = 2
    return list(accumulate(widths, initial=0))


Coverage = dict[str, list[tuple[int, int]]]


def merged(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-empty, non-touching intervals covering the same code points."""
    result: list[tuple[int, int]] = []
    for start, end in sorted(i for i in intervals if i[0] < i[1]):
        if result and start <= result[-1][1]:
            result[-1] = (result[-1][0], max(end, result[-1][1]))
        else:
            result.append((start, end))
    return result


def coverage(text: str, entities: list[Entity]) -> Coverage:
    """For every entity type, the code points of `text` it covers, as intervals."""
    starts = u16_starts(text)
    by_type: dict[str, list[tuple[int, int]]] = {}
    for entity in entities:
        first = bisect_left(starts, entity["offset"])
        last = bisect_left(starts, entity["offset"] + entity["length"])
        by_type.setdefault(entity["type"], []).append((first, last))
    return {kind: m for kind, intervals in by_type.items() if (m := merged(intervals))}


def window(covered: Coverage, start: int, end: int) -> Coverage:
    """The coverage of text[start:end], relative to `start`."""
    clipped = {
        kind: merged([(max(a, start) - start, min(b, end) - start) for a, b in intervals])
        for kind, intervals in covered.items()
    }
    return {kind: intervals for kind, intervals in clipped.items() if intervals}


def contents(parts: list[Part]) -> list[str]:
    """The parts' texts without their "\\n(i/n)" markers, which must be there when n > 1."""
    if len(parts) == 1:
        return [parts[0][0]]
    stripped = []
    for number, (text, _) in enumerate(parts, 1):
        marker = f"\n({number}/{len(parts)})"
        assert text.endswith(marker)
        stripped.append(text.removesuffix(marker))
    return stripped


def align(original: str, pieces: list[str]) -> list[int]:
    """Where each piece starts in `original`, given that only whitespace lies between them.

    This is the definition of "nothing but the whitespace at the cuts is lost": original ==
    p0 + g0 + p1 + g1 + ... + pk + gk with every g made of whitespace only (possibly empty).
    The first fit is the right one as long as the text has no lone "\\r" (see `texts`): a
    piece never starts with a character of the whitespace run that was dropped before it.
    """
    starts, pos = [], 0
    for piece in pieces:
        at = pos
        while not original.startswith(piece, at):
            assert at < len(original)
            assert original[at].isspace(), f"non-whitespace {original[at]!r} lost at {at}"
            at += 1
        starts.append(at)
        pos = at + len(piece)
    assert original[pos:].strip() == "", "non-whitespace lost at the end"
    return starts


def check_parts(
    original: str, entities: list[Entity], pieces: list[str], parts: list[Part]
) -> None:
    """Every piece is non-empty, and keeps exactly the entity coverage it had in the original."""
    covered = coverage(original, entities)
    extras = [{k: v for k, v in e.items() if k not in {"offset", "length"}} for e in entities]
    for piece, start, (_, part_entities) in zip(
        pieces, align(original, pieces), parts, strict=True
    ):
        assert piece
        for entity in part_entities:
            assert entity["offset"] >= 0
            assert entity["length"] > 0
            assert entity["offset"] + entity["length"] <= utf16_len(piece)
            assert {k: v for k, v in entity.items() if k not in {"offset", "length"}} in extras
        assert coverage(piece, part_entities) == window(covered, start, start + len(piece))


# --- strategies --------------------------------------------------------------------------

# Any code point but surrogates and a lone "\r" (a "\r" only ever comes as "\r\n").
ANY_CHAR = st.characters(exclude_categories=["Cs"], exclude_characters="\r")
TOKENS = st.one_of(
    st.text(ANY_CHAR, min_size=1, max_size=40),
    st.sampled_from(
        [" ", " ", "  ", "\n", "\n\n", "\n\n\n", "\t", "\r\n", " \n", "\u00a0", "\u200d"]
    ),
    st.sampled_from(["😀", "👍🏽", "🇺🇦", "👨‍👩‍👧", "e\u0301", "𝔘", "word", "words "]),
)


@st.composite
def texts(draw: st.DrawFn, min_size: int = 1) -> str:
    """Random Unicode text up to 20,000 characters, often long enough to need splitting."""
    base = "".join(draw(st.lists(TOKENS, min_size=min_size, max_size=60)))
    repeat = draw(st.integers(min_value=1, max_value=1000))
    return (base * repeat)[:20_000].removesuffix("\r")


@st.composite
def entities_for(draw: st.DrawFn, text: str) -> list[Entity]:
    """Random entities over `text`, each pair either disjoint or nested, in UTF-16 units."""
    if not text:
        return []
    starts = u16_starts(text)
    chosen: list[tuple[int, int]] = []
    entities = []
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        first = draw(st.integers(min_value=0, max_value=len(text) - 1))
        last = draw(st.integers(min_value=first + 1, max_value=len(text)))
        if any(a < first < b < last or first < a < last < b for a, b in chosen):
            continue  # crossing an earlier entity
        chosen.append((first, last))
        kind = draw(st.sampled_from(["bold", "italic", "code", "pre", "spoiler", "text_link"]))
        entity: Entity = {"type": kind, "offset": starts[first], "length": 0}
        entity["length"] = starts[last] - starts[first]
        if kind == "text_link":
            entity["url"] = f"https://example.com/{first}"
        entities.append(entity)
    return entities


# --- utf16_len ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", 0), ("abc", 3), ("é", 1), ("😀", 2), ("a😀b", 4), ("👍🏽", 4), ("𝔘", 2)],
)
def test_utf16_len_counts_astral_characters_twice(text: str, expected: int) -> None:
    assert utf16_len(text) == expected


# --- html_to_entities --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markup", "entity"),
    [
        ("<b>x</b>", {"type": "bold"}),
        ("<strong>x</strong>", {"type": "bold"}),
        ("<i>x</i>", {"type": "italic"}),
        ("<em>x</em>", {"type": "italic"}),
        ("<u>x</u>", {"type": "underline"}),
        ("<ins>x</ins>", {"type": "underline"}),
        ("<s>x</s>", {"type": "strikethrough"}),
        ("<strike>x</strike>", {"type": "strikethrough"}),
        ("<del>x</del>", {"type": "strikethrough"}),
        ("<code>x</code>", {"type": "code"}),
        ("<pre>x</pre>", {"type": "pre"}),
        (
            '<pre><code class="language-python">x</code></pre>',
            {"type": "pre", "language": "python"},
        ),
        ("<pre><code>x</code></pre>", {"type": "pre"}),
        (
            '<a href="https://example.com/?a=1&amp;b=2">x</a>',
            {"type": "text_link", "url": "https://example.com/?a=1&b=2"},
        ),
        ('<a href="tg://user?id=42">x</a>', {"type": "text_link", "url": "tg://user?id=42"}),
        ('<span class="tg-spoiler">x</span>', {"type": "spoiler"}),
        ("<tg-spoiler>x</tg-spoiler>", {"type": "spoiler"}),
        ("<blockquote>x</blockquote>", {"type": "blockquote"}),
        ("<blockquote expandable>x</blockquote>", {"type": "expandable_blockquote"}),
        (
            '<tg-emoji emoji-id="5368324170671202286">x</tg-emoji>',
            {"type": "custom_emoji", "custom_emoji_id": "5368324170671202286"},
        ),
        ("<B>x</B>", {"type": "bold"}),
    ],
)
def test_each_supported_tag_becomes_its_entity(markup: str, entity: Entity) -> None:
    assert html_to_entities(markup) == ("x", [{"offset": 0, "length": 1, **entity}])


def test_nested_tags_give_outer_entities_first_with_utf16_offsets() -> None:
    text, entities = html_to_entities("😀 <b>bold <i>both 👍</i></b> <u>under</u>")
    assert text == "😀 bold both 👍 under"
    assert entities == [
        {"type": "bold", "offset": 3, "length": 12},
        {"type": "italic", "offset": 8, "length": 7},
        {"type": "underline", "offset": 16, "length": 5},
    ]


def test_same_range_nesting_keeps_the_outer_tag_first() -> None:
    _, entities = html_to_entities("<b><i>x</i></b>")
    assert [e["type"] for e in entities] == ["bold", "italic"]


def test_a_link_around_formatted_text() -> None:
    text, entities = html_to_entities('see <a href="https://t.me/x">the <b>docs</b></a>.')
    assert text == "see the docs."
    assert entities == [
        {"type": "text_link", "offset": 4, "length": 8, "url": "https://t.me/x"},
        {"type": "bold", "offset": 8, "length": 4},
    ]


def test_character_references_are_unescaped_and_newlines_kept() -> None:
    text, entities = html_to_entities("a &lt;b&gt; &amp; &quot;c&quot; &#128512;&#x41;\nnext")
    assert text == 'a <b> & "c" 😀A\nnext'
    assert entities == []


def test_empty_elements_give_no_entity() -> None:
    assert html_to_entities("a<b></b>b<i/>") == ("ab", [])


@pytest.mark.parametrize(
    ("markup", "message"),
    [
        ("<b>never closed", "never closed"),
        ("closed </b> only", "never opened"),
        ("<b><i>crossed</b></i>", "where </i> was expected"),
        ("line<br>break", "unsupported tag <br>"),
        ("<div>x</div>", "unsupported tag <div>"),
        ("<span>x</span>", "tg-spoiler"),
        ("<a>x</a>", "href"),
        ("<tg-emoji>x</tg-emoji>", "emoji-id"),
        ("1 < 2", "unescaped '<'"),
        ("unterminated <b", "unescaped '<'"),
        ("<!-- note -->x", "unescaped '<'"),
    ],
)
def test_malformed_html_raises_a_clear_value_error(markup: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        html_to_entities(markup)


@given(st.lists(st.tuples(st.sampled_from(["b", "i", "code", "tg-spoiler"]), st.text())))
@MODEST
def test_escaped_text_in_tags_comes_back_exactly(chunks: list[tuple[str, str]]) -> None:
    markup = "".join(f"<{tag}>{html.escape(text)}</{tag}>" for tag, text in chunks)
    text, entities = html_to_entities(markup)
    assert text == "".join(chunk for _, chunk in chunks)
    for entity in entities:
        assert entity["length"] > 0
        assert entity["offset"] + entity["length"] <= utf16_len(text)


# --- strip_html --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markup", "plain"),
    [
        ("<b>bold</b> &amp; <i>it</i>", "bold & it"),
        ('<a href="https://x">link</a>', "link"),
        ("<b>never closed &lt;3", "never closed <3"),
        ("line<br>break", "linebreak"),
        ("<b><i>crossed</b></i>", "crossed"),
        ("1 < 2 &amp;&amp; 3 > 2", "1 < 2 && 3 > 2"),
        ("<!-- note -->kept", "kept"),
        ("", ""),
    ],
)
def test_strip_html_keeps_only_the_text(markup: str, plain: str) -> None:
    assert strip_html(markup) == plain


@given(st.text(st.sampled_from("<>/&;#!-=\"' abxbr\n")) | st.text())
@MODEST
def test_strip_html_never_raises(markup: str) -> None:
    assert isinstance(strip_html(markup), str)


# --- split_text: examples ----------------------------------------------------------------


def test_a_text_that_fits_is_returned_unchanged() -> None:
    entities = [{"type": "bold", "offset": 0, "length": 5}]
    assert split_text("hello", entities) == [("hello", entities)]
    assert split_text("x" * 4096) == [("x" * 4096, [])]


def test_a_paragraph_break_is_preferred_to_a_later_line_break_or_space() -> None:
    text = "a" * 55 + "\n\n" + "b" * 20 + "\n" + "c" * 10 + " " + "d" * 40
    parts = split_text(text, limit=100)
    assert [p for p, _ in parts] == ["a" * 55 + "\n(1/2)", text[57:] + "\n(2/2)"]


def test_a_line_break_is_preferred_to_a_later_space() -> None:
    text = "a" * 55 + "\n" + "b" * 20 + " " + "c" * 50
    parts = split_text(text, limit=100)
    assert parts[0][0] == "a" * 55 + "\n(1/2)"


def test_a_paragraph_break_early_in_the_part_loses_to_a_late_line_break() -> None:
    text = "a" * 10 + "\n\n" + "b" * 70 + "\n" + "c" * 50
    parts = split_text(text, limit=100)
    assert parts[0][0] == text[:82] + "\n(1/2)"


def test_spaces_split_words_and_the_whitespace_at_the_cut_is_dropped() -> None:
    parts = split_text("word " * 49 + "word", limit=60)
    for text, _ in parts:
        body = text.rsplit("\n", 1)[0]
        assert body == body.strip()
        assert set(body.split(" ")) == {"word"}


def test_a_text_without_whitespace_is_cut_hard() -> None:
    parts = split_text("x" * 250, limit=100)
    assert [p for p, _ in parts] == [
        "x" * 94 + "\n(1/3)",
        "x" * 94 + "\n(2/3)",
        "x" * 62 + "\n(3/3)",
    ]


def test_markers_count_every_part_and_fit_with_two_digit_totals() -> None:
    parts = split_text("word " * 400, limit=60)
    assert len(parts) >= 10
    for number, (text, _) in enumerate(parts, 1):
        assert len(text) <= 60
        assert text.endswith(f"\n({number}/{len(parts)})")


def test_emoji_offsets_are_in_utf16_units_in_every_part() -> None:
    text = "😀 " * 100
    parts = split_text(text, [{"type": "bold", "offset": 0, "length": utf16_len(text)}], limit=50)
    for part, entities in parts:
        body = part.rsplit("\n", 1)[0]
        assert entities == [{"type": "bold", "offset": 0, "length": utf16_len(body)}]


def test_a_cut_avoids_the_inside_of_an_entity_when_it_can() -> None:
    words = "in the link " * 4  # 48 characters, spaces at 2, 6, 11, ...
    text = "w" * 50 + " " + words + "tail " * 20
    link = {"type": "text_link", "offset": 51, "length": 48, "url": "https://example.com"}
    parts = split_text(text, [link], limit=100)
    assert parts[0] == ("w" * 50 + "\n(1/3)", [])
    assert parts[1][1] == [{**link, "offset": 0}]


def test_an_entity_longer_than_a_part_is_clipped_into_each() -> None:
    text = "x" * 300
    parts = split_text(text, [{"type": "code", "offset": 0, "length": 300}], limit=100)
    for part, entities in parts:
        assert entities == [{"type": "code", "offset": 0, "length": len(part) - 6}]


def test_a_hard_cut_keeps_an_emoji_with_its_skin_tone() -> None:
    text = "a" * 93 + "👍🏽" + "a" * 100
    parts = split_text(text, limit=100)
    assert parts[0][0] == "a" * 93 + "\n(1/3)"
    assert parts[1][0].startswith("👍🏽")


def test_a_limit_too_small_for_the_marker_is_refused() -> None:
    with pytest.raises(ValueError, match="no room"):
        split_text("x" * 100, limit=6)


# --- split_text: properties --------------------------------------------------------------


@st.composite
def texts_to_split(draw: st.DrawFn) -> tuple[str, list[Entity], int]:
    text = draw(texts())
    limit = draw(st.one_of(st.just(4096), st.integers(min_value=40, max_value=600)))
    return text, draw(entities_for(text)), limit


@given(texts_to_split())
@MODEST
def test_split_text_parts_fit_and_lose_only_whitespace_and_no_entity(
    case: tuple[str, list[Entity], int],
) -> None:
    text, entities, limit = case
    parts = split_text(text, entities, limit=limit)
    assert all(len(part) <= limit for part, _ in parts)
    if len(text) <= limit:
        assert parts == [(text, entities)]
    check_parts(text, entities, contents(parts), parts)


# --- split_caption -----------------------------------------------------------------------


def test_a_caption_that_fits_stays_whole() -> None:
    entities = [{"type": "italic", "offset": 0, "length": 3}]
    assert split_caption("cap", entities) == (("cap", entities), [])
    assert split_caption("") == (("", []), [])


def test_a_long_caption_goes_under_the_media_and_the_rest_follows_as_text() -> None:
    caption = "word " * 300
    bold = {"type": "bold", "offset": 0, "length": utf16_len(caption)}
    (first, first_entities), rest = split_caption(caption, [bold])
    assert len(first) <= 1024
    assert first.endswith("word")
    assert first_entities == [{**bold, "length": len(first)}]
    assert len(rest) == 1  # what is left fits one message, so it carries no marker
    assert rest[0][0] == caption[len(first) + 1 :]
    assert rest[0][1] == [{**bold, "length": len(rest[0][0])}]


def test_a_very_long_caption_follows_as_numbered_text_messages() -> None:
    (first, _), rest = split_caption("word " * 2000)
    assert len(first) <= 1024
    assert len(rest) == 3
    assert [part.rsplit("\n", 1)[1] for part, _ in rest] == ["(1/3)", "(2/3)", "(3/3)"]


@st.composite
def captions_to_split(draw: st.DrawFn) -> tuple[str, list[Entity], int, int]:
    caption = draw(texts(min_size=0))
    limit = draw(st.one_of(st.just(1024), st.integers(min_value=1, max_value=300)))
    text_limit = draw(st.one_of(st.just(4096), st.integers(min_value=40, max_value=600)))
    return caption, draw(entities_for(caption)), limit, text_limit


@given(captions_to_split())
@MODEST
def test_split_caption_first_part_and_rest_fit_their_limits(
    case: tuple[str, list[Entity], int, int],
) -> None:
    caption, entities, limit, text_limit = case
    first, rest = split_caption(caption, entities, limit=limit, text_limit=text_limit)
    assert len(first[0]) <= limit
    assert all(len(part) <= text_limit for part, _ in rest)
    if len(caption) <= limit:
        assert (first, rest) == ((caption, entities), [])
        return
    pieces = [first[0], *(contents(rest) if rest else [])]
    check_parts(caption, entities, pieces, [first, *rest])
