"""Whether a run of letters reads like words or like a random token.

A token of letters only (``qzkxvbnmwplrtjhgfdsazxcvbnmqwertyp``) has a word's shape,
so the shape test of :func:`streams.detect.looks_random` kept it, in paths, query
values and referrers (an audit, session 15). Words of the languages written in Latin
letters follow letter-pair statistics that random letters do not.
:func:`reads_like_words` scores a run by the mean log-likelihood ratio of its letter
pairs under a bigram model of words against uniformly random letters: at least 0 bits
a pair reads like words.

Measured with the table below (20,000 random lowercase strings and 5,000
concatenations of English words of each length; ``tests/unit/test_wordlike.py``
keeps a smaller version of this check):

======  ================  ====================
length  random, missed    words, flagged
======  ================  ====================
16      0.94%             1.0%
20      0.33%             0.56%
24      0.12%             0.36%
32      0.03%             0.18%
40      0.005%            0.04%
======  ================  ====================

Of 328 city names of 16 letters or more in DB-IP's City Lite database, 3 are flagged
(``ittoqqortoormiit``, ``llanfairpwllgwyngyll``, ``nizhnekruglovskiy``): where this
flags a word, the word becomes a placeholder: detail lost, nothing leaked. The
concatenations above are of words of the table's own English corpus.

The table is ``round(10 * log2(P(b | a) * 26))`` for each letter pair ``ab``, from the
20,000 commonest words of 3 or more letters in the Python standard library's source
(English, each weighted by ``log(1 + count)``) and the words of the city names of a
DB-IP or MaxMind City database (every country's places, romanized, once each), counts smoothed
by adding 0.5: ``python -m streams.wordlike CITY_MMDB`` prints it again.

>>> reads_like_words("donaudampfschifffahrtsgesellschaft")
True
>>> reads_like_words("qzkxvbnmwplrtjhgfdsazxcvbnmqwertyp")
False
"""

from __future__ import annotations

import string
from typing import Final

__all__ = ["reads_like_words", "wordlike_score"]

# fmt: off
_TABLE: Final = (
    # aa-am, an-az
    -24,  -4,   5,   1, -21, -23,  -3, -15,  -2, -28, -10,  15,   6,
     21, -26,  -5, -44,  18,   7,  13,  -3, -11, -20, -24,  -8, -21,
    # ba-bm, bn-bz
     24, -11, -14, -15,  22, -23, -43, -23,  12, -21, -41,   8, -31,
    -27,  16, -30, -64,  13,  -5, -27,  14, -45, -43, -60,  -6, -52,
    # ca-cm, cn-cz
     19, -32,  -9, -22,  14, -25, -45,  25,   4, -80,   6,  -1, -30,
    -33,  22, -35, -40,  -3, -11,   7,  -1, -44, -47, -58, -25, -24,
    # da-dm, dn-dz
     18, -15, -20,  -4,  27, -13, -14, -16,  19, -32, -34,  -9, -23,
    -20,  17, -27, -52,   0,   1,  -5,   3, -25, -25, -40, -17, -27,
    # ea-em, en-ez
     -2, -13,   2,   8,  -9, -12, -11, -26,  -3, -36, -22,  10,  -4,
     20, -11, -11, -27,  22,  15,   5, -14,  -9, -17,  -8, -14, -25,
    # fa-fm, fn-fz
     14, -20, -13,  -9,  17,  12, -29, -32,  22, -34, -41,   5, -27,
    -18,  18, -23, -50,  11,  -7,  -1,   7, -42, -41, -41, -16, -53,
    # ga-gm, gn-gz
     19, -21, -21, -16,  24, -26,  -6,   6,   6, -27, -32,   1, -17,
      5,  12, -23, -45,  11,   3, -11,  10, -34, -19, -37, -13, -33,
    # ha-hm, hn-hz
     28, -25, -32, -29,  25, -36, -45, -35,  17, -50, -32,  -9, -19,
    -15,  19, -33, -68,  -6, -16,  -4,   6, -39, -14, -112, -10, -63,
    # ia-im, in-iz
      5, -12,   8,  -1,   7, -14,   0, -34, -40, -27, -16,  11,   3,
     26,   5,  -9, -41,   1,  10,   9, -33,  -8, -43, -24, -25, -10,
    # ja-jm, jn-jz
     28, -32, -28, -22,  21, -31, -36, -22,  19, -37,  -7, -32, -25,
    -13,  19, -21, -88, -31,  -7, -35,  17, -26, -32, -88, -41, -49,
    # ka-km, kn-kz
     25, -25, -28, -20,  22, -31, -27,   3,  18, -32, -17,  -2, -25,
    -14,  18, -27, -61,   0,   4, -18,   5, -28, -17, -63, -10, -48,
    # la-lm, ln-lz
     20, -15, -20,  -1,  23, -21, -25, -27,  19, -38, -24,  17, -16,
    -24,  13, -22, -58, -37,  -1,  -4,  -1, -18, -35, -53,   0, -32,
    # ma-mm, mn-mz
     28,   4, -23, -24,  22, -34, -36, -41,  15, -51, -36, -19,  -2,
    -24,  16,  10, -58, -23,  -2, -25,   4, -38, -47, -55, -18, -57,
    # na-nm, nn-nz
     15, -14,   3,  12,  14, -14,  21, -12,   8, -24, -14, -23, -31,
     -5,   9, -24, -43, -29,   9,  15, -13, -16, -31, -49, -14, -25,
    # oa-om, on-oz
    -17,  -8,  -2,   1, -20, -17,  -8, -22, -13, -33,  -8,  10,   4,
     24,  -3,  -3, -49,  19,   5,   1,   7,  -1,   0, -32, -20, -26,
    # pa-pm, pn-pz
     22, -38, -22, -21,  20, -20, -42,  -5,  10, -55, -34,  10, -28,
    -28,  17,   1, -50,  16,  -4,   0,   5, -42, -39, -51,  -6, -57,
    # qa-qm, qn-qz
      6, -26, -37, -23, -20, -25, -53, -45,   8, -78, -78,  -3, -20,
    -18, -26, -38, -31,  -4,  -4, -23,  42, -33, -45, -53, -55, -33,
    # ra-rm, rn-rz
     20, -15,  -8,  -2,  21, -12,  -1, -24,  16, -45, -12, -13,  -5,
     -2,  14, -19, -46,  -3,   5,   4,  -3, -18, -28, -69,  -9, -22,
    # sa-sm, sn-sz
     12, -13,   4, -16,  19, -23, -34,   9,  12, -47,  -1,  -9, -18,
    -19,   5,  -1, -28, -27,   7,  22,   5, -19, -21, -55, -15, -22,
    # ta-tm, tn-tz
     18, -30, -14, -27,  24, -24, -41,   8,  19, -54, -40, -11, -22,
    -24,  15, -21, -67,  12,   4,   2,  -4, -31, -27, -47,  -4, -17,
    # ua-um, un-uz
      4,   3,   1,  -4,   4, -16,  -5, -22,   2, -27, -10,  11,   6,
     18, -20,  -2, -42,  19,  10,  10, -43, -21, -32, -18, -27, -18,
    # va-vm, vn-vz
     25, -55, -22, -29,  30, -50, -35, -47,  27, -69, -13, -20, -34,
    -24,  13, -31, -103, -10,  -6, -30, -27, -54, -52, -45, -20, -75,
    # wa-wm, wn-wz
     28, -31, -25, -19,  20, -30, -46,  -2,  22, -67, -21, -14, -31,
      6,  18, -27, -63,  -1,  -1, -19, -17, -34, -43, -52, -18, -58,
    # xa-xm, xn-xz
      3, -12,   6,  -7,  11,  -3, -45, -11,  23, -48, -52,  -6,  -5,
    -15,  -6,  20, -34, -16,  -5,  21, -14, -17, -25, -11, -13, -48,
    # ya-ym, yn-yz
     22, -11,  -3,  -6,  15, -17, -16, -21,  -1, -44, -14,   3,   3,
      8,   6,  11, -40,  -3,  11,   3,   1, -13, -20, -45, -18, -21,
    # za-zm, zn-zz
     24, -20, -19, -17,  28, -33, -28,  11,  15, -59, -15, -16, -23,
     -9,  12, -32, -51, -27, -18, -22,  -2, -31, -20, -54,   1,   0,
)
# fmt: on

