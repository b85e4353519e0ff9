#!/usr/bin/env python3
"""Generate a realistic, synthetic web access log (deterministic for a given seed).

    python bench/generate.py -n 200000 --format combined --seed 1 -o out.log

Formats: ``combined`` (default), ``common``, ``vhost_combined``, ``nginx_main`` (nginx's
default ``main`` format, with ``$http_x_forwarded_for``) and ``json`` (nginx
``escape=json`` lines with the fields of ``tests/data/samples/nginx.json``).

What it models:

* a Zipf-like population of clients (``--clients``, default 5,000): a few heavy
  hitters, a long tail; about 20% IPv6; some IPv4-mapped (``::ffff:a.b.c.d``), 6to4,
  NAT64 and Teredo addresses; some ``ip:port`` / ``[v6]:port``; in ``nginx_main`` and
  ``json`` a share of requests arrives through a load balancer with an
  X-Forwarded-For chain. Each client keeps its user agent and Accept-Language;
* a few hundred distinct real-world user agents: desktop and mobile browsers, tablets,
  search engine and SEO bots, monitors, curl/wget/python-requests and friends;
* a shop: product pages and images drawn Zipf-like from a 50,000-item catalog, static
  assets with content hashes from the few deploys that are live at once (not a new
  hash per request); routes with numeric ids, UUIDs, hex/base64 tokens, emails (also
  ``%40``-encoded),
  JWTs, session ids (``;jsessionid=``, ``sid=``), signed-URL signatures, ``utm_*``,
  ``gclid``/``fbclid``/``msclkid``, password-reset and OAuth callback links; scanners
  probing ``/.env`` and ``/wp-login.php``; bots fetching ``robots.txt``;
* referrers: none, same site (full URLs, tokens included), search engines, social,
  webmail; statuses and byte counts that fit the route; ~``--rate`` requests per second
  (default 1,000) with exponential inter-arrival jitter, timestamps non-decreasing;
* ``--junk-rate``: that share of lines is junk: TLS handshakes sent to the HTTP port
  (logged escaped, as Apache does), ``"-"`` request lines, empty lines, truncated
  lines and raw non-UTF-8 bytes.

All addresses are random, not taken from any real log. 200k lines take a few seconds.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import ipaddress
import itertools
import json
import random
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, BinaryIO

try:
    import orjson

    def _dumps(obj: dict[str, Any]) -> str:
        return orjson.dumps(obj).decode()
except ImportError:  # pragma: no cover

    def _dumps(obj: dict[str, Any]) -> str:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


FORMATS = ("combined", "common", "vhost_combined", "nginx_main", "json")
DEFAULT_START = datetime(2024, 3, 4, 8, 0, 0, tzinfo=UTC)
TZ = timezone(timedelta(hours=1))  # logs are written in local time, +0100

# ---------------------------------------------------------------------------------------
# user agents


def _user_agents() -> list[tuple[str, float]]:
    """(user agent, weight): a few hundred distinct strings."""
    uas: list[tuple[str, float]] = []
    win = ["Windows NT 10.0; Win64; x64", "Windows NT 10.0; WOW64", "Windows NT 6.1; Win64; x64"]
    mac = [
        "Macintosh; Intel Mac OS X 10_15_7",
        "Macintosh; Intel Mac OS X 10_15_6",
        "Macintosh; Intel Mac OS X 14_4_1",
    ]
    lin = [
        "X11; Linux x86_64",
        "X11; Ubuntu; Linux x86_64",
        "X11; CrOS x86_64 15633.69.0",
        "X11; Fedora; Linux x86_64",
    ]
    for v in range(112, 126):
        w = 1.0 + (v - 112) * 0.6
        for plat in win + mac + lin[:1] + lin[2:3]:
            uas.append(
                (
                    f"Mozilla/5.0 ({plat}) AppleWebKit/537.36 (KHTML, like Gecko) "
                    f"Chrome/{v}.0.0.0 Safari/537.36",
                    w * (3 if "Windows" in plat else 1),
                )
            )
        uas.append(
            (
                f"Mozilla/5.0 ({win[0]}) AppleWebKit/537.36 (KHTML, like Gecko) "
                f"Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.{2000 + v}.{v % 90}",
                w,
            )
        )
        for plat in (win[0], mac[0], lin[0], lin[1], lin[3]):
            uas.append((f"Mozilla/5.0 ({plat}; rv:{v}.0) Gecko/20100101 Firefox/{v}.0", w * 0.4))
    phones = [
        "Pixel 8",
        "Pixel 7a",
        "SM-S918B",
        "SM-A546B",
        "SM-G991B",
        "K",
        "2201116SG",
        "CPH2487",
        "moto g(60)",
        "M2101K6G",
        "RMX3085",
        "22101316UG",
        "SM-A135F",
    ]
    tablets = ["SM-X710", "SM-T870", "SM-X200", "Lenovo TB-X606F", "Nokia T20", "KFTRWI"]
    for v in range(118, 126):
        for dev in phones:
            android = 14 if dev.startswith(("Pixel", "SM-S")) else 13 if v % 2 else 12
            uas.append(
                (
                    f"Mozilla/5.0 (Linux; Android {android}; {dev}) AppleWebKit/537.36 "
                    f"(KHTML, like Gecko) Chrome/{v}.0.0.0 Mobile Safari/537.36",
                    2.0,
                )
            )
        for dev in tablets:
            uas.append(
                (
                    f"Mozilla/5.0 (Linux; Android 13; {dev}) AppleWebKit/537.36 "
                    f"(KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
                    0.5,
                )
            )
        uas.append(
            (
                f"Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S918B) AppleWebKit/537.36 "
                f"(KHTML, like Gecko) SamsungBrowser/{v - 98}.0 Chrome/{v}.0.0.0 "
                f"Mobile Safari/537.36",
                1.0,
            )
        )
        uas.append((f"Mozilla/5.0 (Android 14; Mobile; rv:{v}.0) Gecko/{v}.0 Firefox/{v}.0", 0.4))
        uas.append(
            (
                f"Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP1A.240405.002; wv) "
                f"AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/{v}.0.6367.82 "
                f"Mobile Safari/537.36",
                0.6,
            )
        )
    for major, minor in itertools.product((15, 16, 17), range(0, 7)):
        ios = f"{major}_{minor}"
        for dev, w in (("iPhone; CPU iPhone OS", 4.0), ("iPad; CPU OS", 0.8)):
            uas.append(
                (
                    f"Mozilla/5.0 ({dev} {ios} like Mac OS X) AppleWebKit/605.1.15 "
                    f"(KHTML, like Gecko) Version/{major}.{minor} Mobile/15E148 "
                    f"Safari/604.1",
                    w,
                )
            )
        uas.append(
            (
                f"Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) "
                f"AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.88 "
                f"Mobile/15E148 Safari/604.1",
                0.6,
            )
        )
        uas.append(
            (
                f"Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) "
                f"AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 "
                f"Instagram 325.0.0.35.91",
                0.3,
            )
        )
        uas.append(
            (
                f"Mozilla/5.0 ({mac[minor % 3]}) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                f"Version/{major}.{minor} Safari/605.1.15",
                1.0,
            )
        )
    bots = [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, "
        "like Gecko) Chrome/124.0.6367.91 Mobile Safari/537.36 (compatible; Googlebot/2.1; "
        "+http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
        "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
        "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
        "Mozilla/5.0 (compatible; MJ12bot/v1.4.8; http://mj12bot.com/)",
        "Mozilla/5.0 (compatible; DotBot/1.2; +https://opensiteexplorer.org/dotbot)",
        "Mozilla/5.0 (compatible; PetalBot;+https://webmaster.petalsearch.com/site/petalbot)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
        "+https://openai.com/gptbot)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; "
        "+claudebot@anthropic.com)",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Twitterbot/1.0",
        "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
        "Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/120.0.6099.109 Safari/537.36",
    ]
    uas += [(b, 1.5) for b in bots]
    tools = [
        "curl/7.68.0",
        "curl/7.81.0",
        "curl/8.5.0",
        "curl/8.7.1",
        "Wget/1.20.3 (linux-gnu)",
        "Wget/1.21.4",
        "python-requests/2.28.1",
        "python-requests/2.31.0",
        "Python-urllib/3.11",
        "python-httpx/0.27.0",
        "Go-http-client/1.1",
        "Go-http-client/2.0",
        "okhttp/4.12.0",
        "Apache-HttpClient/4.5.14 (Java/17.0.8)",
        "PostmanRuntime/7.37.3",
        "axios/1.6.8",
        "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
        "Java/17.0.2",
        "libwww-perl/6.72",
        "Mozilla/5.0 zgrab/0.x",
    ]
    uas += [(t, 0.8) for t in tools]
    odd = [
        "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/4.0 Chrome/76.0.3809.146 TV Safari/537.36",
        "Mozilla/5.0 (PlayStation; PlayStation 5/2.26) AppleWebKit/605.1.15 (KHTML, like Gecko)",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; Xbox; Xbox One) AppleWebKit/537.36 (KHTML, "
        "like Gecko) Chrome/124.0.0.0 Safari/537.36 Edge/44.18363.8131",
        'Mozilla/5.0 (Windows NT 10.0; Win64; x64) "quoted" AppleWebKit/537.36',
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36 \\backslash",
        "Mozilla/5.0",
        "-",
        "",
    ]
    uas += [(o, 0.3) for o in odd]
    return uas


LANGUAGES = [
    ("en-US,en;q=0.9", 30),
    ("de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7", 14),
    ("de-CH,de;q=0.9,en;q=0.8", 3),
    ("fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7", 8),
    ("en-GB,en;q=0.9", 8),
    ("es-ES,es;q=0.9", 5),
    ("ja,en-US;q=0.9,en;q=0.8", 4),
    ("pt-BR,pt;q=0.9,en-US;q=0.8,en;q=0.7", 4),
    ("nl-NL,nl;q=0.9,en;q=0.8", 3),
    ("zh-CN,zh;q=0.9", 3),
    ("it-IT,it;q=0.9", 3),
    ("pl-PL,pl;q=0.9,en;q=0.8", 2),
    ("sv-SE,sv;q=0.9", 1),
    ("*", 1),
    ("-", 8),
    ("en", 3),
    ("gsw-CH,de;q=0.8", 0.2),
]

# ---------------------------------------------------------------------------------------
# clients

_V4_FIRST = [
    2,
    5,
    24,
    31,
    37,
    46,
    62,
    77,
    78,
    79,
    80,
    81,
    82,
    83,
    84,
    85,
    86,
    87,
    88,
    89,
    90,
    91,
    92,
    93,
    94,
    95,
    109,
    151,
    176,
    178,
    185,
    188,
    193,
    194,
    195,
    212,
    213,
    217,
    23,
    50,
    63,
    64,
    66,
    67,
    68,
    69,
    70,
    71,
    72,
    73,
    74,
    75,
    76,
    96,
    97,
    98,
    99,
    104,
    107,
    108,
    173,
    174,
    184,
    1,
    14,
    27,
    36,
    39,
    42,
    49,
    58,
    59,
    60,
    61,
    101,
    110,
    111,
    112,
    113,
    114,
    115,
    116,
    117,
    118,
    119,
    120,
    121,
    122,
    123,
    124,
    125,
    126,
    175,
    180,
    182,
    183,
    201,
    177,
    179,
    181,
    186,
    187,
    189,
    190,
    191,
    200,
    41,
    102,
    105,
    154,
    196,
    197,
]
_V6_PREFIXES = [
    0x2A00,
    0x2A01,
    0x2A02,
    0x2A03,
    0x2A04,
    0x2A05,
    0x2A06,
    0x2A0A,
    0x2001,
    0x2003,
    0x2600,
    0x2601,
    0x2602,
    0x2603,
    0x2604,
    0x2605,
    0x2606,
    0x2607,
    0x2400,
    0x2401,
    0x2402,
    0x2403,
    0x2404,
    0x2405,
    0x2406,
    0x2407,
    0x2408,
    0x2800,
    0x2801,
    0x2803,
    0x2804,
    0x2C0F,
]


def _v4(rng: random.Random) -> str:
    return (
        f"{rng.choice(_V4_FIRST)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    )


def _v6(rng: random.Random) -> str:
    prefix = rng.choice(_V6_PREFIXES)
    # in 2001::/16 stay out of 2001:0::/32 (Teredo) and 2001:db8::/32 (documentation)
    second = rng.randrange(0x0400, 0x4000) if prefix == 0x2001 else rng.randrange(0x10000)
    hi = (prefix << 112) | (second << 96) | (rng.getrandbits(32) << 64)
    low = rng.getrandbits(64) if rng.random() < 0.8 else rng.randrange(1, 0x100)  # SLAAC/static
    return str(ipaddress.IPv6Address(hi | low))


def _client_ip(rng: random.Random, v6_share: float) -> str:
    r = rng.random()
    if r < v6_share:
        return _v6(rng)
    r = rng.random()
    v4 = _v4(rng)
    if r < 0.03:
        return "::ffff:" + v4
    if r < 0.04:  # 6to4
        a = ipaddress.IPv4Address(v4).packed
        return str(ipaddress.IPv6Address(b"\x20\x02" + a + rng.randbytes(10)))
    if r < 0.05:  # NAT64 well-known prefix
        return str(ipaddress.IPv6Address((0x64FF9B << 96) | int(ipaddress.IPv4Address(v4))))
    if r < 0.053:  # Teredo (server 65.54.227.120, obfuscated client)
        client = int(ipaddress.IPv4Address(v4)) ^ 0xFFFFFFFF
        value = (
            (0x20010000 << 96)
            | (0x4136E378 << 64)
            | (0x8000 << 48)
            | (rng.getrandbits(16) << 32)
            | client
        )
        return str(ipaddress.IPv6Address(value))
    return v4


class Client:
    __slots__ = ("addr", "is_bot", "lang", "ua")

    def __init__(self, addr: str, ua: str, lang: str, is_bot: bool) -> None:
        self.addr = addr
        self.ua = ua
        self.lang = lang
        self.is_bot = is_bot


_BOT_MARKERS = (
    "bot",
    "spider",
    "crawl",
    "curl",
    "wget",
    "python",
    "go-http",
    "java",
    "headless",
    "http",
    "uptime",
    "pingdom",
    "zgrab",
    "facebookexternalhit",
    "perl",
    "axios",
    "fetch",
    "postman",
)


def _clients(rng: random.Random, n: int, v6_share: float) -> list[Client]:
    uas = _user_agents()
    ua_strings = [u for u, _ in uas]
    ua_cum = list(itertools.accumulate(w for _, w in uas))
    langs = [lang for lang, _ in LANGUAGES]
    lang_cum = list(itertools.accumulate(w for _, w in LANGUAGES))
    out = []
    for _ in range(n):
        ua = rng.choices(ua_strings, cum_weights=ua_cum)[0]
        low = ua.lower()
        is_bot = any(m in low for m in _BOT_MARKERS)
        lang = "-" if is_bot and rng.random() < 0.8 else rng.choices(langs, cum_weights=lang_cum)[0]
        out.append(Client(_client_ip(rng, v6_share), ua, lang, is_bot))
    return out


# ---------------------------------------------------------------------------------------
# routes

WORDS = [
    "shoes",
    "red dress",
    "laptop",
    "garden chair",
    "coffee",
    "münchen",
    "gift card",
    "rain jacket",
    "usb-c cable",
    "headphones",
    "desk",
    '"quoted"',
    "a&b",
    "50%",
]
FIRST = [
    "anna",
    "ben",
    "chris",
    "dana",
    "emil",
    "fatima",
    "george",
    "hana",
    "ivan",
    "julia",
    "kemal",
    "lena",
    "mehmet",
    "nora",
    "omar",
    "paula",
]
LAST = ["schmidt", "miller", "dupont", "rossi", "tanaka", "kowalski", "jansen", "garcia"]
MAIL = ["example.com", "example.org", "example.net", "mail.example", "test.example"]
SLUGS = [
    "spring-sale",
    "how-to-choose-running-shoes",
    "release-notes-4-2",
    "about-us",
    "privacy-policy",
    "careers",
    "store-locator",
    "gift-guide-2024",
]


# A shop's catalog and its front-end build: product pages are popular by a Zipf law
# over a finite catalog, and static assets carry content hashes that change per deploy
# (a few deploys are live at once while caches and open tabs catch up), not per request.
CATALOG_SIZE = 50_000
LIVE_DEPLOYS = 3
JS_CHUNKS = 24
CSS_FILES = 6


class Gen:
    """Random pieces of URLs, all drawn from one seeded RNG."""

    def __init__(self, rng: random.Random) -> None:
        self.r = rng
        self._catalog = [str(rng.randrange(1, 2_000_000)) for _ in range(CATALOG_SIZE)]
        self._catalog_cum = list(
            itertools.accumulate(1.0 / (k**0.9) for k in range(1, CATALOG_SIZE + 1))
        )
        deploys = [
            {
                "js": [f"{name}.{rng.getrandbits(32):08x}.js" for name in _chunk_names()],
                "css": [f"main.{rng.getrandbits(32):08x}.css" for _ in range(CSS_FILES)],
            }
            for _ in range(LIVE_DEPLOYS)
        ]
        self._deploys = deploys

    def product(self) -> str:
        """A catalog product id, popular ones far more often (Zipf)."""
        cum = self._catalog_cum
        i = bisect.bisect_left(cum, self.r.random() * cum[-1])
        return self._catalog[min(i, CATALOG_SIZE - 1)]

    def size(self) -> int:
        return self.r.randrange(36, 46)

    def photo(self) -> int:
        return self.r.randrange(1, 6)

    def asset(self, kind: str) -> str:
        """A content-hashed static file of a live deploy (the newest is the commonest)."""
        deploy = self._deploys[0 if self.r.random() < 0.85 else self.r.randrange(LIVE_DEPLOYS)]
        return self.r.choice(deploy[kind])

    def id(self) -> str:
        return str(self.r.randrange(1, 2_000_000))

    def uuid(self) -> str:
        h = f"{self.r.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def hex(self, n: int) -> str:
        return f"{self.r.getrandbits(4 * n):0{n}x}"

    def token(self) -> str:
        return base64.urlsafe_b64encode(self.r.randbytes(24)).decode().rstrip("=")

    def email(self, encoded: bool = False) -> str:
        r = self.r
        at = "%40" if encoded else "@"
        return f"{r.choice(FIRST)}.{r.choice(LAST)}{r.randrange(100)}{at}{r.choice(MAIL)}"

    def jwt(self) -> str:
        def b(x: bytes) -> str:
            return base64.urlsafe_b64encode(x).decode().rstrip("=")

        body = b(f'{{"sub":"{self.id()}","iat":{1709500000 + self.r.randrange(10**5)}}}'.encode())
        return f"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{body}.{b(self.r.randbytes(32))}"

    def word(self) -> str:
        w = self.r.choice(WORDS)
        return (
            w.replace(" ", "+").replace("&", "%26").replace("%", "%25")
            if '"' not in w
            else w.replace(" ", "+")
        )

    def utm(self) -> str:
        r = self.r
        src, med = r.choice(
            [
                ("newsletter", "email"),
                ("google", "cpc"),
                ("facebook", "social"),
                ("partner", "referral"),
                ("instagram", "story"),
            ]
        )
        camp = r.choice(["spring_sale", "brand", "retargeting", "launch-2024"])
        return f"utm_source={src}&utm_medium={med}&utm_campaign={camp}"


def _chunk_names() -> list[str]:
    return ["app", "vendor", "runtime", *(f"chunk-{i}" for i in range(JS_CHUNKS - 3))]


def _routes() -> list[tuple[str, str, float, Callable[[Gen], str]]]:
    """(method, kind, weight, path builder). kind drives status and size."""
    return [
        ("GET", "page", 12, lambda g: "/"),
        ("GET", "page", 6, lambda g: f"/products/{g.product()}"),
        ("GET", "page", 3, lambda g: f"/products/{g.product()}?color=red&size={g.size()}"),
        ("GET", "page", 4, lambda g: f"/search?q={g.word()}&page={g.r.randrange(1, 6)}"),
        ("GET", "page", 3, lambda g: f"/blog/{g.r.choice(SLUGS)}"),
        ("GET", "page", 2.5, lambda g: f"/blog/{g.r.choice(SLUGS)}?{g.utm()}"),
        ("GET", "page", 1.5, lambda g: f"/?gclid={g.token()}"),
        ("GET", "page", 0.8, lambda g: f"/landing/spring?fbclid={g.token()}&{g.utm()}"),
        ("GET", "page", 0.4, lambda g: f"/landing/spring?msclkid={g.hex(32)}"),
        ("GET", "static", 14, lambda g: f"/static/js/{g.asset('js')}"),
        ("GET", "static", 10, lambda g: f"/static/css/{g.asset('css')}"),
        ("GET", "static", 12, lambda g: f"/images/products/{g.product()}-{g.photo()}.webp"),
        ("GET", "static", 3, lambda g: "/favicon.ico"),
        ("GET", "api", 6, lambda g: f"/api/v1/users/{g.id()}/orders/{g.uuid()}"),
        ("GET", "api", 4, lambda g: f"/api/v1/cart?session_id={g.hex(32)}"),
        ("POST", "api", 3, lambda g: "/api/v1/events"),
        ("GET", "api", 1, lambda g: f"/api/v1/me?access_token={g.jwt()}"),
        ("POST", "login", 1.5, lambda g: "/login"),
        ("GET", "page", 1, lambda g: "/login?next=%2Faccount%2Forders"),
        ("GET", "page", 0.6, lambda g: f"/reset-password?token={g.token()}&email={g.email(True)}"),
        ("GET", "page", 0.3, lambda g: f"/account/verify/{g.hex(40)}"),
        ("GET", "page", 0.3, lambda g: f"/u/{g.email()}/profile"),
        ("GET", "page", 0.4, lambda g: f"/cart;jsessionid={g.hex(32).upper()}"),
        ("GET", "page", 0.4, lambda g: f"/oauth/callback?code={g.token()}&state={g.hex(16)}"),
        (
            "GET",
            "download",
            0.6,
            lambda g: (
                f"/download/{g.uuid()}.pdf?X-Amz-Algorithm=AWS4-HMAC"
                f"-SHA256&X-Amz-Expires=3600&X-Amz-Signature={g.hex(64)}"
            ),
        ),
        ("HEAD", "page", 0.5, lambda g: "/"),
        ("GET", "health", 2, lambda g: "/healthz"),
        ("GET", "missing", 1, lambda g: f"/products/{g.product()}/reviews/{g.id()}"),
        ("GET", "missing", 0.3, lambda g: "/apple-touch-icon.png"),
    ]


BOT_ROUTES: list[tuple[str, str, float, Callable[[Gen], str]]] = [
    ("GET", "robots", 3, lambda g: "/robots.txt"),
    ("GET", "page", 2, lambda g: "/sitemap.xml"),
    ("GET", "scan", 0.6, lambda g: "/.env"),
    ("GET", "scan", 0.5, lambda g: "/wp-login.php"),
    ("POST", "scan", 0.3, lambda g: "/xmlrpc.php"),
    ("GET", "scan", 0.3, lambda g: "/.git/config"),
    ("GET", "scan", 0.2, lambda g: "/cgi-bin/luci/;stok=/locale?form=country"),
]

# kind -> (status choices, cum weights), (median bytes)
STATUS: dict[str, tuple[list[int], list[float], int]] = {
    "page": ([200, 304, 301, 302, 404, 500, 503], [82, 90, 92, 95, 98.5, 99.7, 100], 24_000),
    "static": ([200, 304, 404], [70, 99, 100], 48_000),
    "api": (
        [200, 201, 204, 400, 401, 403, 404, 429, 500, 502],
        [80, 84, 88, 91, 94, 95, 97, 98, 99.5, 100],
        1_800,
    ),
    "login": ([302, 200, 401, 429], [60, 80, 98, 100], 600),
    "download": ([200, 206, 403], [85, 95, 100], 900_000),
    "health": ([200], [100], 15),
    "missing": ([404], [100], 3_100),
    "robots": ([200, 304], [90, 100], 420),
    "scan": ([404, 403, 400], [85, 97, 100], 300),
}

SITE = "https://www.example.com"
HOSTS = ["www.example.com", "shop.example.com", "api.example.com", "static.example.com"]


def _referrer(rng: random.Random, g: Gen, path_of: Callable[[], str]) -> str:
    r = rng.random()
    if r < 0.38:
        return "-"
    if r < 0.72:
        return SITE + path_of()
    if r < 0.84:
        return rng.choice(
            [
                "https://www.google.com/",
                "https://www.google.de/",
                "https://www.bing.com/",
                f"https://www.bing.com/search?q={g.word()}&form=QBLH",
                "https://duckduckgo.com/",
                "https://www.ecosia.org/",
                f"https://www.google.com/search?q={g.word()}&client=firefox-b-d",
            ]
        )
    if r < 0.94:
        return rng.choice(
            [
                "https://t.co/" + g.token()[:10],
                "https://l.facebook.com/l.php?u=https%3A%2F%2F"
                f"www.example.com%2F&h={g.token()[:20]}",
                "https://www.linkedin.com/",
                "android-app://com.google.android.gm/",
                "https://www.reddit.com/r/example/",
                "https://out.reddit.com/t3_" + g.hex(6) + "?url=https%3A%2F%2Fwww.example.com",
                "https://news.ycombinator.com/",
            ]
        )
    return rng.choice(
        [
            f"https://mail.example.net/mail/u/0/?ik={g.hex(10)}#inbox/{g.hex(16)}",
            f"https://partner.example.org/click?uid={g.id()}&email={g.email(True)}",
            "http://localhost:3000/",
            f"https://staging.example.com/preview?token={g.token()}",
        ]
    )


# ---------------------------------------------------------------------------------------
# formatting


def _esc(s: str) -> str:
    """Apache/nginx text-log escaping of a quoted field."""
    if "\\" in s or '"' in s:
        s = s.replace("\\", "\\\\").replace('"', '\\"')
    return s


def _quoted(s: str) -> str:
    return _esc(s) if s else "-"


class TimeFmt:
    """Cache of formatted timestamps per second (about 1,000 lines share each)."""

    def __init__(self) -> None:
        self.sec = -1
        self.clf = ""
        self.iso = ""

    def set(self, t: float) -> None:
        sec = int(t)
        if sec != self.sec:
            d = datetime.fromtimestamp(sec, TZ)
            self.sec = sec
            self.clf = d.strftime("%d/%b/%Y:%H:%M:%S %z")
            self.iso = d.isoformat()


JUNK_REQUESTS = [
    "\\x16\\x03\\x01\\x02\\x00\\x01\\x00\\x01\\xfc\\x03\\x03\\x8a\\xd3",
    "\\x16\\x03\\x01\\x00\\xee\\x01\\x00\\x00\\xea\\x03\\x03",
    "SSH-2.0-Go",
    "-",
    "GET /\\x00\\xff HTTP/1.1",
    "MGLNDD_203.0.113.9_443",
]


def generate(
    n: int,
    fmt: str = "combined",
    seed: int = 1,
    clients: int = 5000,
    v6_share: float = 0.2,
    rate: float = 1000.0,
    junk_rate: float = 0.0,
    start: datetime = DEFAULT_START,
) -> Iterator[str]:
    """Yield ``n`` log lines (without newline). Junk bytes are surrogate-escaped."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    rng = random.Random(seed)
    g = Gen(rng)
    population = _clients(rng, clients, v6_share)
    # Zipf-like popularity: the k-th client (in random order) has weight 1/k^0.9
    zipf_cum = list(itertools.accumulate(1.0 / (k**0.9) for k in range(1, clients + 1)))
    routes = _routes()
    route_cum = list(itertools.accumulate(w for *_, w, _ in routes))
    bot_routes = routes + BOT_ROUTES
    bot_cum = list(
        itertools.accumulate(
            w * (0.4 if i < len(routes) else 4) for i, (*_, w, _) in enumerate(bot_routes)
        )
    )
    page_routes = [r for r in routes if r[1] == "page"]

    def same_site_path() -> str:
        return page_routes[rng.randrange(len(page_routes))][3](g)

    tf = TimeFmt()
    t = start.timestamp()
    lb = [f"10.0.{i}.{j}" for i in range(2) for j in range(2, 6)]
    total = zipf_cum[-1]
    choices_idx = bisect.bisect_left
    random_ = rng.random
    expovariate = rng.expovariate
    for _ in range(n):
        t += expovariate(rate)
        tf.set(t)
        c = population[min(choices_idx(zipf_cum, random_() * total), clients - 1)]
        if junk_rate and random_() < junk_rate:
            yield _junk(rng, c.addr, tf, fmt)
            continue
        if c.is_bot:
            method, kind, _, build = bot_routes[choices_idx(bot_cum, random_() * bot_cum[-1])]
        else:
            method, kind, _, build = routes[choices_idx(route_cum, random_() * route_cum[-1])]
        path = build(g)
        proto = "HTTP/2.0" if random_() < 0.55 else "HTTP/1.1"
        statuses, scum, median = STATUS[kind]
        status = statuses[choices_idx(scum, random_() * 100)]
        if status in (304, 204) or method == "HEAD":
            size = 0
        elif status >= 300:
            size = int(rng.lognormvariate(0, 0.4) * (180 if status < 400 else 1200))
        else:
            size = int(rng.lognormvariate(0, 0.9) * median)
        ref = "-" if c.is_bot else _referrer(rng, g, same_site_path)
        addr = c.addr
        r = random_()
        if r < 0.015:
            addr = (
                f"{addr}:{rng.randrange(1024, 65536)}"
                if ":" not in addr
                else f"[{addr}]:{rng.randrange(1024, 65536)}"
            )
        request = f"{method} {path} {proto}"
        host = HOSTS[0] if random_() < 0.7 else rng.choice(HOSTS)
        if fmt == "combined":
            yield (
                f'{addr} - - [{tf.clf}] "{_esc(request)}" {status} {size} '
                f'"{_quoted(ref)}" "{_quoted(c.ua)}"'
            )
        elif fmt == "common":
            user = "-" if random_() > 0.01 else rng.choice(FIRST)
            yield f'{addr} - {user} [{tf.clf}] "{_esc(request)}" {status} {size or "-"}'
        elif fmt == "vhost_combined":
            yield (
                f'{host}:443 {addr} - - [{tf.clf}] "{_esc(request)}" {status} {size} '
                f'"{_quoted(ref)}" "{_quoted(c.ua)}"'
            )
        else:
            xff = "-"
            if random_() < 0.3:  # through the load balancer
                xff = c.addr if random_() < 0.8 else f"{c.addr}, {_v4(rng)}"
                addr = lb[rng.randrange(len(lb))]
            if fmt == "nginx_main":
                yield (
                    f'{addr} - - [{tf.clf}] "{_esc(request)}" {status} {size} '
                    f'"{_quoted(ref)}" "{_quoted(c.ua)}" "{_quoted(xff)}"'
                )
            else:
                yield _dumps(
                    {
                        "remote_addr": addr,
                        "time_iso8601": tf.iso,
                        "request": request,
                        "status": str(status),
                        "body_bytes_sent": str(size),
                        "request_time": f"{rng.lognormvariate(-3.5, 1.0):.3f}",
                        "http_referer": "" if ref == "-" else ref,
                        "http_user_agent": "" if c.ua == "-" else c.ua,
                        "http_accept_language": "" if c.lang == "-" else c.lang,
                        "http_x_forwarded_for": "" if xff == "-" else xff,
                        "host": host,
                    }
                )


