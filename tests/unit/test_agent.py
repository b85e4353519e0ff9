"""AgentParser: coarse browser/OS/device/bot view of a User-Agent, never the string."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.enrich.agent import (
    AGENT_SOURCES,
    DEVICE_CLASSES,
    MAX_UA_LENGTH,
    Agent,
    AgentParser,
    device_class,
)
from streams.fields import SOURCES
from tests.support.memory import BIG, CHROME, retained

CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.91 Safari/537.36"
)


@pytest.fixture(scope="module")
def parser() -> AgentParser:
    return AgentParser(cache_size=1024)


# (ua, browser, browser_major, os, os_major, device, is_bot)
CASES = [
    (CHROME_WIN, "Chrome", "124", "Windows", "10", "desktop", False),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
        "Edge",
        "124",
        "Windows",
        "10",
        "desktop",
        False,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Firefox",
        "125",
        "Windows",
        "10",
        "desktop",
        False,
    ),
    (
        "Mozilla/5.0 (Windows NT 5.1) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/49.0.2623.112 Safari/537.36",
        "Chrome",
        "49",
        "Windows",
        None,
        "desktop",
        False,
    ),  # "XP" is not a digit version
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/17.4 Safari/605.1.15",
        "Safari",
        "17",
        "Mac OS X",
        "10",
        "desktop",
        False,
    ),
    (
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Firefox",
        "125",
        "Ubuntu",
        None,
        "desktop",
        False,
    ),
    (
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "Chrome",
        "124",
        "Chrome OS",
        "14541",
        "desktop",
        False,
    ),
    (
        "Mozilla/5.0 (X11; FreeBSD amd64; rv:124.0) Gecko/20100101 Firefox/124.0",
        "Firefox",
        "124",
        "FreeBSD",
        None,
        "desktop",
        False,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "Mobile Safari",
        "17",
        "iOS",
        "17",
        "mobile",
        False,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
        "Chrome Mobile iOS",
        "124",
        "iOS",
        "17",
        "mobile",
        False,
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Mobile Safari/537.36",
        "Chrome Mobile",
        "124",
        "Android",
        "14",
        "mobile",
        False,
    ),
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Mobile Safari/537.36",
        "Chrome Mobile",
        "124",
        "Android",
        "10",
        "mobile",
        False,
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like "
        "Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
        "Samsung Internet",
        "24",
        "Android",
        "13",
        "mobile",
        False,
    ),
    (
        "Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0",
        "Firefox Mobile",
        "125",
        "Android",
        "14",
        "mobile",
        False,
    ),
    (
        "Mozilla/5.0 (Linux; Android 11; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Mobile Safari/537.36",  # "CUBOT" is a phone brand, not a bot
        "Chrome Mobile",
        "124",
        "Android",
        "11",
        "mobile",
        False,
    ),
    (
        "Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) AppleWebKit/537.36"
        " (KHTML, like Gecko) Chrome/52.0.2743.116 Mobile Safari/537.36 Edge/15.15063",
        "Edge Mobile",
        "15",
        "Windows Phone",
        "10",
        "mobile",
        False,
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
        " Version/17.4 Mobile/15E148 Safari/604.1",
        "Mobile Safari",
        "17",
        "iOS",
        "17",
        "tablet",
        False,
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "Chrome",
        "124",
        "Android",
        "14",
        "tablet",
        False,
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; Lenovo TB-X606F) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/124.0.0.0 Safari/537.36",
        "Chrome",
        "124",
        "Android",
        "13",
        "tablet",
        False,
    ),
    (
        "Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Silk/124.3.1 like Chrome/124.0.6367.219 Safari/537.36",
        "Amazon Silk",
        "124",
        "Android",
        "9",
        "tablet",
        False,
    ),
    (
        "Mozilla/5.0 (Android 14; Tablet; rv:125.0) Gecko/125.0 Firefox/125.0",
        "Firefox Mobile",
        "125",
        "Android",
        "14",
        "tablet",
        False,
    ),
    (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Googlebot",
        "2",
        None,
        None,
        "bot",
        True,
    ),
    (
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, "
        "like Gecko) Chrome/124.0.6367.91 Mobile Safari/537.36 (compatible; Googlebot/2.1; "
        "+http://www.google.com/bot.html)",
        "Googlebot",
        "2",
        "Android",
        "6",
        "bot",
        True,
    ),
    (
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "bingbot",
        "2",
        None,
        None,
        "bot",
        True,
    ),
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
        "+https://openai.com/gptbot)",
        "GPTBot",
        "1",
        None,
        None,
        "bot",
        True,
    ),
    (
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "FacebookBot",
        "1",
        None,
        None,
        "bot",
        True,
    ),
    (
        "Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
        "UptimeRobot",
        "2",
        None,
        None,
        "bot",
        True,
    ),
    ("curl/8.5.0", "curl", "8", None, None, "bot", True),
    ("Wget/1.21.4", "Wget", "1", None, None, "bot", True),
    ("python-requests/2.31.0", "Python Requests", "2", None, None, "bot", True),
    ("Go-http-client/1.1", "Go-http-client", "1", None, None, "bot", True),
    ("Apache-HttpClient/4.5.14 (Java/17.0.8)", "Apache-HttpClient", "4", None, None, "bot", True),
    ("node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", None, None, None, None, "bot", True),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/120.0.6099.109 Safari/537.36",
        "HeadlessChrome",
        "120",
        "Linux",
        None,
        "bot",
        True,
    ),
    ("okhttp/4.12.0", "okhttp", "4", None, None, "other", False),  # app traffic, people
    (
        "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/4.0 Chrome/76.0.3809.146 TV Safari/537.36",
        "Samsung Internet",
        "4",
        "Tizen",
        "6",
        "other",
        False,
    ),
    ("Mozilla/5.0", None, None, None, None, "other", False),
    ("something entirely made up", None, None, None, None, "other", False),
]


@pytest.mark.parametrize(("ua", "browser", "bmajor", "os", "omajor", "device", "is_bot"), CASES)
def test_known_agents(
    parser: AgentParser,
    ua: str,
    browser: str | None,
    bmajor: str | None,
    os: str | None,
    omajor: str | None,
    device: str,
    is_bot: bool,
) -> None:
    assert parser.parse(ua) == Agent(browser, bmajor, os, omajor, device, is_bot)


def test_fields_match_source_contract() -> None:
    assert all(name in SOURCES for name in AGENT_SOURCES)
    assert [n.split(".", 1)[1] for n in AGENT_SOURCES] == list(Agent._fields)
    assert set(DEVICE_CLASSES) == {"desktop", "mobile", "tablet", "bot", "other"}


@pytest.mark.parametrize("ua", [None, "", "-", "   ", " - "])
def test_missing_user_agent_is_unknown(parser: AgentParser, ua: str | None) -> None:
    assert parser.parse(ua) is Agent.UNKNOWN
    assert Agent(None, None, None, None, "other", False) == Agent.UNKNOWN


def test_bot_implies_bot_device(parser: AgentParser) -> None:
    for case in CASES:
        agent = parser.parse(case[0])
        assert agent.is_bot == (agent.device == "bot")


def test_cache(parser: AgentParser) -> None:
    p = AgentParser(cache_size=2)
    a = p.parse(CHROME_WIN)
    assert p.parse(CHROME_WIN) is a
    info = p.cache_info()
    assert (info.hits, info.misses, info.maxsize) == (1, 1, 2)
    p.parse("curl/1.0")
    p.parse("curl/2.0")
    assert p.cache_info().currsize == 2
    assert p.parse_uncached(CHROME_WIN) == a


def test_very_long_user_agent(parser: AgentParser) -> None:
    ua = CHROME_WIN + " " + "x" * (MAX_UA_LENGTH * 20)
    assert parser.parse(ua) == parser.parse(CHROME_WIN)


_DIGITS = re.compile(r"[0-9]+")


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=200),
        st.sampled_from([c[0] for c in CASES]).flatmap(
            lambda ua: st.integers(0, len(ua)).map(lambda n: ua[:n])  # truncated UAs
        ),
    )
)
def test_never_raises_and_values_are_coarse(ua: str) -> None:
    agent = _PARSER.parse(ua)
    assert isinstance(agent, Agent)
    assert agent.device in DEVICE_CLASSES
    for version in (agent.browser_major, agent.os_major):
        assert version is None or _DIGITS.fullmatch(version)
    stripped = ua.strip()
    if len(stripped) > 40:  # a bare product token ("Go-http-client") is its own family
        assert stripped not in agent  # the original string never comes out
    for value in (agent.browser, agent.os):
        assert value is None or (len(value) <= 64 and value != "Other")


_PARSER = AgentParser(cache_size=0)


def test_device_class_rules() -> None:
    assert device_class("Googlebot", None, "Spider", "Spider", True) == "bot"
    assert device_class("x", "iOS", "iPad", "Apple", False) == "tablet"
    assert device_class("x Mobile", "iOS", "iPhone", "Apple", False) == "mobile"
    assert device_class("x", "Android", "Nexus 7", "Asus", False) == "tablet"
    assert (
        device_class("Mozilla/5.0 (Linux; Android 14; Mobile", "Android", None, None, False)
        == "mobile"
    )
    assert device_class("Mozilla/5.0 (Linux; Android 14", "Android", None, None, False) == "tablet"
    assert device_class("x", "Mac OS X", "Mac", "Apple", False) == "desktop"
    assert device_class("x", "Windows", None, None, False) == "desktop"
    assert device_class("x", "Linux", None, None, False) == "desktop"
    assert device_class("x", None, "Mac", "Apple", False) == "desktop"
    assert device_class("x", "Android", "AFTMM", "Amazon", False) == "other"  # Fire TV
    assert device_class("x", None, "PlayStation 5", "Sony", False) == "other"
    assert device_class("x", None, None, None, False) == "other"
    assert device_class("x Mobile", None, None, None, False) == "mobile"


def test_a_family_copied_from_the_user_agent_is_not_published() -> None:
    """uap-core's generic bot rules take the family from the UA text: a client sending
    a short bot-shaped UA was published as browser = its whole UA, and a browser UA
    with a free-text tail published the tail (an audit). Now such names are None and
    the bot flag still comes from the raw result."""
    parser = AgentParser(cache_size=0)
    whole = parser.parse("jdoe-home-server-monitor-spider")
    assert whole.browser is None and whole.is_bot and whole.device == "bot"
    tailed = parser.parse(
        "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/125.0 xyzzyplugh-frob Scrape"
    )
    assert tailed.browser is None and tailed.os == "Linux"
    # Well-known clients that only the generic rules name are still named.
    assert (
        parser.parse("Mozilla/5.0 (compatible; MJ12bot/v1.4.8; http://mj12bot.com/)").browser
        == "MJ12bot"
    )


def test_every_published_family_is_one_the_rules_can_name() -> None:
    from streams.enrich.agent import _known_families

    browsers, systems = _known_families()
    assert {"Chrome", "Chrome Mobile", "Firefox", "Safari", "Edge", "curl"} <= set(
        browsers.values()
    )
    assert {"Windows", "Mac OS X", "iOS", "Android", "Linux"} <= set(systems.values())
    assert "jdoe-home-server-monitor-spider" not in browsers


# --- session 10 audit ----------------------------------------------------------------


@pytest.mark.parametrize(
    "ua",
    [
        # Every Android app using HttpURLConnection sends this; phones included.
        "Dalvik/2.1.0 (Linux; U; Android 13; Pixel 7 Build/TQ3A.230901.001)",
        "Dalvik/2.1.0 (Linux; U; Android 14; SM-S918B Build/UP1A.231005.007)",
    ],
)
def test_dalvik_user_agent_of_a_phone_is_not_a_tablet(parser: AgentParser, ua: str) -> None:
    """device_class applies the browsers' convention (Android without "Mobile" is a
    tablet) to every Android UA; Dalvik (app HTTP stack) never sends "Mobile", so every
    Android app request, from a Pixel 7 or a Galaxy S23, is counted as a tablet."""
    assert parser.parse(ua).device == "mobile"


@pytest.mark.parametrize(
    "ua",
    [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; Xbox; Xbox One) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edge/44.18363.8131",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; Xbox; Xbox Series X) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/48.0.2564.82 Safari/537.36 Edge/20.02",
        "Mozilla/5.0 (X11; GNU/Linux) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chromium/79.0.3945.130 Chrome/79.0.3945.130 Safari/537.36 Tesla/2020.16.2.1-e99c70fff409",
        "Mozilla/5.0 (Linux; NetCast; U) AppleWebKit/537.31 (KHTML, like Gecko) "
        "Chrome/26.0.1410.33 Safari/537.31 SmartTV/5.0",
        "Mozilla/5.0 (Linux; VIDAA 6.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/83.0.4103.101 Safari/537.36 Hisense",
        "Mozilla/5.0 (X11; FreeBSD; U; Viera; de-DE) AppleWebKit/537.11 (KHTML, like Gecko) "
        "Viera/3.10.14 Chrome/23.0.1271.97 Safari/537.11",
    ],
)
def test_consoles_tvs_and_cars_are_other_not_desktop(parser: AgentParser, ua: str) -> None:
    """ "TVs, consoles, watches -> other": _OTHER_DEVICE_RE (which even lists Xbox and
    Tesla) is only tried on uap-core's device family, which is empty for these UAs;
    their Windows/Linux/FreeBSD OS then makes them desktop."""
    agent = parser.parse(ua)
    assert not agent.is_bot
    assert agent.device == "other"


# --- agent: bot flag -------------------------------------------------------------------


@pytest.mark.parametrize(
    "ua",
    [
        # crawlers (Bytespider is even in _GENERIC_RULE_NAMES; its common mobile form:)
        "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile "
        "Safari/537.36 (compatible; Bytespider; spider-feedback@bytedance.com)",
        "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile "
        "Safari/537.36 (compatible; TikTokSpider; ttspider-feedback@tiktok.com)",
        "Mozilla/5.0 (compatible; GoogleOther)",
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML,"
        " like Gecko) Chrome/124.0.6367.201 Mobile Safari/537.36 (compatible; GoogleOther)",
        "FeedFetcher-Google; (+http://www.google.com/feedfetcher.html)",
        "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/45.0.2454.85 Safari/537.36 (Mediapartners-Google)",
        # AI fetchers: ChatGPT-User is a bot here, Claude-User is not
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Claude-User/1.0; "
        "+Claude-User@anthropic.com)",
        # link preview fetchers
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0 (compatible; Microsoft-Preview)",
        # health checks, monitors, scanners: a large share of many access logs
        "kube-probe/1.29",
        "ELB-HealthChecker/2.0",
        "Mozilla/5.0 (compatible; CensysInspect/1.1; +https://about.censys.io/)",
    ],
)
def test_well_known_crawlers_fetchers_and_probes_are_bots(parser: AgentParser, ua: str) -> None:
    agent = parser.parse(ua)
    assert agent.is_bot
    assert agent.device == "bot"


def test_agent_cache_does_not_keep_whole_huge_user_agents() -> None:
    """Only MAX_UA_LENGTH (1,024) characters are parsed, but the LRU is keyed by the
    whole string: 65,536 entries of ~64 KB UAs is ~4 GB held by one worker."""
    p = AgentParser(cache_size=65536)
    n = 50

    def run() -> None:
        for i in range(n):
            p.parse(f"{CHROME}{i:06d}" + "x" * BIG)

    assert retained(run) < n * 4096  # whole strings: about n * 60 KB


def test_a_major_long_enough_to_spell_an_address_is_not_published(parser: AgentParser) -> None:
    # An audit (session 15): "Chrome/16909060" is 1.2.3.4 written as one number.
    ua = (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/16909060.0.0.0 Safari/537.36"
    )
    agent = parser.parse(ua)
    assert agent.browser == "Chrome"
    assert agent.browser_major is None
    assert parser.parse(ua.replace("16909060", "1690906")).browser_major == "1690906"