_PAIR_SCORE: Final = {
    a + b: _TABLE[i * 26 + j]
    for i, a in enumerate(string.ascii_lowercase)
    for j, b in enumerate(string.ascii_lowercase)
}


def wordlike_score(letters: str) -> float:
    """Mean log2 likelihood ratio of the run's letter pairs (words against random
    letters), in bits; pairs with a character other than ``a-z`` (any case) count 0.

    >>> round(wordlike_score("information"), 1) > 1, wordlike_score("xqzjvk") < -2
    (True, True)
    """
    run = letters.lower()
    if len(run) < 2:
        return 0.0
    get = _PAIR_SCORE.get
    return sum(get(run[i : i + 2], 0) for i in range(len(run) - 1)) / (10 * (len(run) - 1))


def reads_like_words(letters: str) -> bool:
    """Whether a run of letters reads like words of a natural language (see module doc)."""
    return wordlike_score(letters) >= 0


def _table(city_mmdb: str) -> list[int]:
    """The table from this Python's standard library and a City database (module doc)."""
    import itertools
    import math
    import re
    import sysconfig
    import unicodedata
    from collections import Counter, defaultdict
    from pathlib import Path

    import maxminddb

    counts: defaultdict[str, float] = defaultdict(float)
    words: Counter[str] = Counter()
    for path in Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"):
        if "test" in path.parts:
            continue
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            continue
        words.update(re.findall(r"(?<![A-Za-z_])[a-z]{3,}(?![A-Za-z_])", text))
    for word, n in words.most_common(20_000):
        for a, b in itertools.pairwise(word):
            counts[a + b] += math.log1p(n)
    cities = set()
    with maxminddb.open_database(city_mmdb) as reader:
        for _, record in reader:
            name = ((record or {}).get("city") or {}).get("names", {}).get("en")
            if name:
                cities.add(name)
    places = set()
    for name in cities:
        folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
        places.update(re.findall(r"[a-z]{3,}", folded.lower()))
    for word in places:
        for a, b in itertools.pairwise(word):
            counts[a + b] += 1
    letters = string.ascii_lowercase
    table = []
    for a in letters:
        row = sum(counts[a + b] for b in letters)
        for b in letters:
            table.append(round(10 * math.log2((counts[a + b] + 0.5) / (row + 13) * 26)))
    return table


if __name__ == "__main__":  # pragma: no cover - run by hand to rebuild the table
    import sys

    values = _table(sys.argv[1])
    for i, a in enumerate(string.ascii_lowercase):
        row = values[i * 26 : i * 26 + 26]
        print(f"    # {a}a-{a}m, {a}n-{a}z")
        print("    " + ", ".join(f"{v:3d}" for v in row[:13]) + ",")
        print("    " + ", ".join(f"{v:3d}" for v in row[13:]) + ",")
