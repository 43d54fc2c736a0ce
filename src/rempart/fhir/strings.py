"""String search: the normal form, the prefix tokens a value is indexed under, and the exact test.

FHIR string search is "starts with, ignoring case and accents". A blind index cannot compare
strings, so a value is indexed under every prefix a query could be; the query then looks up one
token. We also index the prefixes of each later word, so that `name=pierre` finds "Jean-Pierre"
and `name=berg` finds "Van den Berg": clinicians search that way, and it is what the word-by-word
matching of most FHIR servers gives. Index and post-filter share `word_suffixes`, so the token
lookup and the exact check can never disagree.
"""

from __future__ import annotations

import unicodedata

# Longest indexed prefix, in characters of the normal form. Longer queries look up their first
# PREFIX_MAX characters and are finished by a post-filter on the decrypted resource.
PREFIX_MAX = 24
# Words of a value after which we stop indexing suffixes: bounds the tokens of a long text while
# covering any real name or address line.
MAX_WORDS = 8

PREFIX = "p:"
EXACT = "x:"


def normalise(value: str) -> str:
    """Case-, accent- and punctuation-free form: "Müller-Lüdenscheidt " -> "muller ludenscheidt".

    NFKD splits accented letters into base + combining mark (and ligatures into letters); the
    marks are dropped. Punctuation becomes a space so that "Jean-Pierre" and "jean pierre" agree.
    """
    decomposed = unicodedata.normalize("NFKD", value)
    out: list[str] = []
    for ch in decomposed:
        if unicodedata.combining(ch):
            continue
        out.extend(ch.casefold() if ch.isalnum() else " ")
    return " ".join("".join(out).split())


def word_suffixes(norm: str) -> list[str]:
    """The normal form and its tails starting at each later word, at most MAX_WORDS of them."""
    words = norm.split(" ")
    return [" ".join(words[i:]) for i in range(min(len(words), MAX_WORDS)) if words[i]]


def prefix_tokens(value: str) -> list[str]:
    """Tokens "p:<prefix>" for every prefix (1..PREFIX_MAX chars) of every word suffix."""
    seen: dict[str, None] = {}
    for tail in word_suffixes(normalise(value)):
        for end in range(1, min(len(tail), PREFIX_MAX) + 1):
            if tail[end - 1] != " ":  # a normalised query never ends with a space
                seen[PREFIX + tail[:end]] = None
    return list(seen)


def exact_token(value: str) -> str:
    """Token for the `:exact` modifier: the whole value, case and accents kept (NFC)."""
    return EXACT + unicodedata.normalize("NFC", value)


def query_prefix_token(norm_query: str) -> str:
    """The one token a normalised query looks up (truncated when longer than PREFIX_MAX; a cut
    that ends on a space drops it, as the index holds no prefix ending with a space)."""
    return PREFIX + norm_query[:PREFIX_MAX].rstrip(" ")


def matches_prefix(value: str, norm_query: str) -> bool:
    """Exact form of the prefix search, used when the query is longer than PREFIX_MAX."""
    return any(tail.startswith(norm_query) for tail in word_suffixes(normalise(value)))
