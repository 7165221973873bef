"""HTML -> readable Markdown-style text for the model: main content, links as `[text](url)`.

The main-content extractor is trafilatura (imported lazily: about 150 ms, paid only when a page
is actually fetched). It drops navigation, sidebars, cookie banners, comment forms and the like
far better than tag rules can. Two things are done around it:

- links are made absolute on the lxml tree *before* extraction, because trafilatura resolves
  `href="#frag"` against the site root rather than the page;
- when it finds next to nothing (tiny pages, link-index pages such as a table of contents) or is
  not installed, `simple_markdown` below renders the whole page minus the obvious boilerplate
  (scripts, styles, nav, header, footer, aside, forms), preferring <main>/<article> if present.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import List, Optional, Tuple
from urllib.parse import urljoin

# Below this many characters, trafilatura's result is compared with the whole-page rendering.
MIN_MAIN_CHARS = 200


def html_to_text(html: str, url: str) -> Tuple[str, str]:
    """(title, text) of an HTML document fetched from `url`."""
    title, main = _extract_main(html, url)
    if len(main) < MIN_MAIN_CHARS or not title:
        simple_title, simple = simple_markdown(html, url)
        if len(main) < MIN_MAIN_CHARS and len(simple) > len(main):
            main = simple
        title = title or simple_title or ""
    return title, main


def _extract_main(html: str, url: str) -> Tuple[str, str]:
    try:
        import trafilatura
    except ImportError:  # not installed, or lxml.html.clean missing (pip < 24 and lxml >= 5.2)
        return "", ""
    try:
        tree = trafilatura.load_html(html)
        if tree is None:
            return "", ""
        tree.make_links_absolute(url, resolve_base_href=True, handle_failures="discard")
        title = _tree_title(tree)
        text = trafilatura.extract(
            tree, url=url, output_format="markdown", include_links=True, include_formatting=True,
            include_tables=True, include_images=False, include_comments=False, deduplicate=False,
            with_metadata=False,
        )
    except Exception:  # a third-party parser failing on one odd page: the stdlib renderer takes over
        return "", ""
    return title, tidy(text or "")


def _tree_title(tree) -> str:
    for path in ("//title", "//meta[@property='og:title']/@content", "//h1"):
        found = tree.xpath(path)
        if found:
            first = found[0]
            text = first if isinstance(first, str) else first.text_content()
            text = " ".join(text.split())
            if text:
                return text
    return ""


def strip_controls(text: str) -> str:
    """`text` without control characters other than tab and newline (CR LF becomes LF)."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def tidy(text: str) -> str:
    """Strip trailing spaces and control characters, collapse runs of blank lines."""
    text = strip_controls(text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# C0/C1 controls except tab and newline: a fetched page must not be able to send escape
# sequences to the user's terminal when the CLI shows a tool result.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

# Elements whose whole content is never page text (or is page furniture, not content).
_SKIP = {
    "script", "style", "noscript", "template", "svg", "math", "head", "nav", "header", "footer",
    "aside", "form", "button", "select", "textarea", "iframe", "object", "canvas", "dialog",
}
_SKIP_ROLES = {"navigation", "banner", "contentinfo", "search", "dialog", "alertdialog"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
         "source", "track", "wbr"}
_LINE = {"li", "tr", "dt", "dd", "br"}  # blocks that start a line, not a paragraph
_BLOCK = {
    "p", "div", "section", "article", "main", "ul", "ol", "li", "dl", "dt", "dd", "table", "tr",
    "blockquote", "figure", "figcaption", "details", "summary", "address", "center", "hr", "br",
    "h1", "h2", "h3", "h4", "h5", "h6", "pre", "body", "caption", "thead", "tbody", "tfoot",
}


def simple_markdown(html: str, url: str) -> Tuple[Optional[str], str]:
    """(title, text) of the whole page with boilerplate elements dropped; stdlib only."""
    parser = _SimpleMarkdown(url)
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):  # very broken markup: keep what was parsed
        pass
    return parser.title, parser.text()


