"""The source fields a rule may read (``from:``), what they hold and how sensitive they are.

Parsed fields come from the :class:`~streams.records.Request`; enriched fields are
derived in memory from the full IP and user agent before any rule runs.

``SENSITIVE`` fields identify people or carry free text from the client. They may only
be published through an action that transforms them (truncate, pseudonymize, policy);
``keep`` on one of them needs ``unsafe: true`` on the rule, which is logged at startup.

>>> "client.ip" in SENSITIVE
True
>>> SOURCES["geo.country"].doc
'ISO 3166-1 alpha-2 country code'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    kind: str  # "str" | "int" | "float" | "bool" | "time" | "ip"
    doc: str
    sensitive: bool = False
    enriched: bool = False


_ALL: Final = (
    Source("client.ip", "ip", "full client address (after port/XFF handling)", sensitive=True),
    Source("request.time", "time", "request time, UTC"),
    Source("request.method", "str", "HTTP method"),
    Source("request.target", "str", "request target: path, query, fragment", sensitive=True),
    Source("request.protocol", "str", "HTTP protocol version"),
    Source("request.host", "str", "virtual host / Host header", sensitive=False),
    Source("request.referrer", "str", "Referer header", sensitive=True),
    Source("request.cookie", "str", "Cookie header or a named cookie", sensitive=True),
    Source("user.name", "str", "authenticated user (%u)", sensitive=True),
    Source("agent.original", "str", "full User-Agent string", sensitive=True),
    Source("response.status", "int", "HTTP status code"),
    Source("response.bytes", "int", "response size in bytes"),
    Source("response.duration_ms", "float", "time taken, milliseconds"),
    Source("request.language", "str", "primary Accept-Language subtag", enriched=True),
    Source("agent.browser", "str", "browser family", enriched=True),
    Source("agent.browser_major", "str", "browser major version", enriched=True),
    Source("agent.os", "str", "operating system family", enriched=True),
    Source("agent.os_major", "str", "operating system major version", enriched=True),
    Source("agent.device", "str", "device class: desktop|mobile|tablet|bot|other", enriched=True),
    Source("agent.is_bot", "bool", "crawler/bot flag", enriched=True),
    Source("geo.country", "str", "ISO 3166-1 alpha-2 country code", enriched=True),
    Source("geo.continent", "str", "continent code", enriched=True),
    Source("geo.region", "str", "first-level subdivision name", enriched=True),
    Source("geo.city", "str", "city name", enriched=True),
    Source("geo.timezone", "str", "IANA time zone", enriched=True),
    Source("geo.asn", "int", "autonomous system number", enriched=True),
)

SOURCES: Final = {s.name: s for s in _ALL}
SENSITIVE: Final = frozenset(s.name for s in _ALL if s.sensitive)

#: Published only in buckets (rule 8): ``coarsen_time`` enforces the floors; ``drop``
#: and ``pseudonymize`` (a keyed hash, no time value) publish none of it.
BUCKETED: Final = frozenset({"request.time"})
BUCKETED_ACTIONS: Final = frozenset({"coarsen_time", "drop", "pseudonymize"})

#: Kept out of analytics destinations (rule 4), with the reason. The region and the city
#: may reach analytics only through the k-gated aggregates, or generalized to the country.
#: A field a rule publishes in place of its source (``generalize ... to: region``) counts.
NOT_IN_ANALYTICS: Final = {
    "geo.asn": "never the ASN in analytics (rule 4)",
    "geo.city": "the city only through the k-gated aggregates, where every cell holds at "
    "least k visitors (rule 4)",
    # A first-level subdivision can be small (Appenzell Innerrhoden, ~16k people), and
    # DB-IP names districts as regions in some countries.
    "geo.region": "the region only through the k-gated aggregates, where every cell holds "
    "at least k visitors (rule 4)",
    # Some IANA zones name one town (Europe/Busingen, America/North_Dakota/Beulah).
    "geo.timezone": "some time zones name one town, as fine as the city (rule 4)",
}
