"""Emails written with look-alikes of "." and "@" are templated and detected.

IDNA (and so browsers and mail clients) read U+3002 / U+FF0E / U+FF61 as ".", and NFKC
reads U+FF20 as "@". The email checks knew only ASCII "." and "@", and kept path
segments are published as they came, so such a mailbox went out (an audit). Synthetic
address; nothing raw is printed.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.detect import find_leak

LOCAL = "jane.roe"
CASES = {
    "ideographic full stop (U+3002), ASCII @": f"/account/{LOCAL}@gmail%E3%80%82com/settings",
    "fullwidth full stop (U+FF0E), ASCII @": f"/account/{LOCAL}@gmail%EF%BC%8Ecom/settings",
    "fullwidth @ (U+FF20)": f"/account/{LOCAL}%EF%BC%A0gmail.com/settings",
    "ideographic full stop, raw UTF-8": f"/account/{LOCAL}@gmail\u3002com/settings",
}


def test_detector_flags_an_idna_dotted_email() -> None:
    dotted = find_leak(f"{LOCAL}@gmail\u3002com") == "email"
    fullwidth_at = find_leak(f"{LOCAL}\uff20gmail.com") == "email"
    assert dotted, "IDNA-dotted email not flagged"
    assert fullwidth_at, "fullwidth-@ email not flagged"


@pytest.mark.parametrize("case", list(CASES))
def test_lookalike_email_in_path_never_published(make_pipeline: Any, case: str) -> None:
    pipeline = make_pipeline()
    target = CASES[case]
    line = (
        f'198.51.100.7 - - [10/Oct/2000:13:55:36 -0700] "GET {target} HTTP/1.1" 200 5 '
        '"-" "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"'
    )
    out = pipeline.test([line])
    assert not out.rejections
    for name in ("ops", "product"):
        event = orjson.loads(out.per_destination[pipeline.names.index(name)][0][1])
        published = event["route" if name == "ops" else "page"] or ""
        leaked = LOCAL in published
        assert not leaked, f"mailbox published in {name}"
