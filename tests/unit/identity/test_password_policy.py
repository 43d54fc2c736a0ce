"""The password policy: length, the shipped blocklist, username and name, zxcvbn, and plain
messages."""

from __future__ import annotations

import pytest

from rempart.identity import password_policy as policy
from rempart.identity.password_policy import PasswordOwner, WeakPassword, check_password

OWNER = PasswordOwner("m.lefebvre", "Maëlys LEFEBVRE")


def refusal(password: str, owner: PasswordOwner = OWNER) -> str:
    with pytest.raises(WeakPassword) as caught:
        check_password(password, owner)
    return str(caught.value)


def test_the_blocklist_ships_with_the_package_and_holds_over_100000_entries() -> None:
    words = policy.blocklist()
    assert len(words) >= 100_000
    assert {"password", "motdepasse", "azertyuiop", "iloveyou", "soleil"} <= words


@pytest.mark.parametrize(
    "password",
    [
        "x" * 14,
        "é" * 3 + "Kq9!zR2#",  # 11 characters, however many bytes
    ],
)
def test_fewer_than_15_characters_is_refused(password: str) -> None:
    assert refusal(password) == policy.TOO_SHORT


def test_long_passwords_and_any_characters_are_accepted() -> None:
    check_password("Le chat 🐈 dort sous l'escalier de la maternité", OWNER)
    check_password("w7#Qv!" * 10 + "pZ4", OWNER)  # 63 characters: NIST asks at least 64 allowed
    check_password("chaussette violette hélicoptère mardi " * 6, OWNER)  # 228 characters
    assert refusal("a9$Kq" * 60) == policy.TOO_LONG


@pytest.mark.parametrize(
    "password",
    [
        "passwordpassword",
        "motdepasse123456789",
        "Sunshine2024!!!!!!",
        "P@ssw0rdP@ssw0rd",  # l33t and repeated
        "  azertyuiop  2023",
        "bonjour bonjour bonjour",
        "123456789012345678",
    ],
)
def test_common_words_dressed_up_are_refused(password: str) -> None:
    assert refusal(password) in (policy.COMMON, policy.GUESSABLE)


def test_the_username_and_the_name_are_refused_in_any_case_or_accents() -> None:
    assert refusal("M.Lefebvre-garde-de-nuit-42") == policy.HAS_USERNAME
    assert refusal("lefebvre est de garde la nuit") == policy.HAS_USERNAME
    assert refusal("maelys aime les tulipes bleues") == policy.HAS_NAME


def test_weak_patterns_score_below_3_and_are_refused() -> None:
    assert refusal("qwertyuiopasdfghjkl") == policy.GUESSABLE
    assert refusal("abcdefghijklmnopq") == policy.GUESSABLE


def test_messages_are_plain_words_without_jargon() -> None:
    for message in (
        policy.TOO_SHORT,
        policy.COMMON,
        policy.HAS_USERNAME,
        policy.HAS_NAME,
        policy.GUESSABLE,
    ):
        lowered = message.lower()
        assert not any(term in lowered for term in ("zxcvbn", "entropy", "score", "regex", "hash"))
        assert message.endswith(".")


def test_strong_passphrases_pass() -> None:
    for password in (
        "correct horse battery staple",
        "Tr4in-Jaune-Sous-la-Pluie",
        "xK8#qLm2$vN9pRt4wZ",
    ):
        check_password(password, OWNER)
