"""``drop``: name a field only to say it is never published.

Output is default-deny already; ``drop`` documents intent in the config
(``cookie: {from: request.cookie, action: drop}``) and makes the field absent.

>>> SPEC.build({}, BuildContext())("session=abc") is DROPPED
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.actions.base import ActionSpec, BuildContext, Transform

#: Marker the rules compiler recognises: a dropped field is not emitted at all.
DROPPED: Any = object()


def build(options: Mapping[str, Any], context: BuildContext) -> Transform:
    return lambda value: DROPPED


SPEC = ActionSpec(name="drop", doc="Never publish this field.", options=(), build=build)
