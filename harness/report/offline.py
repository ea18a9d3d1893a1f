"""Does a page make requests outside itself? A static scan of an HTML report for anything a browser would fetch.

Fetched: every URL in a src/href/srcset/poster/data/action attribute or CSS url()/@import that is not a data:,
blob:, javascript: or about: URL or a #fragment (an outside address, a protocol-relative one, or a sibling file
that a self-contained page must not need), a meta refresh, and any http(s)/ws(s) address in an inline or data:
script or style sheet other than the inert ones named in INERT (XML namespaces, links shown to the user, a base
for parsing URLs). The headless browser test (harness/tests/report/test_html_report.py) checks the same page
by loading it with the network closed.
"""
from __future__ import annotations

import base64
import re
import urllib.parse
from html.parser import HTMLParser

URL_ATTRIBUTES = {"src", "href", "xlink:href", "srcset", "poster", "data", "action", "background", "formaction", "ping"}
SELF_CONTAINED = ("data:", "blob:", "javascript:", "about:", "#", "mailto:")
#: Addresses in Allure 2's script that no code fetches: XML namespaces of its SVGs (w3.org, inkscape, sodipodi,
#: purl, creativecommons), a wiki page highlight.js prints in a console warning (github.com), the viewer Playwright
#: trace attachments link to when clicked (trace.playwright.dev; this project attaches none), the base for
#: parsing relative URLs (allure.local, never resolved).
INERT = re.compile(r"https?://(www\.w3\.org|www\.inkscape\.org|sodipodi\.sourceforge\.net|purl\.org|"
                   r"creativecommons\.org|github\.com|trace\.playwright\.dev|allure\.local)(?=[/:`'\"]|$)")
ADDRESS = re.compile(r"(?:https?|wss?)://[A-Za-z0-9._~%-]+(?::\d+)?[^\s\"'`<>)\\]*")
CSS_URL = re.compile(r"url\(\s*['\"]?([^'\")]+)|@import\s+['\"]([^'\"]+)")
CODE_TYPES = ("text/javascript", "application/javascript", "text/css", "text/html", "image/svg+xml")


def outside_references(page: str) -> list[str]:
    """Each URL in the page (and in the scripts and style sheets it embeds) that a browser would fetch from outside
    the page, in order found, without repeats; [] for a self-contained page."""
    scan = _Scan()
    scan.feed(page)
    scan.close()
    return list(dict.fromkeys(scan.found))


def _fetched(url: str) -> bool:
    """Whether a URL from an attribute or url() leaves the page."""
    u = urllib.parse.unquote(url.strip())  # url(%23id) in an SVG inside a script: a fragment
    return bool(u) and not u.lower().startswith(SELF_CONTAINED)


def _srcset(value: str) -> list[str]:
    """The URLs of a srcset: each candidate a URL (which may hold commas, as data: URLs do) and its descriptors."""
    return [m.group(1).rstrip(",") for m in re.finditer(r"\s*(\S+)(?:\s+[^,]*)?,?", value) if m.group(1).rstrip(",")]


def _in_code(text: str) -> list[str]:
    """Addresses in script or style text that are not inert, and CSS url()/@import references that leave the page."""
    out = [m.group(0) for m in ADDRESS.finditer(text) if not INERT.match(m.group(0))]
    out += [u for m in CSS_URL.finditer(text) for u in m.groups() if u and _fetched(u) and not INERT.match(u)
            and not u.startswith(("http", "ws"))]  # outside addresses are in out already
    return out


def _data_text(url: str) -> str | None:
    """The text of a data: URL holding a script, style sheet, page or SVG; None for other data (images, fonts)."""
    head, _, body = url.partition(",")
    kind = head[5:].split(";")[0].strip().lower()
    if kind not in CODE_TYPES:
        return None
    raw = base64.b64decode(body + "=" * (-len(body) % 4)) if ";base64" in head.lower() else urllib.parse.unquote(body).encode()
    return raw.decode("utf-8", "replace")


class _Scan(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._code = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._code = tag in ("script", "style")
        a = {k.lower(): v or "" for k, v in attrs}
        for k, val in a.items():
            urls = _srcset(val) if k == "srcset" else [val]
            if k in URL_ATTRIBUTES:
                for u in urls:
                    if _fetched(u):
                        self.found.append(u)
                    elif u.lower().startswith("data:") and (text := _data_text(u)) is not None:
                        self._nested(text)
            elif k == "style":
                self.found += _in_code(val)
        if tag == "meta" and a.get("http-equiv", "").lower() == "refresh" and "url=" in a.get("content", "").lower():
            self.found.append(a["content"])

    def handle_endtag(self, tag: str) -> None:
        self._code = False

    def handle_data(self, data: str) -> None:
        if self._code:
            self.found += _in_code(data)

    def _nested(self, text: str) -> None:
        """A data: script or style sheet is code; a data: page or SVG is scanned as markup."""
        if text.lstrip().startswith("<"):
            inner = _Scan()
            inner.feed(text)
            inner.close()
            self.found += inner.found
        else:
            self.found += _in_code(text)
