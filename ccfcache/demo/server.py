"""A real threaded HTTP/1.1 server that serves CCF folders like ESA's Apache, with faults on demand.

    with ArchiveServer({"/pub/ccf/constituents/": root / "full"}) as server:
        server.set_fault("truncate", name="XRT3_XAREAEF_0012.CCF", times=1, after=1000)
        httpx.get(server.url("/pub/ccf/constituents/") + "XRT3_XAREAEF_0012.CCF")

Folder URLs answer an Apache 2.4 autoindex page (`listing_style="table"`, or the older
`"pre"`), or the page another server writes (`"plain"`: Apache without FancyIndexing,
`"nginx"`, `"lighttpd"`, `"caddy"`, `"iis"`, `"python"`: http.server), with links written
relative, `./NAME`, as absolute paths or as full URLs (`href_form`); file URLs answer the
bytes with Content-Length, Last-Modified, ETag and byte ranges.
Every request is counted and logged. Faults apply to the next matching requests: a fault with
`name` only matches requests whose last path segment is `name` (a file name, or a folder's last
segment such as "constituents"); `on="file"` / `on="listing"` restricts 'slow', 'status' and
'redirect', which otherwise match both. Listing faults only match listings, the others files.

Run `python -m ccfcache.demo.server --root DIR` to serve DIR/full and DIR/valid at ESA's paths.
"""

from __future__ import annotations

import argparse
import email.utils
import hashlib
import html
import os
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

CHUNK = 64 * 1024
ESA_MOUNTS = {"full": "/pub/ccf/constituents/", "valid": "/pub/ccf/valid_constituents/"}

LISTING_FAULTS = frozenset(
    {"garbage_listing", "empty_listing", "truncated_listing", "listing_status", "listing_html",
     "endless_listing"}
)
FILE_FAULTS = frozenset(
    {"truncate", "reset", "wrong_length", "wrong_body", "ignore_range", "short_range",
     "huge_size"}
)
ANY_FAULTS = frozenset({"slow", "status", "redirect"})
FAULT_KINDS = LISTING_FAULTS | FILE_FAULTS | ANY_FAULTS
_BODY_FAULTS = frozenset({"truncate", "reset", "wrong_body"})
LOGGED_HEADERS = ("User-Agent", "Accept-Encoding", "If-Range", "If-None-Match",
                  "If-Modified-Since", "Via")


@dataclass
class Fault:
    """One armed fault: its kind, parameters, and how many more requests it applies to."""

    kind: str
    name: str | None = None
    times: int | None = None
    on: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class RequestCounts:
    """Counters for one path (or all paths with one base name)."""

    requests: int = 0
    gets: int = 0
    heads: int = 0
    bytes: int = 0
    not_modified: int = 0  # listings answered 304 to a conditional GET


def human_size(size: int) -> str:
    """A size as Apache's autoindex shows it (apr_strfsize): '512', '25K', '5.0M'."""
    if size < 973:
        return f"{size:3d} "
    units = "KMGTPE"
    unit = -1
    while True:
        remain = size & 1023
        size >>= 10
        unit += 1
        if size >= 973:
            continue
        if size < 9 or (size == 9 and remain < 973):
            tenth = (remain * 5 + 256) // 512
            if tenth >= 10:
                size, tenth = size + 1, 0
            return f"{size}.{tenth}{units[unit]}"
        if remain >= 512:
            size += 1
        return f"{size:3d}{units[unit]}"


def _http_date(stamp: float) -> str:
    return email.utils.formatdate(stamp, usegmt=True)


def _etag(stat: os.stat_result) -> str:
    return f'"{stat.st_size:x}-{stat.st_mtime_ns // 1000:x}"'


