"""NIR key: 97 - (13-digit number mod 97), Corsica 2A -> 19 and 2B -> 18 for the computation."""

import pytest

from rempart.seed import is_valid_nir, nir_key
from rempart.seed.nir import make_nir


@pytest.mark.parametrize(
    ("nir13", "key"),
    [
        ("1841276451089", "46"),  # the classic documented example: 1 84 12 76 451 089 46
        ("2690549588157", "80"),  # 2 69 05 49 588 157 80
        ("1 84 12 76 451 089", "46"),  # spaces are ignored
    ],
)
def test_nir_key_of_documented_examples(nir13: str, key: str) -> None:
    assert nir_key(nir13) == key


def test_nir_key_is_the_formula() -> None:
    for nir13 in ("1550819004123", "2991233123999", "1000101001001"):
        assert nir_key(nir13) == f"{97 - int(nir13) % 97:02d}"


def test_nir_key_is_zero_padded() -> None:
    # Find a number whose key is a single digit, and check it is written on two characters.
    nir13 = next(
        f"185037645{n:04d}" for n in range(10_000) if 97 - int(f"185037645{n:04d}") % 97 < 10
    )
    assert len(nir_key(nir13)) == 2
    assert nir_key(nir13).startswith("0")


@pytest.mark.parametrize(("dept", "substitute"), [("2A", "19"), ("2B", "18")])
def test_corsica_departments_are_replaced_for_the_key(dept: str, substitute: str) -> None:
    nir13 = f"27502{dept}004123"
    expected = 97 - int(f"27502{substitute}004123") % 97
    assert nir_key(nir13) == f"{expected:02d}"
    assert nir_key(nir13.lower()) == f"{expected:02d}"
    assert is_valid_nir(nir13 + f"{expected:02d}")


def test_corsica_2a_and_2b_give_different_keys() -> None:
    assert nir_key("175022A004123") != nir_key("175022B004123")


def test_is_valid_nir_accepts_correct_keys_only() -> None:
    assert is_valid_nir("184127645108946")
    assert is_valid_nir("1 84 12 76 451 089 46")
    assert not is_valid_nir("184127645108947")  # wrong key
    assert not is_valid_nir("18412764510894")  # too short
    assert not is_valid_nir("1841276451089466")  # too long
    assert not is_valid_nir("584127645108946")  # no such sex digit
    assert not is_valid_nir("184007645108946")  # month 00
    assert not is_valid_nir("18412764510X946")  # letter outside the department
    assert not is_valid_nir("1841276451089AB")  # key must be digits


def test_nir_key_rejects_malformed_input() -> None:
    with pytest.raises(ValueError, match="13-character"):
        nir_key("12345")


def test_make_nir_assembles_parts_and_key() -> None:
    nir = make_nir(2, 1969, 5, "49588", 157)
    assert nir == "269054958815780"
    assert is_valid_nir(nir)
    overseas = make_nir(1, 2001, 11, "97105", 12)
    assert overseas[5:10] == "97105"
    assert is_valid_nir(overseas)
    with pytest.raises(ValueError, match="order"):
        make_nir(1, 2001, 11, "97105", 1000)
