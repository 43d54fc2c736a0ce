"""Which new passwords are accepted (NIST SP 800-63B rev. 4, OWASP ASVS 5.0 chapter 6).

15 to 256 characters, any characters, no composition rule and no expiry. Refused: a password in
the shipped blocklist of common, breached and dictionary words (also with digits or symbols
stuck on its ends, spelt in l33t, or repeated), one containing the username or the person's
name, and one that zxcvbn scores below 3. Each refusal says why in plain words.
"""

from __future__ import annotations

import lzma
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources

from zxcvbn import zxcvbn

from rempart.errors import InvalidResource

MIN_LENGTH = 15
MAX_LENGTH = 256
MIN_SCORE = 3
_ZXCVBN_MAX = 100  # zxcvbn's cost grows with length; past 100 characters strength is not the issue

_EDGES = re.compile(r"^[\W\d_]+|[\W\d_]+$")
_SEPARATORS = re.compile(r"[\s\W_]+")
_LEET = str.maketrans("0134578@$!|", "oleatsbasil")

TOO_SHORT = (
    "This password is too short. Use at least 15 characters: a short sentence of four or five "
    "unrelated words is long enough and easy to remember."
)
TOO_LONG = "This password is too long. Use at most 256 characters."
COMMON = (
    "This password is on the list of passwords that attackers try first (common passwords, "
    "words from the dictionary, or such a word with numbers or symbols added). Choose another."
)
HAS_USERNAME = "This password contains your username. Choose one that does not."
HAS_NAME = "This password contains your name. Choose one that does not."
GUESSABLE = (
    "This password is too easy to guess: it follows a pattern such as a keyboard row, a "
    "repeated word, a date or a sequence. Try a sentence of several unrelated words."
)
EMPTY_OF_TEXT = "This password is only spaces. Choose one with words or characters in it."


class WeakPassword(InvalidResource):
    """The new password breaks the policy; the message is for the person (a 400)."""


@dataclass(frozen=True)
class PasswordOwner:
    username: str
    display_name: str = ""


@cache
def blocklist() -> frozenset[str]:
    """The shipped list (148,135 entries; see data/SOURCES.md), loaded once per process."""
    data = resources.files("rempart.identity").joinpath("data/common-passwords.txt.xz")
    return frozenset(lzma.decompress(data.read_bytes()).decode().split("\n"))


def _fold(text: str) -> str:
    """NFKC, case-folded, accents removed: "Éloïse" and "eloise" are the same word here."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _candidates(folded: str) -> set[str]:
    joined = _SEPARATORS.sub("", folded)
    cores = {folded, joined, _EDGES.sub("", folded), _EDGES.sub("", joined)}
    cores |= {c.translate(_LEET) for c in cores}
    return {c for c in cores if c}


def _repeated_unit(text: str) -> str | None:
    """ "abcabcabc" -> "abc": a password that is one short thing repeated."""
    for size in range(1, len(text) // 2 + 1):
        if len(text) % size == 0 and text[:size] * (len(text) // size) == text:
            return text[:size]
    return None


def _blocklisted(password: str) -> str | None:
    """The refusal message if the password is a listed word, dressed up or repeated."""
    words = blocklist()
    for candidate in _candidates(_fold(password)):
        if candidate in words:
            return COMMON
        unit = _repeated_unit(candidate)
        if unit is not None and (len(unit) <= 5 or unit in words):
            return COMMON if unit in words else GUESSABLE
    return None


def _name_parts(owner: PasswordOwner) -> tuple[list[str], list[str]]:
    user = _fold(owner.username)
    user_parts = [user] + [p for p in re.split(r"[._\-@\s]+", user) if len(p) >= 4]
    names = [p for p in re.split(r"[\s\-']+", _fold(owner.display_name)) if len(p) >= 3]
    return [p for p in user_parts if len(p) >= 3], names


def check_password(password: str, owner: PasswordOwner) -> None:
    """Raises WeakPassword with a message a nurse understands; returns None if acceptable."""
    length = len(unicodedata.normalize("NFKC", password))  # one code point, one character
    if length < MIN_LENGTH:
        raise WeakPassword(TOO_SHORT)
    if length > MAX_LENGTH:
        raise WeakPassword(TOO_LONG)
    if not password.strip():
        raise WeakPassword(EMPTY_OF_TEXT)
    refusal = _blocklisted(password)
    if refusal is not None:
        raise WeakPassword(refusal)
    squashed = _SEPARATORS.sub("", _fold(password))
    user_parts, names = _name_parts(owner)
    if any(_SEPARATORS.sub("", p) in squashed for p in user_parts):
        raise WeakPassword(HAS_USERNAME)
    if any(n in squashed for n in names):
        raise WeakPassword(HAS_NAME)
    inputs = [owner.username, *user_parts, *names, "rempart", "hopital", "hôpital", "patient"]
    result = zxcvbn(password[:_ZXCVBN_MAX], user_inputs=inputs, max_length=_ZXCVBN_MAX)
    if int(result["score"]) < MIN_SCORE:
        raise WeakPassword(GUESSABLE)
