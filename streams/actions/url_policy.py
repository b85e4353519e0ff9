"""``url_policy``: publish a request target as a templated path plus allowlisted query.

Privacy rule 10. The fragment is always dropped; only allowlisted query keys pass;
identifying path segments become ``{id}``, ``{uuid}``, ``{token}``, ``{email}``
(see :mod:`streams.urls` for the classification rules).

Input: the raw request target. Origin form (``/path?query#frag``, also ``//a/b``)
and absolute form (``http://host/path``, host dropped) are handled; ``*``
(OPTIONS), authority form (``host:443``, CONNECT), ``-``, ``None``, non-strings,
targets longer than 8 KiB and anything else yield ``None``.

Decisions: the default allowlist is ``utm_*``, ``page`` and ``lang``. Search terms
(``q``, ``query``, ``search``) are free text typed by the visitor and are left out;
so are referral codes (``ref``), which often name a person. Turning templating off
or allowing a bare ``*`` loosens the privacy floor and needs ``unsafe: true``.

>>> from streams.actions.base import BuildContext
>>> f = SPEC.build({"allow_query": ["utm_*"], "template": True, "keep_query": True},
...                BuildContext())
>>> f("/users/12345/orders?utm_source=x&token=abc#top")
'/users/{id}/orders?utm_source=x'
>>> f("/reset?email=john%40example.com&utm_source=john%2540example.com")
'/reset?utm_source={email}'
>>> f("https://shop.example/p/4111-1111-1111-1111?")
'/p/{id}'
>>> f("*") is None, f("-") is None, f(None) is None
(True, True, True)
>>> g = SPEC.build({"keep_query": False}, BuildContext())
>>> g("/search?q=private+words")
'/search'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from streams import urls
from streams.actions.base import ActionSpec, BuildContext, Option, Transform

DEFAULT_ALLOW_QUERY: Final = ("utm_*", "page", "lang")

# Keys whose values are secrets or personal by design: allowing them in allow_query (by
# name or by a prefix* pattern that covers them) needs unsafe: true even though values
# would still be templated. Click ids and subscriber ids name one person's click or
# mailbox (mc_eid: Mailchimp, yclid: Yandex, ttclid: TikTok, twclid: X, li_fat_id:
# LinkedIn, _hsenc: HubSpot, igshid: Instagram); OAuth and one-time secrets too.
RISKY_KEYS: Final = frozenset(
    {
        "email", "mail", "token", "access_token", "id_token", "code", "state", "session",
        "sessionid", "sid", "jsessionid", "phpsessid", "password", "pass", "pwd", "key",
        "api_key", "apikey", "signature", "sig", "auth", "gclid", "fbclid", "msclkid",
        "dclid", "wbraid", "gbraid", "q", "query", "search", "user", "uid", "ref",
        "mc_eid", "yclid", "ttclid", "twclid", "li_fat_id", "_hsenc", "igshid",
        "oauth_token", "refresh_token", "client_secret", "otp",
    }
)  # fmt: skip

MAX_TARGET: Final = 8192


def risky_keys_of(pattern: str) -> list[str]:
    """The sensitive query keys an ``allow_query`` pattern lets through.

    >>> risky_keys_of("q"), risky_keys_of("s*"), risky_keys_of("utm_*")
    (['q'], ['search', 'session', 'sessionid', 'sid', 'sig', 'signature', 'state'], [])
    """
    lowered = pattern.lower()
    if lowered.endswith("*"):
        return sorted(k for k in RISKY_KEYS if k.startswith(lowered[:-1]))
    return [lowered] if lowered in RISKY_KEYS else []


def _check_allow(value: Any) -> str | None:
    return urls.check_patterns(value)


#: What ``_check_allow`` refuses, for the JSON Schema (all but spaces at either end).
ALLOW_QUERY_JSON: Final = {"items": {"type": "string", "pattern": r"^[^*&=#?]+\*?$"}}


def make_target_policy(
    allow: urls.QueryAllow, template: bool, keep_query: bool
) -> Callable[[str], str | None]:
    """Uncached policy for one request target (shared with ``referrer_policy``)."""

    def apply(target: str) -> str | None:
        if not target or len(target) > MAX_TARGET:
            return None
        if target[0] == "/":
            # Origin form, the common case: path ? query # fragment, split by hand
            # (what urlsplit does for it, at a fraction of the cost; "//a/b" stays a path).
            path, _, query = target.partition("#")[0].partition("?")
        elif not target[:8].lower().startswith(("http://", "https://")):
            return None
        else:
            try:
                parts = urlsplit(target)
            except ValueError:
                return None
            path, query = parts.path or "/", parts.query
        if template:
            path = urls.template_path(path)
        if not keep_query or not query or allow.empty:
            return path
        query = urls.filter_query(query, allow, template=template)
        return f"{path}?{query}" if query else path

    return apply


def _options(options: Mapping[str, Any]) -> tuple[urls.QueryAllow, bool, bool]:
    allow = urls.compile_allow(options.get("allow_query", DEFAULT_ALLOW_QUERY))
    return allow, bool(options.get("template", True)), bool(options.get("keep_query", True))


def _build(options: Mapping[str, Any], ctx: BuildContext) -> Transform:
    policy = make_target_policy(*_options(options))

    # Uncached on purpose: the rules compiler memoizes every text transform once.
    def url_policy(value: Any) -> str | None:
        if not isinstance(value, str):
            return None
        return policy(value)

    return url_policy


def validate_loosening(options: Mapping[str, Any], ctx: BuildContext) -> list[str]:
    """Refuse options that loosen rule 10 unless the rule says ``unsafe: true``."""
    if ctx.unsafe:
        return []
    errors = []
    if options.get("template", True) is False:
        errors.append("template: false publishes raw path segments; needs unsafe: true")
    for pattern in options.get("allow_query", DEFAULT_ALLOW_QUERY):
        risky = risky_keys_of(pattern)
        if risky:
            errors.append(
                f"allow_query {pattern!r} lets sensitive keys through ({', '.join(risky)}); "
                "needs unsafe: true"
            )
    return errors


SPEC: Final = ActionSpec(
    name="url_policy",
    doc="request target -> templated path + allowlisted query, fragment dropped",
    options=(
        Option(
            "allow_query",
            list,
            default=list(DEFAULT_ALLOW_QUERY),
            doc="query keys that may pass; 'prefix*' patterns; case-insensitive",
            check=_check_allow,
            json=ALLOW_QUERY_JSON,
        ),
        Option("template", bool, default=True, doc="replace ids/tokens/emails in the path"),
        Option("keep_query", bool, default=True, doc="False: drop the whole query"),
    ),
    build=_build,
    accepts=frozenset({"request.target"}),
    validate=validate_loosening,
    examples=(
        ({}, "/users/12345/orders?utm_source=x&token=abc#top", "/users/{id}/orders?utm_source=x"),
        ({"keep_query": False}, "/search?q=private", "/search"),
        ({}, "-", None),
    ),
)
