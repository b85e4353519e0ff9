"""Audit of the input parsers (streams/parse/, and parse failures in the pipeline).

Every test here fails on the code as audited and passes once the finding it names is
fixed. Lines are what real Apache httpd / nginx write (sources cited per test).
"""

from __future__ import annotations

from streams.parse import compile_one

T = "[10/Oct/2000:13:55:36 -0700]"
TIME = 971211336


def _apache_escape(text: str) -> str:
    r"""What Apache's ap_escape_logitem and nginx's escape=default write for ``text``:
    every byte >= 0x7f (so every byte of a non-ASCII UTF-8 character) as ``\xhh``."""
    return "".join(c if ord(c) < 0x7F else "".join(f"\\x{b:02x}" for b in c.encode()) for c in text)


# --- 17. wrong value: a request line with a space in the URI -----------------------


def test_a_request_line_with_a_space_in_the_uri_keeps_method_and_target() -> None:
    """nginx serves "GET /a b HTTP/1.1" (space_in_uri) and logs it as is; splitting on
    every space drops method, target and protocol."""
    r = compile_one("nginx_combined").parse(
        f'203.0.113.9 - - {T} "GET /a b HTTP/1.1" 200 5 "-" "curl/8"'
    )
    assert (r.method, r.target, r.protocol) == ("GET", "/a b", "HTTP/1.1")
