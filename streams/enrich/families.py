"""The browser and OS family names uap-core can name, as opposed to copy.

Most uap-core rules name the family: a fixed replacement (``"Chrome Mobile"``) or a
capture group that can only match fixed words (``(Firefox|Iceweasel)/``). A few copy it
from the User-Agent: the generic bot, spider and crawler rules capture
``([A-Za-z0-9_-]+[Bb]ot)``-like runs, so a client sending ``jdoe-home-monitor-spider``
used to be published as browser ``jdoe-home-monitor-spider``: its own free text (found
by an audit). Only names in :func:`known_families` are published; a family copied
from the User-Agent becomes None, like uap-core's ``"Other"``. The bot flag is decided
from the raw result as before, so such clients are still bots.

How: for every rule, the language of its family (the replacement, with ``$1`` standing
for capture group 1) is enumerated from the parsed regex when it is finite and small:
literals, character classes of a few characters, alternations, optional parts and
short fixed repeats. Anything else (``\\w+``, ``[^;]+``) marks the rule as copying.
Case-insensitive rules match other spellings of the same word: names are compared
casefolded and published as the rule spells them.

>>> names = known_families([("(Firefox|Iceweasel)/(\\\\d+)", "$1"),
...                         ("([A-Za-z0-9_-]+[Bb]ot)/(\\\\d+)", "$1"),
...                         ("Edg/(\\\\d+)", "Edge"), ("(?i)(Opera) Mini", "$1 Mini")])
>>> sorted(names.values())
['Edge', 'Firefox', 'Iceweasel', 'Opera Mini']
>>> names["opera mini"]
'Opera Mini'
"""

from __future__ import annotations

# The parser behind ``re`` (private, stable since 3.11; its ``sre_parse`` alias is
# deprecated): enumerating a regex's language needs its parse tree.
import re._constants as _c
import re._parser as _parser
from collections.abc import Iterable
from typing import Any

#: More strings than this in a family's language: treated as free text.
MAX_LANGUAGE = 2000
#: A character class wider than this (e.g. ``[a-z]``): free text.
MAX_CLASS = 16


def known_families(rules: Iterable[tuple[str, str | None]]) -> dict[str, str]:
    """Casefolded name -> name, for every family the rules (``(regex, replacement)``;
    replacement None means ``$1``) can produce from a finite set of words."""
    names: dict[str, str] = {}
    for pattern, replacement in rules:
        template = replacement or "$1"
        if "$" not in template:
            names.setdefault(template.casefold(), template)
            continue
        group = _group(_parser.parse(pattern), 1)
        words = _language(group) if group is not None else None
        for word in words or ():
            name = template.replace("$1", word).strip()
            if name and "$" not in name:
                names.setdefault(name.casefold(), name)
    return names


def _group(items: Any, number: int) -> Any:
    """The parsed items of capture group ``number``, or None."""
    for op, av in items:
        if op is _c.SUBPATTERN:
            if av[0] == number:
                return av[3]
            found = _group(av[3], number)
        elif op is _c.BRANCH:
            found = next((g for b in av[1] if (g := _group(b, number)) is not None), None)
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            found = _group(av[2], number)
        else:
            continue
        if found is not None:
            return found
    return None


def _language(items: Any) -> set[str] | None:
    """Every string ``items`` matches, or None when that is infinite or too many."""
    out = {""}
    for op, av in items:
        if op is _c.AT:
            continue
        part = _part(op, av)
        if part is None:
            return None
        out = {a + b for a in out for b in part}
        if len(out) > MAX_LANGUAGE:
            return None
    return out


def _part(op: Any, av: Any) -> set[str] | None:
    if op is _c.LITERAL:
        return {chr(av)}
    if op is _c.IN:
        chars: set[str] = set()
        for kind, value in av:
            if kind is _c.LITERAL:
                chars.add(chr(value))
            elif kind is _c.RANGE and value[1] - value[0] < MAX_CLASS:
                chars.update(chr(c) for c in range(value[0], value[1] + 1))
            else:
                return None
        return chars
    if op is _c.SUBPATTERN:
        return _language(av[3])
    if op is _c.BRANCH:
        words: set[str] = set()
        for branch in av[1]:
            more = _language(branch)
            if more is None:
                return None
            words |= more
        return words
    if op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
        low, high, sub = av
        base = _language(sub)
        if base is None or high is _c.MAXREPEAT or high > 4:
            return None
        words, current = set(), {""}
        for count in range(high + 1):
            if count >= low:
                words |= current
            current = {a + b for a in current for b in base}
            if len(current) > MAX_LANGUAGE:
                return None
        return words
    return None
