"""In-memory enrichment of the full client data, before any rule runs.

* :class:`~streams.enrich.geo.GeoLookup` -> :class:`~streams.enrich.geo.Geo`
  (``geo.*`` source fields), from the full IP address;
* :class:`~streams.enrich.agent.AgentParser` -> :class:`~streams.enrich.agent.Agent`
  (``agent.*`` source fields), from the User-Agent;
* :func:`~streams.enrich.language.primary_language` -> ``request.language``, from
  Accept-Language.

All three are cached, never raise on bad input, and return only coarse values.

>>> from streams.enrich import Agent, Geo, primary_language
>>> sorted(Geo.EMPTY.as_dict()) == sorted(GEO_SOURCES)
True
>>> primary_language("de-CH,de;q=0.9")
'de'
"""

from streams.enrich.agent import AGENT_SOURCES, Agent, AgentParser, device_class
from streams.enrich.geo import (
    BUILTIN_DBIP_CITY_LITE,
    GEO_SOURCES,
    Geo,
    GeoDatabaseError,
    GeoLookup,
)
from streams.enrich.language import primary_language

__all__ = [
    "AGENT_SOURCES",
    "BUILTIN_DBIP_CITY_LITE",
    "GEO_SOURCES",
    "Agent",
    "AgentParser",
    "Geo",
    "GeoDatabaseError",
    "GeoLookup",
    "device_class",
    "primary_language",
]
