"""``referrer_policy``: publish the Referer header without identifying anyone.

Privacy rule 11. Cross-site referrers become their registrable domain (eTLD+1, see
:func:`streams.urls.registrable_domain`); same-site referrers get the ``url_policy``
treatment (templated path + allowlisted query), or just the domain.

Decisions:

* Same site means: the referrer's registrable domain equals the registrable domain
  of one of ``site_domains``; if that option is empty, of ``ctx.site`` when it looks
  like a host name (contains a dot). Otherwise nothing is same-site.
* Only ``http``/``https`` referrers are used. ``android-app://``, ``file:``,
  ``data:``, ``javascript:``, ``about:``, scheme-less values and junk give ``None``
  (default deny; an app package name could be added later as an explicit option).
* IP-literal referrer hosts (``http://192.0.2.7/``, ``http://[2001:db8::1]/``,
  ``http://3232235777/``) and hosts without a registrable domain (``localhost``,
  bare public suffixes) give ``None``.
* ``keep`` applies to cross-site referrers: ``registrable_domain`` (default) or
  ``none`` (drop them). Output is a domain (no ``/``) or a path (starts with ``/``).

>>> from streams.actions.base import BuildContext
>>> f = SPEC.build({"site_domains": ["shop.example.com"]}, BuildContext())
>>> f("https://www.google.co.uk/search?q=x")
'google.co.uk'
>>> f("https://www.example.com/account/12345?utm_source=mail&sid=abc#x")
'/account/{id}?utm_source=mail'
>>> f("http://192.0.2.7/admin") is None, f("android-app://com.google.android.gm/") is None
(True, True)
>>> f("-") is None
True
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from streams import urls
from streams.actions import url_policy
from streams.actions.base import ActionSpec, BuildContext, Option, RuleToBuild, Transform

MAX_REFERRER: Final = 8192
# scheme://netloc path ?query #fragment, as urlsplit splits an http(s) URL.
# "\\" ends the host as "/" does: browsers read it so in http(s) URLs (an audit found
# "https://www.google.com\\jane.doe" cut to "google.com\\jane.doe").
_HTTP_URL: Final = re.compile(r"(?i:https?)://([^/\\?#]*)([^?#]*)(?:\?([^#]*))?")


def _check_domains(value: Any) -> str | None:
    for d in value:
        if not isinstance(d, str) or urls.registrable_domain(d) is None:
            return "site_domains entries must be host names with a registrable domain"
    return None


def _site_set(options: Mapping[str, Any], ctx: BuildContext) -> frozenset[str]:
    names = list(options.get("site_domains") or [])
    if not names and "." in ctx.site:
        names = [ctx.site]
    out = set()
    for name in names:
        domain = urls.registrable_domain(name)
        if domain is not None:
            out.add(domain)
    return frozenset(out)


def _decider(options: Mapping[str, Any], ctx: BuildContext) -> Callable[[str, Any], str | None]:
    """One rule's choice, given an http(s) referrer's registrable domain and its match."""
    sites = _site_set(options, ctx)
    same_site_path = options.get("same_site", "path") == "path"
    keep_cross = options.get("keep", "registrable_domain") == "registrable_domain"
    allow = urls.compile_allow(options.get("allow_query", url_policy.DEFAULT_ALLOW_QUERY))
    path_policy = url_policy.make_target_policy(allow, template=True, keep_query=True)

    def decide(domain: str, m: Any) -> str | None:
        if domain in sites:
            if not same_site_path:
                return domain
            target = m.group(2).replace("\\", "/") or "/"
            if m.group(3):
                target = f"{target}?{m.group(3)}"
            return path_policy(target if target.startswith("/") else "/" + target)
        return domain if keep_cross else None

    return decide


def _split(value: Any) -> tuple[str, Any] | None:
    """An http(s) referrer's registrable domain and its match; None for anything else."""
    if not isinstance(value, str) or not value or len(value) > MAX_REFERRER:
        return None
    m = _HTTP_URL.match(value.strip())
    if m is None:
        return None
    domain = urls.registrable_domain(m.group(1))
    return None if domain is None else (domain, m)


def _build(options: Mapping[str, Any], ctx: BuildContext) -> Transform:
    decide = _decider(options, ctx)

    # Uncached on purpose: the rules compiler memoizes every text transform once.
    def referrer_policy(value: Any) -> str | None:
        split = _split(value)
        return None if split is None else decide(*split)

    return referrer_policy


def build_group(rules: Sequence[RuleToBuild]) -> Callable[[Any], tuple[str | None, ...]]:
    """Several rules over the same Referer (the product's path-or-domain and the
    aggregation input's domain) from one match and one domain lookup a referrer.

    >>> from streams.actions.base import BuildContext
    >>> rules = [({"site_domains": ["example.com"]}, BuildContext()),
    ...          ({"site_domains": ["example.com"], "same_site": "domain"}, BuildContext())]
    >>> both = build_group(rules)
    >>> both("https://www.example.com/cart/12345?x=1"), both("https://t.co/x"), both("-")
    (('/cart/{id}', 'example.com'), ('t.co', 't.co'), (None, None))
    """
    deciders = [_decider(options, ctx) for options, ctx in rules]
    nothing = (None,) * len(deciders)

    def referrer_policies(value: Any) -> tuple[str | None, ...]:
        split = _split(value)
        if split is None:
            return nothing
        domain, m = split
        return tuple([decide(domain, m) for decide in deciders])

    return referrer_policies


def _validate(options: Mapping[str, Any], ctx: BuildContext) -> list[str]:
    return url_policy.validate_loosening({"allow_query": options.get("allow_query", [])}, ctx)


SPEC: Final = ActionSpec(
    name="referrer_policy",
    doc="Referer -> registrable domain (cross-site) or templated path (same-site)",
    options=(
        Option(
            "site_domains",
            list,
            default=[],
            doc="host names of this site (default: ctx.site if it is a host name)",
            check=_check_domains,
        ),
        Option(
            "same_site",
            str,
            default="path",
            doc="same-site referrers: templated path or just the domain",
            choices=("path", "domain"),
        ),
        Option(
            "allow_query",
            list,
            default=list(url_policy.DEFAULT_ALLOW_QUERY),
            doc="query keys kept on same-site paths; 'prefix*' patterns; case-insensitive",
            check=url_policy._check_allow,
            json=url_policy.ALLOW_QUERY_JSON,
        ),
        Option(
            "keep",
            str,
            default="registrable_domain",
            doc="cross-site referrers: registrable domain or nothing",
            choices=("registrable_domain", "none"),
        ),
    ),
    build=_build,
    build_group=build_group,
    accepts=frozenset({"request.referrer"}),
    validate=_validate,
    examples=(
        ({}, "https://www.google.co.uk/search?q=x", "google.co.uk"),
        ({}, "http://192.0.2.7/", None),
        ({"keep": "none"}, "https://news.example.org/a", None),
    ),
)