def _short_hash(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()[:16]


def _parse_range(header: str, size: int) -> tuple[int, int] | None | str:
    """(first, last) for one `bytes=` range, None to ignore it, 'unsatisfiable' for a 416."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first_text == "":
            suffix = int(last_text)
            if suffix <= 0 or size == 0:
                return "unsatisfiable"
            return max(0, size - suffix), size - 1
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
    except ValueError:
        return None
    if first >= size:
        return "unsatisfiable"
    if first < 0 or last < first:
        return None
    return first, min(last, size - 1)


_HEAD = """<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
<html>
 <head>
  <title>Index of {path}</title>
 </head>
 <body>
<h1>Index of {path}</h1>
"""
_ICON = '<img src="/icons/{icon}" alt="{alt}">'


def _display(name: str) -> str:
    """Apache's default NameWidth=23: longer names are cut and end in '..&gt;'."""
    return html.escape(name) if len(name) <= 23 else html.escape(name[:20]) + "..&gt;"


def render_listing(
    url_path: str, entries: list[tuple[str, float, int | None]], style: str = "table",
    query: str = "", *, href_form: str | None = None, host: str = "127.0.0.1",
) -> str:
    """An Apache autoindex page for (name, mtime, size or None for folders) entries; other
    servers' pages (`LISTING_STYLES`) come from `render_other_listing`."""
    if style not in ("table", "pre"):
        return render_other_listing(url_path, entries, style, href_form=href_form, host=host)
    form = href_form or "relative"
    key, reverse = "N", False
    for part in query.split(";"):
        if part.startswith("C=") and part[2:] in ("N", "M", "S", "D"):
            key = part[2:]
        elif part == "O=D":
            reverse = True
    sorters = {"M": lambda e: e[1], "S": lambda e: -1 if e[2] is None else e[2]}
    rows = sorted(entries, key=sorters.get(key, lambda e: e[0]), reverse=reverse)
    order = {k: ("D" if k == key and not reverse else "A") for k in "NMSD"}
    parent = url_path.rstrip("/").rpartition("/")[0] + "/"
    out = [_HEAD.format(path=html.escape(url_path.rstrip("/") or "/"))]
    if style == "pre":
        out.append(
            f'<pre>{_ICON.format(icon="blank.gif", alt="Icon ")} '
            f'<a href="?C=N;O={order["N"]}">Name</a>                    '
            f'<a href="?C=M;O={order["M"]}">Last modified</a>      '
            f'<a href="?C=S;O={order["S"]}">Size</a>  '
            f'<a href="?C=D;O={order["D"]}">Description</a><hr>'
            f'{_ICON.format(icon="back.gif", alt="[PARENTDIR]")} '
            f'<a href="{parent}">Parent Directory</a>                             -   \n'
        )
        for name, mtime, size in rows:
            label = _display(name)
            pad = " " * max(1, 25 - len(name if len(name) <= 23 else name[:20] + "..>"))
            stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(mtime))
            icon = ("folder.gif", "[DIR]") if size is None else ("unknown.gif", "[   ]")
            shown = "  - " if size is None else human_size(size).rjust(4)
            href = html.escape(_link(name, url_path, form, host))
            out.append(
                f'{_ICON.format(icon=icon[0], alt=icon[1])} <a href="{href}">{label}</a>'
                f"{pad}{stamp}  {shown}  \n"
            )
        out.append("<hr></pre>\n</body></html>\n")
        return "".join(out)
    out.append(
        "  <table>\n"
        f'   <tr><th valign="top">{_ICON.format(icon="blank.gif", alt="[ICO]")}</th>'
        f'<th><a href="?C=N;O={order["N"]}">Name</a></th>'
        f'<th><a href="?C=M;O={order["M"]}">Last modified</a></th>'
        f'<th><a href="?C=S;O={order["S"]}">Size</a></th>'
        f'<th><a href="?C=D;O={order["D"]}">Description</a></th></tr>\n'
        '   <tr><th colspan="5"><hr></th></tr>\n'
        f'<tr><td valign="top">{_ICON.format(icon="back.gif", alt="[PARENTDIR]")}</td>'
        f'<td><a href="{parent}">Parent Directory</a></td><td>&nbsp;</td>'
        '<td align="right">  - </td><td>&nbsp;</td></tr>\n'
    )
    for name, mtime, size in rows:
        stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(mtime))
        icon = ("folder.gif", "[DIR]") if size is None else ("unknown.gif", "[   ]")
        shown = "  - " if size is None else human_size(size).rjust(4)
        href = html.escape(_link(name, url_path, form, host))
        out.append(
            f'<tr><td valign="top">{_ICON.format(icon=icon[0], alt=icon[1])}</td>'
            f'<td><a href="{href}">{_display(name)}</a></td>'
            f'<td align="right">{stamp}  </td><td align="right">{shown}</td>'
            "<td>&nbsp;</td></tr>\n"
        )
    out.append('   <tr><th colspan="5"><hr></th></tr>\n</table>\n</body></html>\n')
    return "".join(out)


LISTING_STYLES = ("table", "pre", "plain", "nginx", "lighttpd", "caddy", "iis", "python")
HREF_FORMS = ("relative", "dot", "absolute", "url")
# how a listing's ETag and Last-Modified are made: from the folder's own stat, as Apache's
# TrackModified ("directory"), or from every entry's name, size and date ("entries")
LISTING_VALIDATORS = ("directory", "entries")
_STYLE_HREF = {"caddy": "dot", "iis": "absolute"}  # how each server writes its links


def _link(name: str, url_path: str, form: str, host: str) -> str:
    """A link to `name` in the folder `url_path`, written the way `form` says."""
    quoted = quote(name)
    if form == "dot":
        return "./" + quoted
    if form == "absolute":
        return quote(url_path) + quoted
    if form == "url":
        return f"http://{host}{quote(url_path)}{quoted}"
    return quoted


