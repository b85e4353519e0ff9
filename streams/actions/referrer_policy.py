"""``referrer_policy``: publish the Referer header without identifying anyone.

Privacy rule 11. Cross-site referrers become their registrable domain (eTLD+1, see
:func:`streams.urls.registrable_domain`), as a registry holds it
(:func:`streams.urls.cross_site_domain`: ``alice.github.io`` is published as
``github.io``, a local network's ``jane-macbook.local`` not at all); same-site
referrers get the ``url_policy`` treatment (templated path + allowlisted query), or
just the domain.

Decisions:

* Same site means: the referrer's registrable domain is that of the request's host
  (the vhost: ``%v``, ``$host``, the Host header; read as ``pseudonymize`` reads it
  for its per-site scope) or of one of ``site_domains``. When the line has no host,
  or one without a registrable domain (an address, ``localhost``, nginx's ``_``),
  ``site_domains`` or, if that option is empty, ``ctx.site`` when it looks like a host
  name (contains a dot). Otherwise nothing is same-site. (An audit: the vhost was
  ignored, so with ``site: other.example.net`` a shop's own cart page was published
  as the cross-site referrer "example.com", while the reference says ``site`` is the
  fallback for logs without a vhost.)
* Only ``http``/``https`` referrers are used. ``android-app://``, ``file:``,
  ``data:``, ``javascript:``, ``about:``, scheme-less values and junk give ``None``
  (default deny; an app package name could be added later as an explicit option).
* IP-literal referrer hosts (``http://192.0.2.7/``, ``http://[2001:db8::1]/``,
  ``http://3232235777/``) and hosts without a registrable domain (``localhost``,
  bare public suffixes) give ``None``; so do cross-site hosts under no registry's
  suffix (``.local``, ``.lan``, ``.internal``, ``.home.arpa``: device and home names,
  an audit). Same-site is still judged with the whole list (``bob.github.io`` is not
  ``alice.github.io``'s site).
* ``keep`` applies to cross-site referrers: ``registrable_domain`` (default) or
  ``none`` (drop them). Output is a domain (no ``/``) or a path (starts with ``/``).

The transform reads ``(host, referrer)``: the request's host is an implicit source,
as it is for ``pseudonymize``.

>>> from streams.actions.base import BuildContext
>>> f = SPEC.build({"site_domains": ["shop.example.com"]}, BuildContext())
>>> f((None, "https://www.google.co.uk/search?q=x"))
'google.co.uk'
>>> f((None, "https://www.example.com/account/12345?utm_source=mail&sid=abc#x"))
'/account/{id}?utm_source=mail'
>>> f((None, "http://192.0.2.7/admin")), f((None, "android-app://com.google.android.gm/"))
(None, None)
>>> f((None, "-")) is None
True
>>> g = SPEC.build({}, BuildContext(site="other.example.net"))
>>> g(("shop.example.com:443", "https://shop.example.com/cart?utm_source=a"))
'/cart?utm_source=a'
>>> g((None, "https://shop.example.com/cart?utm_source=a"))  # no vhost: the site
'example.com'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from streams import urls
from streams.actions import url_policy
from streams.actions.base import ActionSpec, BuildContext, Option, RuleToBuild, Transform
from streams.actions.pseudonymize import site_name
from streams.memo import remember

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


#: Read before the ``from`` field: the transform gets ``(host, referrer)``.
IMPLICIT_SOURCES: Final = ("request.host",)


def _domains(names: Sequence[str]) -> frozenset[str]:
    out = set()
    for name in names:
        domain = urls.registrable_domain(name)
        if domain is not None:
            out.add(domain)
    return frozenset(out)


#: Per rule: the domains of ``site_domains``, for a line with a host (besides the
#: host's own), and for a line without one (``site_domains``, else ``ctx.site``).
Sites = tuple[frozenset[str], frozenset[str]]


def _site_sets(options: Mapping[str, Any], ctx: BuildContext) -> Sites:
    listed = _domains(list(options.get("site_domains") or []))
    return listed, listed or _domains([ctx.site] if "." in ctx.site else [])


def _host_domains(size: int) -> Callable[[Any], str | None]:
    """The registrable domain of a request's host, "" for a host without one (an
    address, ``localhost``), None for a line without a host; memoized per host."""
    memo: dict[Any, str | None] = {}
    get = memo.get
    missing: Any = object()

    def host_domain(host: Any) -> str | None:
        own = get(host, missing)
        if own is missing:
            name = site_name(host)  # as pseudonymize's per-site scope reads the host
            own = None if not name else urls.registrable_domain(name) or ""
            remember(memo, host, own, size)
        return own

    return host_domain


def _decider(
    options: Mapping[str, Any], ctx: BuildContext
) -> Callable[[str | None, str, Any], str | None]:
    """One rule's choice, given the registrable domain of the request's host (see
    :func:`_host_domains`), an http(s) referrer's registrable domain and its match."""
    with_host, without_host = _site_sets(options, ctx)
    same_site_path = options.get("same_site", "path") == "path"
    keep_cross = options.get("keep", "registrable_domain") == "registrable_domain"
    allow = urls.compile_allow(options.get("allow_query", url_policy.DEFAULT_ALLOW_QUERY))
    path_policy = url_policy.make_target_policy(allow, template=True, keep_query=True)
    cross_site_domain = urls.cross_site_domain

    def decide(own: str | None, domain: str, m: Any) -> str | None:
        # A host without a registrable domain (an address, localhost, nginx's "_")
        # names no site: the fallback then, as for a line without a host (a review).
        if domain == own or domain in (with_host if own else without_host):
            if not same_site_path:
                return domain
            target = m.group(2).replace("\\", "/") or "/"
            if m.group(3):
                target = f"{target}?{m.group(3)}"
            return path_policy(target if target.startswith("/") else "/" + target)
        return cross_site_domain(domain) if keep_cross else None

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
    host_domain = _host_domains(ctx.cache_size)

    # Uncached on purpose: the rules compiler memoizes every text transform once, here
    # per (host, referrer), so a referrer's answer is never reused for another site.
    def referrer_policy(value: tuple[Any, Any]) -> str | None:
        host, referrer = value
        split = _split(referrer)
        return None if split is None else decide(host_domain(host), *split)

    return referrer_policy


