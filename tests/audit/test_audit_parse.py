"""Audit of the input parsers (streams/parse/, and parse failures in the pipeline).

Every test here fails on the code as audited and passes once the finding it names is
fixed. Lines are what real Apache httpd / nginx write (sources cited per test).
"""

from __future__ import annotations

T = "[10/Oct/2000:13:55:36 -0700]"
TIME = 971211336


def _apache_escape(text: str) -> str:
    r"""What Apache's ap_escape_logitem and nginx's escape=default write for ``text``:
    every byte >= 0x7f (so every byte of a non-ASCII UTF-8 character) as ``\xhh``."""
    return "".join(c if ord(c) < 0x7F else "".join(f"\\x{b:02x}" for b in c.encode()) for c in text)