def _lighttpd_size(size: int) -> str:
    """lighttpd's mod_dirlisting size: always one decimal and a unit ('0.5K', '5.0M')."""
    if 0 < size < 100:
        size += 99
    unit = -1
    while True:
        remain = size & 1023
        size >>= 10
        unit += 1
        if not size & ~1023:
            break
    tenth = min(remain // 100, 9)
    if size > 999:
        size, tenth, unit = 0, 9, unit + 1
    return f"{size}.{tenth}{'KMGTPE'[unit]}"


def render_other_listing(
    url_path: str, entries: list[tuple[str, float, int | None]], style: str, *,
    href_form: str | None = None, host: str = "127.0.0.1",
) -> str:
    """The index page nginx, lighttpd, Caddy, IIS, python's http.server or Apache without
    FancyIndexing ('plain') writes for (name, mtime, size or None for folders) entries."""
    form = href_form or _STYLE_HREF.get(style, "relative")
    rows = sorted(entries)
    title = html.escape(url_path)
    parent = url_path.rstrip("/").rpartition("/")[0] + "/"

    def link(name: str) -> str:
        return html.escape(_link(name, url_path, form, host), quote=True)

    def stamp(mtime: float, pattern: str) -> str:
        return time.strftime(pattern, time.gmtime(mtime))

    out: list[str] = []
    if style == "plain":
        out.append(_HEAD.format(path=html.escape(url_path.rstrip("/") or "/")))
        out.append(f'<ul><li><a href="{html.escape(parent)}"> Parent Directory</a></li>\n')
        out += [f'<li><a href="{link(n)}"> {html.escape(n)}</a></li>\n' for n, _, _ in rows]
        out.append("</ul>\n</body></html>\n")
    elif style == "python":
        out.append('<!DOCTYPE HTML>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
                   f"<title>Directory listing for {title}</title>\n</head>\n<body>\n"
                   f"<h1>Directory listing for {title}</h1>\n<hr>\n<ul>\n")
        out += [f'<li><a href="{link(n)}">{html.escape(n)}</a></li>\n' for n, _, _ in rows]
        out.append("</ul>\n<hr>\n</body>\n</html>\n")
    elif style == "nginx":
        out.append(f"<html>\n<head><title>Index of {title}</title></head>\n<body>\n"
                   f'<h1>Index of {title}</h1><hr><pre><a href="../">../</a>\n')
        for name, mtime, size in rows:
            shown = name if len(name) <= 50 else name[:47] + "..>"
            pad = " " * (51 - len(shown))
            out.append(f'<a href="{link(name)}">{html.escape(shown)}</a>{pad}'
                       f"{stamp(mtime, '%d-%b-%Y %H:%M')} {'-' if size is None else size:>19}\n")
        out.append("</pre><hr></body>\n</html>\n")
    elif style == "lighttpd":
        out.append('<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD '
                   'XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\n'
                   '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en">\n<head>\n'
                   f"<title>Index of {title}</title>\n</head>\n<body>\n<h2>Index of {title}</h2>\n"
                   '<div class="list">\n<table summary="Directory Listing" cellpadding="0" '
                   'cellspacing="0">\n<thead><tr><th class="n">Name</th><th class="m">Last '
                   'Modified</th><th class="s">Size</th><th class="t">Type</th></tr></thead>\n'
                   '<tbody>\n<tr class="d"><td class="n"><a href="../">Parent Directory</a>/</td>'
                   '<td class="m">&nbsp;</td><td class="s">- &nbsp;</td>'
                   '<td class="t">Directory</td></tr>\n')
        for name, mtime, size in rows:
            kind = "Directory" if size is None else "application/octet-stream"
            shown = "- &nbsp;" if size is None else _lighttpd_size(size)
            out.append(f'<tr><td class="n"><a href="{link(name)}">{html.escape(name)}</a></td>'
                       f'<td class="m">{stamp(mtime, "%Y-%b-%d %H:%M:%S")}</td>'
                       f'<td class="s">{shown}</td><td class="t">{kind}</td></tr>\n')
        out.append('</tbody>\n</table>\n</div>\n<div class="foot">lighttpd/1.4.69</div>\n'
                   "</body>\n</html>\n")
    elif style == "caddy":
        out.append("<!DOCTYPE html>\n<html>\n<head>\n<title>" + title + "</title>\n"
                   '<meta charset="utf-8">\n</head>\n<body>\n<header><h1>' + title +
                   "</h1></header>\n<main>\n<div class=\"listing\">\n<table>\n<thead>\n<tr>\n"
                   "<th></th><th>Name</th><th>Size</th><th class=\"hideable\">Modified</th>\n"
                   "</tr>\n</thead>\n<tbody>\n<tr>\n<td></td>\n<td><a href=\"..\">"
                   "<span class=\"go-up\">Up</span></a></td>\n</tr>\n")
        for name, mtime, size in rows:
            label = html.escape(name)
            shown = "&mdash;" if size is None else f"{(size or 0) / 1024:.1f} KiB"
            out.append('<tr class="file">\n<td></td>\n<td>\n'
                       f'<a href="{link(name)}">\n<svg width="1.5em" height="1em"></svg>\n'
                       f'<span class="name">{label}</span>\n</a>\n</td>\n'
                       f'<td class="size" data-size="{size or 0}">\n<div class="sizebar">\n'
                       f'<div class="sizebar-text">\n{shown}\n</div>\n</div>\n</td>\n'
                       '<td class="timestamp hideable">\n<time datetime="'
                       f'{stamp(mtime, "%Y-%m-%dT%H:%M:%SZ")}">'
                       f'{stamp(mtime, "%m/%d/%Y %I:%M:%S %p +00:00")}</time>\n</td>\n</tr>\n')
        out.append("</tbody>\n</table>\n</div>\n</main>\n<footer>Served with <a rel=\"noopener "
                   "noreferrer\" href=\"https://caddyserver.com\">Caddy</a></footer>\n"
                   "</body>\n</html>\n")
    elif style == "iis":
        out.append(f"<html><head><title>{host} - {title}</title></head><body><H1>{host} - "
                   f"{title}</H1><hr>\n\n<pre><A HREF=\"{html.escape(parent)}\">[To Parent "
                   "Directory]</A><br><br>")
        for name, mtime, size in rows:
            moment = time.gmtime(mtime)
            hour = moment.tm_hour % 12 or 12
            when = (f"{moment.tm_mon:2d}/{moment.tm_mday}/{moment.tm_year} "
                    f"{hour:2d}:{moment.tm_min:02d} {'PM' if moment.tm_hour >= 12 else 'AM'}")
            shown = "&lt;dir&gt;" if size is None else str(size)
            label = html.escape(name.rstrip("/"))
            out.append(f"{when:>20} {shown:>12} <A HREF=\"{link(name)}\">{label}</A><br>")
        out.append("</pre><hr></body></html>")
    else:
        raise ValueError(f"unknown listing style {style!r}")
    return "".join(out)


def s3_list_objects(bucket: str, folder: Path, query: str, max_keys_cap: int) -> bytes:
    """A ListObjectsV2 answer for the files under `folder` (keys are their relative paths)."""
    import base64
    from urllib.parse import parse_qs
    from xml.sax.saxutils import escape

    params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
    prefix = params.get("prefix", "")
    delimiter = params.get("delimiter", "")
    try:
        max_keys = max(0, min(int(params.get("max-keys", "1000")), max_keys_cap))
    except ValueError:
        max_keys = max_keys_cap
    token = params.get("continuation-token")
    start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
    keys = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    items: list[tuple[str, str]] = []  # ("key" | "prefix", value), in key order
    for key in keys:
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        if delimiter and delimiter in rest:
            common = prefix + rest.split(delimiter, 1)[0] + delimiter
            if not items or items[-1] != ("prefix", common):
                items.append(("prefix", common))
        else:
            items.append(("key", key))
    page = items[start:start + max_keys]
    truncated = start + max_keys < len(items)
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult '
           'xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
           f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>"
           f"<KeyCount>{len(page)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>"
           f"<Delimiter>{escape(delimiter)}</Delimiter>"
           f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"]
    if token:
        out.append(f"<ContinuationToken>{escape(token)}</ContinuationToken>")
    if truncated:
        following = base64.urlsafe_b64encode(str(start + max_keys).encode()).decode()
        out.append(f"<NextContinuationToken>{following}</NextContinuationToken>")
    for kind, value in page:
        if kind == "prefix":
            out.append(f"<CommonPrefixes><Prefix>{escape(value)}</Prefix></CommonPrefixes>")
            continue
        stat = (folder / value).stat()
        modified = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(stat.st_mtime))
        out.append(f"<Contents><Key>{escape(value)}</Key><LastModified>{modified}"
                   f"</LastModified><ETag>{escape(_etag(stat))}</ETag><Size>{stat.st_size}"
                   "</Size><StorageClass>STANDARD</StorageClass></Contents>")
    out.append("</ListBucketResult>\n")
    return "".join(out).encode("utf-8")


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that tracks open connections so `stop` can end them."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: ArchiveServer) -> None:
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # like Apache: no Nagle delay between the header and body writes (else 40 ms stalls)
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError, OSError, ValueError)):
            self.owner.errors.append(repr(error))