def build_group(
    rules: Sequence[RuleToBuild],
) -> Callable[[tuple[Any, Any]], tuple[str | None, ...]]:
    """Several rules over the same Referer (the product's path-or-domain and the
    aggregation input's domain) from one match and one domain lookup a referrer.

    >>> from streams.actions.base import BuildContext
    >>> rules = [({"site_domains": ["example.com"]}, BuildContext()),
    ...          ({"site_domains": ["example.com"], "same_site": "domain"}, BuildContext())]
    >>> both = build_group(rules)
    >>> both((None, "https://www.example.com/cart/12345?x=1")), both((None, "https://t.co/x"))
    (('/cart/{id}', 'example.com'), ('t.co', 't.co'))
    >>> both(("t.co", "https://t.co/x")), both((None, "-"))
    (('/x', 't.co'), (None, None))
    """
    deciders = [_decider(options, ctx) for options, ctx in rules]
    host_domain = _host_domains(rules[0][1].cache_size)
    nothing = (None,) * len(deciders)

    def referrer_policies(value: tuple[Any, Any]) -> tuple[str | None, ...]:
        host, referrer = value
        split = _split(referrer)
        if split is None:
            return nothing
        own = host_domain(host)
        domain, m = split
        return tuple([decide(own, domain, m) for decide in deciders])

    return referrer_policies


def _validate(options: Mapping[str, Any], ctx: BuildContext) -> list[str]:
    return url_policy.validate_loosening({"allow_query": options.get("allow_query", [])}, ctx)


SPEC: Final = ActionSpec(
    name="referrer_policy",
    doc="Referer -> registrable domain (cross-site) or templated path (same-site: the "
    "request's host, else site)",
    options=(
        Option(
            "site_domains",
            list,
            default=[],
            doc="host names of this site besides the request's host (vhost); for logs "
            "without one, default: site if it is a host name",
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
        ({}, (None, "https://www.google.co.uk/search?q=x"), "google.co.uk"),
        ({}, (None, "http://192.0.2.7/"), None),
        ({"keep": "none"}, (None, "https://news.example.org/a"), None),
        ({}, ("news.example.org", "https://www.example.org/a/12345?page=2"), "/a/{id}?page=2"),
    ),
    implicit_sources=IMPLICIT_SOURCES,
)