def _junk(rng: random.Random, addr: str, tf: TimeFmt, fmt: str) -> str:
    r = rng.random()
    if r < 0.45:  # a TLS handshake or other non-HTTP bytes on the HTTP port: status 400
        req = rng.choice(JUNK_REQUESTS)
        if fmt == "json":
            return _dumps(
                {
                    "remote_addr": addr,
                    "time_iso8601": tf.iso,
                    "request": req,
                    "status": "400",
                    "body_bytes_sent": "0",
                    "host": "",
                }
            )
        prefix = "www.example.com:443 " if fmt == "vhost_combined" else ""
        tail = {"common": "", "nginx_main": ' "-" "-" "-"'}.get(fmt, ' "-" "-"')
        return f'{prefix}{addr} - - [{tf.clf}] "{req}" 400 {"-" if fmt == "common" else 0}{tail}'
    if r < 0.6:
        return ""
    if r < 0.8:  # truncated line (e.g. disk full, rotated mid-write)
        line = f'{addr} - - [{tf.clf}] "GET /products/{rng.randrange(10**6)} HTTP/1.1" 200 5123 "'
        return line[: rng.randrange(5, len(line))]
    # raw bytes that are not UTF-8, carried as surrogate escapes
    raw = bytes(rng.randrange(128, 256) for _ in range(rng.randrange(4, 40)))
    return raw.decode("utf-8", "surrogateescape")