class _SimpleMarkdown(HTMLParser):
    def __init__(self, url):
        super().__init__(convert_charrefs=True)
        self.base = url
        self.title: Optional[str] = None
        self._title_parts: Optional[List[str]] = None
        self._skip: List[str] = []  # stack of open skipped elements
        self._out: List[List[str]] = [[]]  # a buffer per open <a>
        self._main: Optional[List[str]] = None  # output inside <main>, <article>, role=main
        self._region_tag: Optional[str] = None  # the tag that opened the current such region
        self._region_depth = 0  # open elements named _region_tag, the opener included
        self._links: List[Optional[str]] = []
        self._lists: List[List[int]] = []  # [next number] for <ol>, [] for <ul>
        self._pre = 0
        self._cells = 0

    # -- output ----------------------------------------------------------------------------
    def _emit(self, text):
        self._out[-1].append(text)
        if self._region_depth and len(self._out) == 1:
            self._main.append(text)

    def _newline(self, count=1):
        self._emit("\n" * count)

    def text(self) -> str:
        main = tidy("".join(self._main)) if self._main is not None else ""
        whole = tidy("".join(self._out[0]))
        # A <main> or <article> with real content is the page's own statement of its content.
        return main if len(main) >= min(len(whole), MIN_MAIN_CHARS) else whole

    # -- parsing ---------------------------------------------------------------------------
    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "title" and self.title is None and not self._skip_title_context():
            self._title_parts = []
            return
        if tag == "base" and attributes.get("href"):
            self.base = urljoin(self.base, attributes["href"])
            return
        if self._skip:
            if tag not in _VOID:
                self._skip.append(tag)
            return
        hidden = "hidden" in attributes or attributes.get("aria-hidden") == "true"
        if tag in _SKIP or attributes.get("role") in _SKIP_ROLES or hidden:
            if tag not in _VOID:
                self._skip.append(tag)
            return
        if self._region_depth:
            if tag == self._region_tag:
                self._region_depth += 1
        elif tag in ("main", "article") or attributes.get("role") == "main":
            if tag not in _VOID:
                self._main = [] if self._main is None else self._main
                self._main.append("\n\n")
                self._region_tag, self._region_depth = tag, 1
        if tag in _BLOCK:
            self._newline(1 if tag in _LINE else 2)
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self._emit("#" * int(tag[1]) + " ")
        elif tag in ("ul", "ol"):
            self._lists.append([1] if tag == "ol" else [])
        elif tag == "li":
            numbering = self._lists[-1] if self._lists else []
            indent = "  " * max(len(self._lists) - 1, 0)
            if numbering:
                self._emit(f"{indent}{numbering[0]}. ")
                numbering[0] += 1
            else:
                self._emit(f"{indent}- ")
        elif tag == "pre":
            self._pre += 1
            self._emit("```\n")
        elif tag == "code" and not self._pre:
            self._emit("`")
        elif tag == "tr":
            self._cells = 0
        elif tag in ("td", "th"):
            self._emit(" | " if self._cells else "")
            self._cells += 1
        elif tag == "hr":
            self._emit("---")
        elif tag == "a":
            self._links.append(attributes.get("href"))
            self._out.append([])

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag == "title" and self._title_parts is not None:
            self.title = " ".join("".join(self._title_parts).split())
            self._title_parts = None
            return
        if self._skip:
            if tag in self._skip:
                # close everything opened inside the skipped element, as a browser would
                while self._skip and self._skip.pop() != tag:
                    pass
            return
        if tag == "a" and len(self._out) > 1:
            self._close_link()
        elif tag == "pre" and self._pre:
            self._pre -= 1
            self._emit("```" if self._last_char() == "\n" else "\n```")
        elif tag == "code" and not self._pre:
            self._emit("`")
        elif tag in ("ul", "ol") and self._lists:
            self._lists.pop()
        if tag in _BLOCK and tag not in _LINE:
            self._newline(2)
        if self._region_depth and tag == self._region_tag:
            self._region_depth -= 1

    def handle_data(self, data):
        if self._title_parts is not None:
            self._title_parts.append(data)
            return
        if self._skip:
            return
        if not self._pre:
            data = re.sub(r"\s+", " ", data)
            if self._at_space():
                data = data.lstrip()
        if data:
            self._emit(data)

    def _at_space(self):
        return self._last_char() in " \n"

    def _last_char(self):
        for buffer in reversed(self._out):
            for piece in reversed(buffer):
                if piece:
                    return piece[-1]
        return "\n"

    def _close_link(self):
        href = self._links.pop() if self._links else None
        inner = " ".join("".join(self._out.pop()).split())
        target = _link_target(self.base, href)
        if inner and target:
            self._emit(f"[{inner}]({target})")
        elif inner:
            self._emit(inner)

    def _skip_title_context(self):
        # <title> inside <svg> is a tooltip, not the page title
        return "svg" in self._skip

    def close(self):
        super().close()
        while len(self._out) > 1:  # unclosed <a> at the end of the document
            self._close_link()


def _link_target(base, href):
    if not href:
        return None
    href = href.strip()
    if href.lower().startswith(("javascript:", "data:", "vbscript:")):
        return None
    try:
        target = urljoin(base, href)
    except ValueError:
        return None
    return target.replace(" ", "%20").replace(")", "%29")
