"""Tiny MaxMind DB files for tests, built with ``mmdb-writer``.

The default dataset covers only documentation/TEST-NET ranges, so sample logs can use
addresses that are guaranteed not to belong to anyone:

========================  =======  ==================  ===============  =====
network                   country  region              city             ASN
========================  =======  ==================  ===============  =====
192.0.2.0/25              DE       Berlin              Berlin           64496
192.0.2.128/25            DE       Bavaria             Munich           64496
198.51.100.0/24           US       California          San Francisco    64497
203.0.113.0/24            JP       Tokyo               Tokyo            64498
2001:db8::/33             FR       Île-de-France       Paris            64499
2001:db8:8000::/34        GB       England             London           64500
2001:db8:c000::/35        CH       (country only)      -                64501
2001:db8:e000::/35        NL       (registered only)   -                -
========================  =======  ==================  ===============  =====

City records also carry ``location`` (latitude, longitude, accuracy radius) and
``postal`` so tests can prove those never reach a :class:`~streams.enrich.geo.Geo`
(see :data:`SECRET_LATITUDES`).

Usage::

    dbs = default_test_dbs(tmp_path)          # {"city": ..., "country": ..., "asn": ...}
    geo = GeoLookup(**dbs)
    dbip = dbip_test_dbs(tmp_path)            # DB-IP Lite style, {"city": ..., "asn": ...}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from mmdb_writer import MMDBWriter
from netaddr import IPSet

__all__ = [
    "DEFAULT_ASN",
    "DEFAULT_CITY",
    "SAMPLE_IPS",
    "SECRET_LATITUDES",
    "build_asn_db",
    "build_city_db",
    "city_record",
    "dbip_test_dbs",
    "default_test_dbs",
]

_CONTINENTS: Final = {
    "EU": "Europe",
    "NA": "North America",
    "AS": "Asia",
    "SA": "South America",
}


def city_record(
    country: str,
    continent: str,
    *,
    region: str | None = None,
    region_code: str | None = None,
    city: str | None = None,
    timezone: str | None = None,
    lat: float | None = None,
    lon: float | None = None,
    postcode: str | None = None,
    style: str = "maxmind",
) -> dict[str, Any]:
    """A City record in GeoLite2 layout (``style="maxmind"``) or DB-IP Lite layout.

    DB-IP Lite records have no time zone, no geoname ids on city/subdivision, no
    ``registered_country`` and no postcode.
    """
    maxmind = style == "maxmind"
    rec: dict[str, Any] = {
        "continent": {"code": continent, "names": {"en": _CONTINENTS.get(continent, continent)}},
        "country": {"iso_code": country, "names": {"en": country}},
    }
    if maxmind:
        rec["continent"]["geoname_id"] = 6255148
        rec["country"]["geoname_id"] = 2921044
        rec["registered_country"] = {"iso_code": country, "names": {"en": country}}
    if region is not None:
        sub: dict[str, Any] = {"names": {"en": region}}
        if maxmind and region_code:
            sub["iso_code"] = region_code
        rec["subdivisions"] = [sub]
    if city is not None:
        rec["city"] = {"names": {"en": city}}
    if lat is not None and lon is not None:
        loc: dict[str, Any] = {"latitude": lat, "longitude": lon}
        if maxmind:
            loc["accuracy_radius"] = 20
            if timezone:
                loc["time_zone"] = timezone
        rec["location"] = loc
    elif maxmind and timezone:
        rec["location"] = {"time_zone": timezone}
    if maxmind and postcode:
        rec["postal"] = {"code": postcode}
    return rec


# (network, country, continent, region, region iso, city, tz, lat, lon, postcode, asn, org)
_ROWS: Final = (
    (
        "192.0.2.0/25",
        "DE",
        "EU",
        "Berlin",
        "BE",
        "Berlin",
        "Europe/Berlin",
        52.5244,
        13.4105,
        "10115",
        64496,
        "Example Carrier DE",
    ),
    (
        "192.0.2.128/25",
        "DE",
        "EU",
        "Bavaria",
        "BY",
        "Munich",
        "Europe/Berlin",
        48.1374,
        11.5755,
        "80331",
        64496,
        "Example Carrier DE",
    ),
    (
        "198.51.100.0/24",
        "US",
        "NA",
        "California",
        "CA",
        "San Francisco",
        "America/Los_Angeles",
        37.7749,
        -122.4194,
        "94103",
        64497,
        "Example Cloud US",
    ),
    (
        "203.0.113.0/24",
        "JP",
        "AS",
        "Tokyo",
        "13",
        "Tokyo",
        "Asia/Tokyo",
        35.6895,
        139.6917,
        "100-0001",
        64498,
        "Example Mobile JP",
    ),
    (
        "2001:db8::/33",
        "FR",
        "EU",
        "Île-de-France",
        "IDF",
        "Paris",
        "Europe/Paris",
        48.8534,
        2.3488,
        "75001",
        64499,
        "Example Fibre FR",
    ),
    (
        "2001:db8:8000::/34",
        "GB",
        "EU",
        "England",
        "ENG",
        "London",
        "Europe/London",
        51.5085,
        -0.1257,
        "EC1A",
        64500,
        "Example Broadband GB",
    ),
    (
        "2001:db8:c000::/35",
        "CH",
        "EU",
        None,
        None,
        None,
        "Europe/Zurich",
        None,
        None,
        None,
        64501,
        "Example Hosting CH",
    ),
)

SECRET_LATITUDES: Final = frozenset(r[7] for r in _ROWS if r[7] is not None) | frozenset(
    r[8] for r in _ROWS if r[8] is not None
)
"""All latitudes and longitudes stored in the default City db (must never leak)."""

DEFAULT_CITY: Final[Mapping[str, dict[str, Any]]] = {
    row[0]: city_record(
        row[1],
        row[2],
        region=row[3],
        region_code=row[4],
        city=row[5],
        timezone=row[6],
        lat=row[7],
        lon=row[8],
        postcode=row[9],
    )
    for row in _ROWS
} | {
    # Anycast-like block: no physical country, only the registered one.
    "2001:db8:e000::/35": {
        "continent": {"code": "EU", "names": {"en": "Europe"}},
        "registered_country": {"iso_code": "NL", "names": {"en": "Netherlands"}},
    },
}

DEFAULT_ASN: Final[Mapping[str, tuple[int, str]]] = {row[0]: (row[10], row[11]) for row in _ROWS}

SAMPLE_IPS: Final[Mapping[str, tuple[str | None, str | None, int | None]]] = {
    # address: (country, city, asn) expected from the default dataset
    "192.0.2.10": ("DE", "Berlin", 64496),
    "192.0.2.200": ("DE", "Munich", 64496),
    "198.51.100.23": ("US", "San Francisco", 64497),
    "203.0.113.77": ("JP", "Tokyo", 64498),
    "2001:db8::1": ("FR", "Paris", 64499),
    "2001:db8:1234::abcd": ("FR", "Paris", 64499),
    "2001:db8:8000::42": ("GB", "London", 64500),
    "2001:db8:c001::9": ("CH", None, 64501),
    "2001:db8:e000::5": ("NL", None, None),
    "::ffff:198.51.100.23": ("US", "San Francisco", 64497),
    "64:ff9b::cb00:714d": ("JP", "Tokyo", 64498),  # NAT64 of 203.0.113.77
    "2002:c000:020a::1": ("DE", "Berlin", 64496),  # 6to4 of 192.0.2.10
    "10.1.2.3": (None, None, None),
    "2001:db9::1": (None, None, None),
}
"""Addresses with the (country, city, asn) the default dbs give them."""


def _writer(database_type: str, description: str) -> MMDBWriter:
    return MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type=database_type,
        languages=["en"],
        description=description,
    )


def _write(writer: MMDBWriter, path: str | os.PathLike[str]) -> str:
    out = os.fspath(path)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tmp = out + ".tmp"
    writer.to_db_file(tmp)
    os.replace(tmp, out)  # atomic, like a real database update
    return out


def build_city_db(
    path: str | os.PathLike[str],
    networks: Mapping[str, Mapping[str, Any]],
    *,
    database_type: str = "GeoLite2-City",
) -> str:
    """Write a City (or Country) database mapping each CIDR to its record; return the path.

    IPv4 networks go into the IPv4 subtree of an IPv6 database, as MaxMind does.
    """
    writer = _writer(database_type, f"logfog test {database_type}")
    for cidr, record in networks.items():
        writer.insert_network(IPSet([cidr]), dict(record))
    return _write(writer, path)


def build_asn_db(
    path: str | os.PathLike[str],
    networks: Mapping[str, int | tuple[int, str]],
    *,
    database_type: str = "GeoLite2-ASN",
) -> str:
    """Write an ASN database: CIDR -> ASN or (ASN, organisation); return the path."""
    writer = _writer(database_type, f"logfog test {database_type}")
    for cidr, value in networks.items():
        asn, org = value if isinstance(value, tuple) else (value, f"AS{value}")
        writer.insert_network(
            IPSet([cidr]),
            {"autonomous_system_number": asn, "autonomous_system_organization": org},
        )
    return _write(writer, path)


def _country_only(rec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k in ("continent", "country", "registered_country")}


def default_test_dbs(tmp_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Build the default City, Country and ASN dbs (GeoLite2 style) under ``tmp_dir``.

    Returns ``{"city": path, "country": path, "asn": path}``, ready for
    ``GeoLookup(**dbs)`` or ``GeoLookup.from_config(dbs)``.
    """
    base = Path(tmp_dir)
    return {
        "city": build_city_db(base / "GeoLite2-City.mmdb", DEFAULT_CITY),
        "country": build_city_db(
            base / "GeoLite2-Country.mmdb",
            {cidr: _country_only(rec) for cidr, rec in DEFAULT_CITY.items()},
            database_type="GeoLite2-Country",
        ),
        "asn": build_asn_db(base / "GeoLite2-ASN.mmdb", DEFAULT_ASN),
    }


def dbip_test_dbs(tmp_dir: str | os.PathLike[str]) -> dict[str, str]:
    """The default dataset as DB-IP Lite files (``DBIP-City-Lite``, ``DBIP-ASN-Lite``).

    Returns ``{"city": path, "asn": path}``.
    """
    base = Path(tmp_dir)
    city = {
        row[0]: city_record(
            row[1], row[2], region=row[3], city=row[5], lat=row[7], lon=row[8], style="dbip"
        )
        for row in _ROWS
    }
    return {
        "city": build_city_db(base / "dbip-city-lite.mmdb", city, database_type="DBIP-City-Lite"),
        "asn": build_asn_db(
            base / "dbip-asn-lite.mmdb", DEFAULT_ASN, database_type="DBIP-ASN-Lite"
        ),
    }
