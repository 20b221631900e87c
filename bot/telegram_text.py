"""Message text that fits Telegram: Telegram-HTML to entities, and splitting long texts.

Telegram counts a text's length in code points (Python's `len`) but entity offsets in
UTF-16 code units, where a character outside the BMP (most emoji) counts two. Inside this
module texts are cut and entities clipped in code points; offsets are converted to UTF-16
only on the way in and out, so a cut can never fall between the halves of a surrogate pair.

A long text becomes several messages, each ending in a marker line such as "\\n(2/3)".
Cut points prefer a paragraph break, then a line break, then a space, and avoid the inside
of an entity when another good cut exists; the whitespace run at a cut is dropped.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser
from itertools import accumulate
from typing import Any, NamedTuple

Entity = dict[str, Any]
"""A message entity in the Bot API's JSON shape: type, offset, length, and extra keys."""

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024


def utf16_len(text: str) -> int:
    """Return the length of `text` in UTF-16 code units, as Telegram counts offsets."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


# --- Telegram-HTML ------------------------------------------------------------------

_SIMPLE_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "code": "code",
    "pre": "pre",
    "tg-spoiler": "spoiler",
}

# Every "<" must open a complete tag; Telegram rejects a stray one, and so do we, because
# html.parser would quietly keep it (or an unterminated tag) as text.
_STRAY_LT = re.compile(r"<(?!/?[A-Za-z][^<>]*>)")

# For the plain-text fallback: anything that looks like a tag, a comment or a declaration.
_TAG_LIKE = re.compile(r"<!--.*?-->|<\s*/?\s*[A-Za-z][^<>]*>|<![^<>]*>", re.DOTALL)


@dataclass
class _OpenTag:
    tag: str
    offset: int  # UTF-16
    entity: Entity | None  # None: a <code> merged into its <pre>
    seq: int


class _TelegramHTMLParser(HTMLParser):
    """Collect the plain text and the entities of a Telegram-HTML string."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._chunks: list[str] = []
        self._offset = 0
        self._open: list[_OpenTag] = []
        self._closed: list[tuple[int, int, int, Entity]] = []  # offset, -length, seq, entity
        self._seq = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Open an entity for a supported tag."""
        attributes = dict(attrs)
        entity: Entity | None
        if tag == "code" and self._open and self._open[-1].tag == "pre":
            # <pre><code class="language-x">: one pre entity that carries the language.
            entity = None
            css_class = attributes.get("class") or ""
            pre = self._open[-1].entity
            if css_class.startswith("language-") and len(css_class) > 9 and pre is not None:
                pre["language"] = css_class.removeprefix("language-")
        elif tag in _SIMPLE_TAGS:
            entity = {"type": _SIMPLE_TAGS[tag]}
        elif tag == "span":
            if attributes.get("class") != "tg-spoiler":
                raise ValueError('<span> is supported only with class="tg-spoiler"')
            entity = {"type": "spoiler"}
        elif tag == "a":
            url = attributes.get("href")
            if not url:
                raise ValueError("<a> needs an href")
            entity = {"type": "text_link", "url": url}
        elif tag == "blockquote":
            kind = "expandable_blockquote" if "expandable" in attributes else "blockquote"
            entity = {"type": kind}
        elif tag == "tg-emoji":
            emoji_id = attributes.get("emoji-id")
            if not emoji_id:
                raise ValueError("<tg-emoji> needs an emoji-id")
            entity = {"type": "custom_emoji", "custom_emoji_id": emoji_id}
        else:
            raise ValueError(f"unsupported tag <{tag}>")
        self._open.append(_OpenTag(tag, self._offset, entity, self._seq))
        self._seq += 1

    def handle_endtag(self, tag: str) -> None:
        """Close the innermost open tag, which must be `tag`."""
        if not self._open:
            raise ValueError(f"</{tag}> closes a tag that was never opened")
        top = self._open[-1]
        if top.tag != tag:
            raise ValueError(f"</{tag}> found where </{top.tag}> was expected")
        self._open.pop()
        length = self._offset - top.offset
        if top.entity is not None and length > 0:
            entity = {"type": top.entity["type"], "offset": top.offset, "length": length}
            entity.update((k, v) for k, v in top.entity.items() if k != "type")
            self._closed.append((top.offset, -length, top.seq, entity))

    def handle_data(self, data: str) -> None:
        """Append text; entity references arrive here already unescaped."""
        self._chunks.append(data)
        self._offset += utf16_len(data)

    def handle_comment(self, data: str) -> None:
        """Reject comments, which Telegram does not accept."""
        raise ValueError("HTML comments are not supported")

    def handle_decl(self, decl: str) -> None:
        """Reject declarations."""
        raise ValueError(f"declaration <!{decl}> is not supported")

    def handle_pi(self, data: str) -> None:
        """Reject processing instructions."""
        raise ValueError(f"processing instruction <?{data}> is not supported")

    def unknown_decl(self, data: str) -> None:
        """Reject CDATA sections and other markup declarations."""
        raise ValueError(f"markup <![{data}]> is not supported")

    def result(self) -> tuple[str, list[Entity]]:
        """Return the text and the entities, outer before inner, after the input is closed."""
        if self._open:
            raise ValueError(f"<{self._open[-1].tag}> is never closed")
        self._closed.sort(key=lambda item: item[:3])
        return "".join(self._chunks), [entity for *_, entity in self._closed]


def html_to_entities(html: str) -> tuple[str, list[Entity]]:
    """Parse Telegram-HTML into plain text and entities with UTF-16 offsets."""
    stray = _STRAY_LT.search(html)
    if stray is not None:
        raise ValueError(f"unescaped '<' at position {stray.start()} (write it as &lt;)")
    parser = _TelegramHTMLParser()
    try:
        parser.feed(html)
        parser.close()
    except AssertionError as exc:  # html.parser's own complaint about odd markup
        raise ValueError(f"malformed HTML: {exc}") from exc
    return parser.result()


def strip_html(html: str) -> str:
    """Return the plain text of a Telegram-HTML string; never raises, even on bad markup."""
    try:
        text, _ = html_to_entities(html)
    except ValueError:
        return unescape(_TAG_LIKE.sub("", html))
    return text


# --- Splitting ----------------------------------------------------------------------

# Break kinds, most preferred first.
_PARAGRAPH, _LINE, _SPACE = 0, 1, 2

# Whitespace a line may end with, or words be separated by; non-breaking spaces are not.
_H = r"[^\S\r\n\xa0\u2007\u202f]"
# A run of line breaks (with the spaces that end each line, but not the indentation of the
# line after), or a run of other whitespace.
_BREAK_RUN = re.compile(rf"(?P<lines>(?:{_H}*\r?\n)+)|{_H}+")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


class _Span(NamedTuple):
    start: int  # code points, inclusive
    end: int  # code points, exclusive
    entity: Entity


class _Break(NamedTuple):
    start: int  # a part may end here
    end: int  # the next part starts here; text[start:end] is dropped
    kind: int


class _Layout:
    """A text and its entities in code points, with the places it may be cut."""

    def __init__(self, text: str, entities: list[Entity]) -> None:
        self.text = text
        # u16[i]: the UTF-16 offset of code point i; u16[len(text)] is the UTF-16 length.
        widths = [1] * len(text)
        for match in _ASTRAL.finditer(text):
            widths[match.start()] = 2
        self.u16 = list(accumulate(widths, initial=0))
        self.spans = [span for e in entities if (span := self._span(e)) is not None]
        # reach[b]: the furthest end of an entity that starts before b.
        reach = [0] * (len(text) + 2)
        for span in self.spans:
            reach[span.start + 1] = max(reach[span.start + 1], span.end)
        self.reach = list(accumulate(reach, max))
        self.breaks = [
            _Break(m.start(), m.end(), _SPACE if m["lines"] is None else _paragraph_or_line(m))
            for m in _BREAK_RUN.finditer(text)
        ]
        self.break_starts = [b.start for b in self.breaks]

    def _span(self, entity: Entity) -> _Span | None:
        total = self.u16[-1]
        first = min(max(int(entity["offset"]), 0), total)
        last = min(max(first + int(entity["length"]), first), total)
        # An offset between the halves of a pair widens the span to the whole character.
        start = bisect_right(self.u16, first) - 1
        end = bisect_left(self.u16, last)
        return _Span(start, end, entity) if end > start else None

    def entities(self, start: int, end: int) -> list[Entity]:
        """Return the entities clipped to text[start:end], with offsets relative to it."""
        base = self.u16[start]
        clipped = []
        for span in self.spans:
            lo, hi = max(span.start, start), min(span.end, end)
            if lo < hi:
                offset, length = self.u16[lo] - base, self.u16[hi] - self.u16[lo]
                clipped.append({**span.entity, "offset": offset, "length": length})
        return clipped

    def splits_entity(self, end: int, resume: int) -> bool:
        """Tell whether an entity keeps characters both before `end` and from `resume` on."""
        return self.reach[end] > resume

    def cut(self, pos: int, capacity: int) -> tuple[int, int]:
        """Choose where the part that starts at `pos` ends and where the next one starts."""
        high = pos + capacity
        half = pos + max(1, capacity // 2)
        candidates = self.breaks[
            bisect_right(self.break_starts, pos) : bisect_right(self.break_starts, high)
        ]
        in_second_half = [b for b in reversed(candidates) if b.start >= half]
        # A good break in the second half, outside entities if any such break exists there.
        for whole in (True, False):
            for kind in (_PARAGRAPH, _LINE, _SPACE):
                for b in in_second_half:
                    if b.kind == kind and not (whole and self.splits_entity(b.start, b.end)):
                        return b.start, b.end
        # A short part that still ends at a break beats cutting a word in two.
        for whole in (True, False):
            for b in reversed(candidates):
                if not (whole and self.splits_entity(b.start, b.end)):
                    return b.start, b.end
        # A hard cut: at an entity's edge if one is near, never inside a grapheme if avoidable.
        for whole in (True, False):
            for end in range(high, half - 1, -1):
                if not (whole and self.splits_entity(end, end)) and not self._joined(end):
                    return end, end
        return high, high

    def _joined(self, index: int) -> bool:
        """Tell whether text[index] belongs to the same grapheme as the character before it."""
        char, before = self.text[index], self.text[index - 1]
        code = ord(char)
        return (
            unicodedata.category(char) in {"Mn", "Mc", "Me"}
            or char in "\u200d\ufe0e\ufe0f"
            or before == "\u200d"
            or 0x1F3FB <= code <= 0x1F3FF  # skin tone modifiers
            or 0xE0020 <= code <= 0xE007F  # tag characters of subdivision flags
        )

    def ranges(self, capacity: int) -> list[tuple[int, int]]:
        """Cut the text into non-empty (start, end) ranges of at most `capacity`."""
        parts = []
        pos, size = 0, len(self.text)
        while size - pos > capacity:
            end, pos_next = self.cut(pos, capacity)
            parts.append((pos, end))
            pos = pos_next
        if pos < size:
            parts.append((pos, size))
        return parts


def _paragraph_or_line(match: re.Match[str]) -> int:
    return _PARAGRAPH if match["lines"].count("\n") >= 2 else _LINE


def _marker(number: int, total: int) -> str:
    return f"\n({number}/{total})"


def split_text(
    text: str, entities: list[Entity] | None = None, limit: int = TEXT_LIMIT
) -> list[tuple[str, list[Entity]]]:
    """Split a text into messages of at most `limit` characters, each ending in "\\n(i/n)"."""
    entities = entities or []
    if len(text) <= limit:
        return [(text, [dict(e) for e in entities])]
    layout = _Layout(text, entities)
    digits = 1
    while True:
        # Room for the longest marker this many parts can need, e.g. "\n(99/99)".
        capacity = limit - len(_marker(10**digits - 1, 10**digits - 1))
        if capacity < 1:
            raise ValueError(f"a limit of {limit} leaves no room for text beside the marker")
        ranges = layout.ranges(capacity)
        if len(ranges) < 10**digits:
            break
        digits += 1
    if len(ranges) == 1:  # only dropped whitespace made it long; no marker needed
        start, end = ranges[0]
        return [(text[start:end], layout.entities(start, end))]
    return [
        (text[start:end] + _marker(number, len(ranges)), layout.entities(start, end))
        for number, (start, end) in enumerate(ranges, 1)
    ]


def split_caption(
    caption: str,
    entities: list[Entity] | None = None,
    limit: int = CAPTION_LIMIT,
    text_limit: int = TEXT_LIMIT,
) -> tuple[tuple[str, list[Entity]], list[tuple[str, list[Entity]]]]:
    """Split a caption into what fits under the media and the text messages that follow."""
    entities = entities or []
    if len(caption) <= limit:
        return (caption, [dict(e) for e in entities]), []
    if limit < 1:
        raise ValueError(f"a caption limit of {limit} leaves no room for text")
    layout = _Layout(caption, entities)
    end, resume = layout.cut(0, limit)
    first = (caption[:end], layout.entities(0, end))
    if resume >= len(caption):
        return first, []
    rest = caption[resume:], layout.entities(resume, len(caption))
    return first, split_text(*rest, limit=text_limit)
