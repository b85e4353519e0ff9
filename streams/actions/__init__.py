"""Field actions, one module each; ``REGISTRY`` maps a rule's ``action:`` to its spec.

>>> sorted(REGISTRY)[:4]
['coarsen_time', 'drop', 'generalize', 'keep']
"""

from __future__ import annotations

from streams.actions import (
    coarsen_time,
    drop,
    generalize,
    keep,
    pseudonymize,
    referrer_policy,
    truncate_ip,
    url_policy,
)
from streams.actions.base import ActionSpec

REGISTRY: dict[str, ActionSpec] = {
    module.SPEC.name: module.SPEC
    for module in (
        keep, drop, truncate_ip, pseudonymize, coarsen_time, url_policy, referrer_policy,
        generalize,
    )
}  # fmt: skip

__all__ = ["REGISTRY", "ActionSpec"]
