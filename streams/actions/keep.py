"""``keep``: publish the source value unchanged.

Allowed on any non-sensitive field (status, method, country, browser family...). On a
sensitive field (client IP, user agent, URL, referrer, cookie, user) it is refused
unless the rule says ``unsafe: true``, and then logged at startup.

>>> SPEC.build({}, BuildContext())("DE")
'DE'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.actions.base import ActionSpec, BuildContext, Transform


def _identity(value: Any) -> Any:
    return value


def build(options: Mapping[str, Any], context: BuildContext) -> Transform:
    return _identity


SPEC = ActionSpec(name="keep", doc="Publish the value as it is.", options=(), build=build)