class _Abort(Exception):
    """Stop handling this request and drop the connection."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Apache/2.4.37 (ccfcache demo)"
    sys_version = ""
    timeout = 30
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Stay quiet: the request log is kept in memory."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._serve(head=False)

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
        self._serve(head=True)

    # -- helpers -------------------------------------------------------------------------------

    def _serve(self, *, head: bool) -> None:
        owner = self.server.owner
        split = urlsplit(self.path)
        path = unquote(split.path)
        owner._record(self.command, path, self.headers.get("Range"), self.client_address[0])
        with owner._lock:
            owner._headers_log.append((path, {k: self.headers[k] for k in LOGGED_HEADERS
                                              if k in self.headers}))
        with owner._lock:
            owner.in_flight += 1
            owner.peak_in_flight = max(owner.peak_in_flight, owner.in_flight)
        try:
            self._dispatch(path, split.query, head=head)
        except _Abort:
            self.close_connection = True
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        finally:
            with owner._lock:
                owner.in_flight -= 1

    def _dispatch(self, path: str, query: str, *, head: bool) -> None:
        owner = self.server.owner
        target = owner._resolve(path)
        if target is None:
            self._simple(404, b"Not Found\n", head=head)
            return
        s3_listing = target.is_dir() and path.rstrip("/") + "/" in owner.s3_buckets and (
            "list-type=2" in query.split("&"))
        if target.is_dir() and not path.endswith("/") and not s3_listing:
            self._redirect(path + "/", 301, head=head)
            return
        segment = path.rstrip("/").rpartition("/")[2]
        kind = "listing" if target.is_dir() else "file"
        faults = owner._take_faults(segment, kind, head=head)
        if "slow" in faults:
            time.sleep(float(faults["slow"].params.get("delay", 0.2)))
        if "redirect" in faults:
            params = faults["redirect"].params
            self._redirect(params["location"], int(params.get("code", 302)), head=head)
            return
        status = faults.get("status") or faults.get("listing_status")
        if status is not None:
            default = 503 if status.kind == "status" else 500
            code = int(status.params.get("code", default))
            extra = {}
            if status.params.get("retry_after") is not None:
                extra["Retry-After"] = str(status.params["retry_after"])
            self._simple(code, f"Error {code}\n".encode(), head=head, extra=extra)
            return
        if s3_listing:
            body = s3_list_objects(path.strip("/"), target, query, owner.s3_max_keys)
            self._simple(200, body, head=head, content_type="application/xml")
        elif target.is_dir():
            self._listing(path, target, query, faults, head=head)
        elif target.is_file():
            self._file(path, target, faults, head=head)
        else:
            self._simple(404, b"Not Found\n", head=head)

    def _simple(
        self, code: int, body: bytes, *, head: bool, extra: dict[str, str] | None = None,
        content_type: str = "text/plain; charset=utf-8",
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self._write(body)

    def _redirect(self, location: str, code: int, *, head: bool) -> None:
        body = f'<html><body><a href="{html.escape(location)}">moved</a></body></html>\n'
        self._simple(code, body.encode(), head=head, extra={"Location": location},
                     content_type="text/html; charset=iso-8859-1")

    def _write(self, data: bytes) -> None:
        # counted before the write, so a client that has its bytes also sees them counted
        path = unquote(urlsplit(self.path).path)
        self.server.owner._count_bytes(path, len(data))
        try:
            self.wfile.write(data)
        except OSError:
            self.server.owner._count_bytes(path, -len(data))
            raise

    def _listing(
        self, path: str, folder: Path, query: str, faults: dict[str, Fault], *, head: bool
    ) -> None:
        owner = self.server.owner
        host = self.headers.get("Host") or f"{owner.host}:{owner.port}"
        # a page served whole as rendered can be answered 304 before it is rendered (100,000
        # rows); a faulty page is judged by its own bytes
        plain = not {"listing_html", "garbage_listing", "truncated_listing", "endless_listing",
                     "empty_listing"} & set(faults)
        options = repr((path, owner.listing_style, query, owner.href_form, host))
        validators = owner.listing_validators
        judged_by_entries = False
        if plain and validators == "directory":
            # Apache's mod_autoindex with `IndexOptions TrackModified`: Last-Modified and ETag
            # of the directory's own stat (`ap_update_mtime(r, r->finfo.mtime)`,
            # `ap_set_etag(r)`: "size-mtime" in hex, mtime in microseconds), whatever the
            # files hold: one stat decides a 304. Adding, removing or renaming a file (a
            # publisher's write-then-rename) changes the directory; a file rewritten in
            # place does not (Apache documents that too). The page's options are added, as
            # this server's pages differ by them.
            info = folder.stat()
            newest = info.st_mtime
            etag = _etag(info)[:-1] + "-" + _short_hash(options.encode("utf-8")) + '"'
            # A directory changed within the last second may change again within the same
            # clock tick and keep its mtime (Apache sends such an ETag weak): its tag then
            # also names the entries ("...-ENTRIES"), and such a tag is judged by them.
            asked = self.headers.get("If-None-Match") or ""
            judged_by_entries = f"{etag[:-1]}-" in asked or time.time() - newest < 1.0
            if not judged_by_entries and self._not_modified(etag, newest):
                self._send_not_modified(path, etag, newest)
                return
        entries: list[tuple[str, float, int | None]] = []
        if "empty_listing" not in faults:
            with os.scandir(folder) as scan:
                for child in scan:
                    stat = child.stat()
                    if child.is_dir():
                        entries.append((child.name + "/", stat.st_mtime, None))
                    else:
                        entries.append((child.name, stat.st_mtime, stat.st_size))
        if plain and (validators == "entries" or judged_by_entries):
            # every entry counts: a file rewritten in place (new size or date) changes the
            # validators too, which Apache does not see (a stat per file at each request)
            made_of = _short_hash(repr((sorted(entries), options)).encode("utf-8"))
            if validators == "entries":
                newest = max([folder.stat().st_mtime] + [mtime for _, mtime, _ in entries])
                etag = f'"{made_of}"'
            else:
                etag = f'{etag[:-1]}-{made_of}"'
            if self._not_modified(etag, newest):
                self._send_not_modified(path, etag, newest)
                return
        body = render_listing(path, entries, owner.listing_style, query,
                              href_form=owner.href_form, host=host).encode("utf-8")
        if "listing_html" in faults:  # a hand-written (hostile) page, served verbatim
            body = str(faults["listing_html"].params.get("html", "")).encode("utf-8")
        if "garbage_listing" in faults:
            body = b"\x00\x1f\x8b garbage \xff\xfe<<<<%%%% not a listing\n" * 20
        if "truncated_listing" in faults:
            fraction = float(faults["truncated_listing"].params.get("fraction", 0.5))
            body = body[: int(len(body) * fraction)]
        if "endless_listing" in faults:
            self._endless(body, int(faults["endless_listing"].params.get("limit", 256 << 20)))
            return
        if not plain:
            newest = max([folder.stat().st_mtime] + [mtime for _, mtime, _ in entries])
            etag = '"' + _short_hash(body) + '"'
            if self._not_modified(etag, newest):
                self._send_not_modified(path, etag, newest)
                return
        extra = {"ETag": etag, "Last-Modified": _http_date(newest)}
        self._simple(200, body, head=head, content_type="text/html;charset=UTF-8", extra=extra)

    def _send_not_modified(self, path: str, etag: str, newest: float) -> None:
        self.server.owner._count_not_modified(path)
        self.send_response(304)
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", _http_date(newest))
        self.end_headers()

    def _not_modified(self, etag: str, newest: float) -> bool:
        match = self.headers.get("If-None-Match")
        if match is not None:
            return etag in [tag.strip() for tag in match.split(",")] or match.strip() == "*"
        since = self.headers.get("If-Modified-Since")
        if since:
            try:
                return int(newest) <= email.utils.parsedate_to_datetime(since).timestamp()
            except (TypeError, ValueError, IndexError, OverflowError):
                return False
        return False

    def _endless(self, start: bytes, limit: int) -> None:
        """A listing that never ends (up to `limit` bytes): no length, closed when done."""
        self.send_response(200)
        self.send_header("Content-Type", "text/html;charset=UTF-8")
        self.send_header("Connection", "close")
        self.end_headers()
        row = b'<tr><td><a href="EPN_X_0001.CCF">EPN_X_0001.CCF</a></td></tr>\n' * 1000
        self._write(start[: len(start) // 2])
        sent = len(start) // 2
        while sent < limit:
            self._write(row)
            sent += len(row)
        raise _Abort

    def _file(self, path: str, target: Path, faults: dict[str, Fault], *, head: bool) -> None:
        stat = target.stat()
        size = stat.st_size
        etag = _etag(stat)
        modified = _http_date(stat.st_mtime)
        first, last = 0, size - 1
        partial = False
        range_header = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if range_header and "ignore_range" not in faults and if_range in (None, etag, modified):
            parsed = _parse_range(range_header, size)
            if parsed == "unsatisfiable":
                self._simple(416, b"Requested Range Not Satisfiable\n", head=head,
                             extra={"Content-Range": f"bytes */{size}"})
                return
            if isinstance(parsed, tuple):
                first, last = parsed
                partial = True
        asked_last = last  # the range's end as asked (a short_range fault serves less)
        total = str(size)
        if "huge_size" in faults:
            total = str(faults["huge_size"].params.get("total", 2**63))
        if partial and "short_range" in faults:  # fewer bytes than asked, every time
            last = min(last, first + int(faults["short_range"].params.get("keep", 0)) - 1)
            if last < first:  # an empty 206 that still claims the range asked for
                self.send_response(206)
                self.send_header("Content-Length", "0")
                self.send_header("Content-Range", f"bytes {first}-{asked_last}/{total}")
                self.send_header("ETag", etag)
                self.end_headers()
                return
        length = last - first + 1
        claimed = length
        if "wrong_length" in faults:
            claimed = max(0, length + int(faults["wrong_length"].params.get("delta", 1000)))
        self.send_response(206 if partial else 200)
        content_type = "text/plain" if target.suffix == ".txt" else "application/octet-stream"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(claimed))
        self.send_header("Last-Modified", modified)
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        if partial:
            self.send_header("Content-Range", f"bytes {first}-{last}/{total}")
        if claimed != length and not head:
            # this response ends by closing the connection: say so, or a client that read
            # the claimed length may reuse the connection and race the close (flaky tests)
            self.send_header("Connection", "close")
        self.end_headers()
        if head:
            return
        self._send_body(target, first, min(length, claimed), size, faults)
        if claimed != length:
            raise _Abort

    def _send_body(
        self, target: Path, first: int, length: int, size: int, faults: dict[str, Fault]
    ) -> None:
        cut: int | None = None
        if "truncate" in faults:
            cut = int(faults["truncate"].params.get("after", length // 2))
        reset = "reset" in faults
        if reset:
            cut = int(faults["reset"].params.get("after", length // 2))
        flip: int | None = None
        if "wrong_body" in faults:
            flip = int(faults["wrong_body"].params.get("offset", size - 1))
        delay = float(faults["slow"].params.get("delay", 0.2)) if "slow" in faults else 0.0
        chunk = self.server.owner.chunk_size
        if "slow" in faults:  # a trickle: `chunk` bytes every `delay` seconds
            chunk = int(faults["slow"].params.get("chunk", chunk))
        sent = 0
        limit = length if cut is None else min(cut, length)
        with target.open("rb") as handle:
            handle.seek(first)
            while sent < limit:
                data = handle.read(min(chunk, limit - sent))
                if not data:
                    break
                if flip is not None and first + sent <= flip < first + sent + len(data):
                    index = flip - first - sent
                    data = data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1:]
                if sent and delay:
                    time.sleep(delay)
                self._write(data)
                sent += len(data)
        if reset:
            self._reset_connection()
        if cut is not None:
            raise _Abort

    def _reset_connection(self) -> None:
        """Close the socket with SO_LINGER 0, so the client sees a TCP RST."""
        try:
            self.wfile.flush()
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        except OSError:
            pass
        self.wfile.close()
        self.rfile.close()
        self.connection.close()
        raise _Abort


class ArchiveServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 serving folders at URL prefixes, with faults."""

    def __init__(
        self, mounts: dict[str, Path], *, host: str = "127.0.0.1", port: int = 0,
        listing_style: str = "table", chunk_size: int = CHUNK, href_form: str | None = None,
        listing_validators: str = "directory",
    ) -> None:
        if listing_style not in LISTING_STYLES:
            raise ValueError(f"listing_style must be in {LISTING_STYLES}, not {listing_style!r}")
        if href_form not in (None, *HREF_FORMS):
            raise ValueError(f"href_form must be one of {HREF_FORMS}, not {href_form!r}")
        if listing_validators not in LISTING_VALIDATORS:
            raise ValueError(f"listing_validators must be one of {LISTING_VALIDATORS}, not "
                             f"{listing_validators!r}")
        self.host = host
        self.listing_validators = listing_validators
        self.port = port
        self.listing_style = listing_style
        self.href_form = href_form
        self.s3_buckets: set[str] = set()  # mount prefixes that also answer ListObjectsV2
        self.s3_max_keys = 1000
        self.chunk_size = chunk_size
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._mounts: dict[str, Path] = {}
        for prefix, folder in mounts.items():
            self.set_mount(prefix, folder)
        self._faults: list[Fault] = []
        self._counts: dict[str, RequestCounts] = {}
        self._log: list[tuple[str, str, str | None]] = []
        self._headers_log: list[tuple[str, dict[str, str]]] = []
        self._clients: dict[str, int] = {}
        self.in_flight = 0
        self.peak_in_flight = 0  # the most requests handled at once (since reset_counts)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> ArchiveServer:
        """Bind and serve in a background thread (idempotent)."""
        if self._httpd is None:
            self._httpd = _Server((self.host, self.port), self)
            self.port = self._httpd.server_address[1]
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                name=f"ArchiveServer:{self.port}", daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and wait for the handler threads."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        with httpd.connections_lock:
            open_connections = list(httpd.connections)
        for connection in open_connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> ArchiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT` (no trailing slash)."""
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        return f"http://{self.host}:{self.port}"

    def url(self, prefix: str = "/") -> str:
        """The full URL of a path on this server."""
        return self.base_url + (prefix if prefix.startswith("/") else "/" + prefix)

    # -- mounts --------------------------------------------------------------------------------

    def set_mount(self, prefix: str, folder: Path) -> None:
        """Serve `folder` at `prefix` (which must start and end with '/'), replacing any."""
        if not (prefix.startswith("/") and prefix.endswith("/")):
            raise ValueError(f"a mount prefix starts and ends with '/': {prefix!r}")
        with self._lock:
            self._mounts[prefix] = Path(folder)

    def _resolve(self, path: str) -> Path | None:
        """The file or folder a URL path names, or None (unknown, or outside every mount)."""
        with self._lock:
            mounts = sorted(self._mounts.items(), key=lambda item: -len(item[0]))
        for prefix, folder in mounts:
            if path == prefix.rstrip("/"):
                return folder
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):]
            if not rest:
                return folder
            parts = rest.split("/")
            if rest.endswith("/"):
                parts = parts[:-1]
            if any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
                return None
            target = folder.joinpath(*parts) if parts else folder
            try:
                if not target.resolve().is_relative_to(folder.resolve()):
                    return None
            except OSError:
                return None
            if not target.exists():
                return None
            return target
        return None

    def add_s3_bucket(self, bucket: str, folder: Path, *, max_keys: int = 1000) -> str:
        """Serve `folder` as an S3 bucket, path-style: `GET /BUCKET?list-type=2&prefix=P`
        answers ListObjectsV2 XML (at most `max_keys` keys a page, with continuation tokens),
        `GET /BUCKET/KEY` the object (Range, ETag). Returns the endpoint URL."""
        self.set_mount(f"/{bucket}/", folder)
        with self._lock:
            self.s3_buckets.add(f"/{bucket}/")
            self.s3_max_keys = max_keys
        return self.base_url

    # -- faults --------------------------------------------------------------------------------

    def set_fault(
        self, kind: str, *, name: str | None = None, times: int | None = None,
        on: str | None = None, **params: Any,
    ) -> None:
        """Arm a fault for the next `times` matching requests (all, when None)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {sorted(FAULT_KINDS)}")
        if kind == "redirect" and "location" not in params:
            raise ValueError("a 'redirect' fault needs location=")
        if on not in (None, "file", "listing"):
            raise ValueError(f"on must be 'file', 'listing' or None, not {on!r}")
        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1, not {times!r}")
        with self._lock:
            self._faults.append(Fault(kind, name, times, on, dict(params)))

    def clear_faults(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._faults.clear()

    def _take_faults(self, segment: str, kind: str, *, head: bool) -> dict[str, Fault]:
        """The faults that apply to this request (one per kind), consuming their counts."""
        taken: dict[str, Fault] = {}
        with self._lock:
            for fault in self._faults:
                if fault.kind in taken or (fault.name is not None and fault.name != segment):
                    continue
                if fault.kind in LISTING_FAULTS and kind != "listing":
                    continue
                if fault.kind in FILE_FAULTS and kind != "file":
                    continue
                if fault.on is not None and fault.on != kind:
                    continue
                if head and fault.kind in _BODY_FAULTS:
                    continue
                taken[fault.kind] = fault
                if fault.times is not None:
                    fault.times -= 1
            self._faults = [f for f in self._faults if f.times is None or f.times > 0]
        return taken

    # -- counters ------------------------------------------------------------------------------

    def _record(self, method: str, path: str, range_header: str | None,
                client: str = "") -> None:
        with self._lock:
            self._log.append((method, path, range_header))
            self._clients[client] = self._clients.get(client, 0) + 1
            counts = self._counts.setdefault(path, RequestCounts())
            counts.requests += 1
            counts.gets += method == "GET"
            counts.heads += method == "HEAD"

    def _count_not_modified(self, path: str) -> None:
        with self._lock:
            self._counts.setdefault(path, RequestCounts()).not_modified += 1

    @property
    def request_headers(self) -> list[tuple[str, dict[str, str]]]:
        """(path, the LOGGED_HEADERS it carried) of every request, in order."""
        with self._lock:
            return list(self._headers_log)

    def _count_bytes(self, path: str, size: int) -> None:
        with self._lock:
            self._counts.setdefault(path, RequestCounts()).bytes += size

    def counts(self, name_or_path: str) -> RequestCounts:
        """Counters summed over the paths equal to `name_or_path` or ending in '/name'."""
        total = RequestCounts()
        with self._lock:
            for path, counts in self._counts.items():
                base = path.rstrip("/").rpartition("/")[2]
                if name_or_path in (path, base):
                    total.requests += counts.requests
                    total.gets += counts.gets
                    total.heads += counts.heads
                    total.bytes += counts.bytes
                    total.not_modified += counts.not_modified
        return total

    def requests_for(self, name: str) -> int:
        """How many requests (any method) named `name` (a base name or a full path)."""
        return self.counts(name).requests

    def bytes_sent(self, name: str) -> int:
        """Body bytes sent for `name` (a base name or a full path)."""
        return self.counts(name).bytes

    def total_bytes(self) -> int:
        """Body bytes sent for every request."""
        with self._lock:
            return sum(counts.bytes for counts in self._counts.values())

    def total_requests(self) -> int:
        """Number of requests received."""
        with self._lock:
            return len(self._log)

    @property
    def clients(self) -> dict[str, int]:
        """Requests per client IP address (tests with several network namespaces)."""
        with self._lock:
            return dict(self._clients)

    @property
    def request_log(self) -> list[tuple[str, str, str | None]]:
        """A copy of the (method, path, Range header) of every request, in order."""
        with self._lock:
            return list(self._log)

    def reset_counts(self) -> None:
        """Forget every counter and the request log."""
        with self._lock:
            self._counts.clear()
            self._log.clear()
            self._headers_log.clear()
            self._clients.clear()
            self.peak_in_flight = self.in_flight


def esa_mounts(root: Path) -> dict[str, Path]:
    """ESA's URL prefixes for a generated archive's full/ and valid/ folders."""
    return {prefix: Path(root) / folder for folder, prefix in ESA_MOUNTS.items()}


def main(argv: list[str] | None = None) -> int:
    """Serve a generated archive until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m ccfcache.demo.server", description=__doc__)
    parser.add_argument("--root", type=Path, required=True, help="folder holding full/, valid/")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--listing-style", choices=LISTING_STYLES, default="table")
    parser.add_argument("--s3-bucket", default=None,
                        help="also serve --root as this S3 bucket (path-style; printed third)")
    args = parser.parse_args(argv)
    server = ArchiveServer(esa_mounts(args.root), port=args.port,
                           listing_style=args.listing_style)
    with server:
        for prefix in ESA_MOUNTS.values():
            print(server.url(prefix), flush=True)
        if args.s3_bucket:
            print(server.add_s3_bucket(args.s3_bucket, args.root), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
