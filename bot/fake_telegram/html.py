"""Telegram's text formatting: a small HTML parser with Telegram's rules and error strings.

``parse_html`` turns Telegram HTML into plain text and entities (offsets in UTF-16 code units)
or raises the 400 Telegram answers for bad markup; ``format_text`` applies a parse_mode (or
explicit entities) and trims the text as Telegram does. Markdown modes are stored unparsed.
"""

from __future__ import annotations

import re

from bot.fake_telegram.records import JSON, TelegramError, bad_request

_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "tg-emoji": "custom_emoji",
    "blockquote": "blockquote",
    "tg-time": "date_time",
}
_HTML_ENTITY = re.compile(r"&(lt|gt|amp|quot|#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6});")
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_TAG_NAME_CHARS = re.compile(r"[^\s>/]*")
_ATTR_NAME = re.compile(r"[A-Za-z0-9_-]+")


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of entity offsets."""
    return len(text.encode("utf-16-le")) // 2


def _decode_entities(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        body = match.group(1)
        if body in _NAMED_ENTITIES:
            return _NAMED_ENTITIES[body]
        code = int(body[2:], 16) if body[1] in "xX" else int(body[1:])
        return chr(code) if 0 < code <= 0x10FFFF else match.group(0)

    return _HTML_ENTITY.sub(replace, text)


def _parse_error(text: str) -> TelegramError:
    return bad_request(f"can't parse entities: {text}")


def parse_html(source: str) -> tuple[str, list[JSON]]:
    """Parse Telegram HTML into (plain text, entities); raise Telegram's 400 on bad markup."""
    return _HtmlParser(source).parse()