def write(lines: Iterator[str], out: BinaryIO, chunk: int = 5000) -> int:
    count = 0
    buf: list[str] = []
    for line in lines:
        buf.append(line)
        if len(buf) >= chunk:
            out.write(("\n".join(buf) + "\n").encode("utf-8", "surrogateescape"))
            count += len(buf)
            buf.clear()
    if buf:
        out.write(("\n".join(buf) + "\n").encode("utf-8", "surrogateescape"))
        count += len(buf)
    return count


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("-n", "--lines", type=int, default=100_000, help="number of lines")
    ap.add_argument("--format", choices=FORMATS, default="combined")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("-o", "--output", default="-", help="output file ('-' = stdout)")
    ap.add_argument("--clients", type=int, default=5000, help="distinct clients")
    ap.add_argument("--ipv6-share", type=float, default=0.2)
    ap.add_argument("--rate", type=float, default=1000.0, help="mean requests per second")
    ap.add_argument("--junk-rate", type=float, default=0.0, help="share of junk lines, 0..1")
    ap.add_argument(
        "--start",
        default=DEFAULT_START.isoformat(),
        help="first timestamp, ISO 8601 (default %(default)s)",
    )
    args = ap.parse_args(argv)
    if not 0 <= args.junk_rate <= 1 or not 0 <= args.ipv6_share <= 1:
        ap.error("--junk-rate and --ipv6-share must be between 0 and 1")
    if args.clients < 1 or args.rate <= 0 or args.lines < 0:
        ap.error("--clients, --rate must be positive and -n non-negative")
    start = datetime.fromisoformat(args.start)
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    began = time.perf_counter()
    lines = generate(
        args.lines,
        args.format,
        args.seed,
        args.clients,
        args.ipv6_share,
        args.rate,
        args.junk_rate,
        start,
    )
    if args.output == "-":
        count = write(lines, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        with open(args.output, "wb") as f:
            count = write(lines, f)
    print(f"{count} lines ({args.format}) in {time.perf_counter() - began:.2f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
