"""What the dashboard page is made of: its static files (packaged in ``web/static/``, served from
``/dashboard/static/``, so it works offline), the names that may be served, and the headers of
the page and of its JSON."""

from __future__ import annotations

import importlib.resources
import re

STATIC = importlib.resources.files("hospital_stream.web") / "static"
STATIC_NAME = re.compile(r"^[a-z0-9_-]+\.(js|css)$")
CONTENT_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
#: everything from this origin only: no inline script, no CDN, no plug-ins, no framing
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:;"
        " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