class _HtmlParser:
    """One pass over the source: text and character references go to the output, a start tag
    onto the stack, and its end tag pops it and records the entity it spanned."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.size = len(source)
        self.out: list[str] = []
        self.out16 = 0
        # (tag, start offset in UTF-16 units, attributes, byte offset of '<')
        self.stack: list[tuple[str, int, dict[str, str], int]] = []
        self.entities: list[JSON] = []
        self.pre_language: dict[int, str] = {}

    def parse(self) -> tuple[str, list[JSON]]:
        source, size = self.source, self.size
        i = 0
        while i < size:
            char = source[i]
            if char == "&":
                i = self._reference(i)
            elif char != "<":
                self._emit(char)
                i += 1
            elif i + 1 < size and source[i + 1] == "/":
                i = self._end_tag(i)
            else:
                i = self._start_tag(i)
        if self.stack:
            raise _parse_error(
                f'Can\'t find end tag corresponding to start tag "{self.stack[-1][0]}"'
            )
        self.entities.sort(key=lambda e: (e["offset"], -e["length"]))
        return "".join(self.out), self.entities

    def _byte_offset(self, pos: int) -> int:
        return len(self.source[:pos].encode("utf-8"))

    def _emit(self, piece: str) -> None:
        self.out.append(piece)
        self.out16 += utf16_len(piece)

    def _skip_space(self, j: int) -> int:
        while j < self.size and self.source[j].isspace():
            j += 1
        return j

    def _reference(self, i: int) -> int:
        """A character reference (or a bare '&'); returns the position after it."""
        match = _HTML_ENTITY.match(self.source, i)
        self._emit(_decode_entities(match.group(0)) if match else "&")
        return match.end() if match else i + 1

    def _end_tag(self, begin: int) -> int:
        """The end tag at ``begin`` closes the innermost open tag; returns the position after."""
        source, size = self.source, self.size
        match = _TAG_NAME_CHARS.match(source, begin + 2)
        assert match is not None
        name = match.group(0).lower()
        j = self._skip_space(match.end())
        if j >= size or source[j] != ">":
            raise _parse_error(f"Unclosed end tag at byte offset {self._byte_offset(begin)}")
        if not self.stack:
            raise _parse_error(f"Unexpected end tag at byte offset {self._byte_offset(begin)}")
        open_tag, start16, attrs, _ = self.stack[-1]
        if open_tag != name:
            raise _parse_error(
                f"Unmatched end tag at byte offset {self._byte_offset(begin)}, "
                f'expected "</{open_tag}>", found "</{name}>"'
            )
        self.stack.pop()
        self._close(open_tag, start16, attrs)
        return j + 1

    def _close(self, open_tag: str, start16: int, attrs: dict[str, str]) -> None:
        """Record the entity a closed tag spanned (none if it spanned no text)."""
        stack = self.stack
        length = self.out16 - start16
        if open_tag == "code" and stack and stack[-1][0] == "pre":
            # <pre><code class="language-x"> is one pre entity with a language
            language = attrs.get("class", "")
            if language.startswith("language-") and len(language) > len("language-"):
                self.pre_language[stack[-1][1]] = language[len("language-") :]
            return
        if length <= 0:
            return
        entity: JSON = {"type": _HTML_TAGS[open_tag], "offset": start16, "length": length}
        if open_tag == "a":
            href = attrs.get("href", "")
            if not href:
                return
            entity["url"] = href
        elif open_tag == "pre" and start16 in self.pre_language:
            entity["language"] = self.pre_language.pop(start16)
        elif open_tag == "tg-emoji":
            entity["custom_emoji_id"] = attrs["emoji-id"]
        elif open_tag == "blockquote" and "expandable" in attrs:
            entity["type"] = "expandable_blockquote"
        elif open_tag == "tg-time":
            entity["unix_time"] = int(attrs.get("unix", "0") or 0)
            if attrs.get("format"):
                entity["date_time_format"] = attrs["format"]
        self.entities.append(entity)

    def _start_tag(self, begin: int) -> int:
        """The start tag at ``begin`` opens an entity; returns the position after it."""
        match = _TAG_NAME_CHARS.match(self.source, begin + 1)
        assert match is not None
        name = match.group(0).lower()
        j = match.end()
        if j >= self.size:
            raise _parse_error(f"Unclosed start tag at byte offset {self._byte_offset(begin)}")
        if name not in _HTML_TAGS:
            raise _parse_error(
                f'Unsupported start tag "{match.group(0)}" '
                f"at byte offset {self._byte_offset(begin)}"
            )
        attrs, j = self._attributes(name, begin, j)
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise _parse_error(
                f'Tag "span" must have class "tg-spoiler" at byte offset {self._byte_offset(begin)}'
            )
        if name == "tg-emoji" and not attrs.get("emoji-id"):
            raise _parse_error(
                'Tag "tg-emoji" must have attribute "emoji-id" '
                f"at byte offset {self._byte_offset(begin)}"
            )
        self.stack.append((name, self.out16, attrs, self._byte_offset(begin)))
        return j

    def _attributes(self, name: str, begin: int, j: int) -> tuple[dict[str, str], int]:
        """The attributes of the tag at ``begin`` from ``j`` to its '>', and the position after."""
        source, size = self.source, self.size
        attrs: dict[str, str] = {}
        while True:
            j = self._skip_space(j)
            if j >= size:
                raise _parse_error(f"Unclosed start tag at byte offset {self._byte_offset(begin)}")
            if source[j] == ">":
                return attrs, j + 1
            attr = _ATTR_NAME.match(source, j)
            if attr is None:
                raise _parse_error(
                    f'Empty attribute name in the tag "{name}" '
                    f"at byte offset {self._byte_offset(begin)}"
                )
            attr_name = attr.group(0).lower()
            j = self._skip_space(attr.end())
            if j < size and source[j] == "=":
                value, j = self._attribute_value(begin, self._skip_space(j + 1))
                attrs[attr_name] = _decode_entities(value)
            else:
                attrs[attr_name] = ""

    def _attribute_value(self, begin: int, j: int) -> tuple[str, int]:
        """A quoted or bare attribute value starting at ``j``, and the position after it."""
        source, size = self.source, self.size
        if j >= size:
            raise _parse_error(f"Unclosed start tag at byte offset {self._byte_offset(begin)}")
        if source[j] in "\"'":
            end = source.find(source[j], j + 1)
            if end < 0:
                raise _parse_error(f"Unclosed start tag at byte offset {self._byte_offset(begin)}")
            return source[j + 1 : end], end + 1
        value_start = j
        while j < size and not source[j].isspace() and source[j] != ">":
            j += 1
        return source[value_start:j], j


def _strip_text(text: str, entities: list[JSON]) -> tuple[str, list[JSON]]:
    """Trim surrounding whitespace as Telegram does and move the entities along."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    lead16 = utf16_len(text[: len(text) - len(text.lstrip())])
    total16 = utf16_len(stripped)
    kept: list[JSON] = []
    for entity in entities:
        start = max(0, int(entity["offset"]) - lead16)
        end = min(total16, int(entity["offset"]) + int(entity["length"]) - lead16)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return stripped, kept


def format_text(
    text: str, parse_mode: str | None, entities: list[JSON] | None
) -> tuple[str, list[JSON]]:
    """Apply parse_mode (HTML is parsed; Markdown modes are stored as sent) or explicit entities."""
    mode = (parse_mode or "").lower()
    if entities:
        plain, found = text, [dict(e) for e in entities]
    elif mode in {"", "none"}:
        plain, found = text, []
    elif mode == "html":
        plain, found = parse_html(text)
    elif mode in {"markdown", "markdownv2"}:
        plain, found = text, []
    else:
        raise bad_request("unsupported parse_mode")
    return _strip_text(plain, found)


def command_entities(text: str) -> list[JSON]:
    match = re.match(r"/[A-Za-z0-9_]{1,32}(@[A-Za-z0-9_]{3,32})?", text)
    if not match:
        return []
    return [{"type": "bot_command", "offset": 0, "length": utf16_len(match.group(0))}]
