"""French NIR (numéro d'inscription au répertoire) key computation and validation.

The NIR is 13 characters (sex, birth year, birth month, birth department, commune, order)
followed by a 2-digit key equal to 97 - (number mod 97). Corsica's department codes 2A and 2B
are not numbers: for the computation they are replaced by 19 and 18 respectively.
"""

from __future__ import annotations

import re

__all__ = ["is_valid_nir", "make_nir", "nir_key"]

# Sex 1/2 (3, 4, 7, 8 exist for provisional or foreign-born registrations), year, month
# 01-12 or 20-42/50-99 (unknown month, kept by INSEE), department + commune (with Corsica's
# letters in the department position only), order.
_NIR13 = re.compile(r"^[1-478]\d{2}(0[1-9]|1[0-2]|[2-9]\d)(\d{2}|2[AB])\d{6}$")


def _as_number(nir13: str) -> int:
    dept = nir13[5:7].upper()
    if dept == "2A":
        return int(nir13[:5] + "19" + nir13[7:])
    if dept == "2B":
        return int(nir13[:5] + "18" + nir13[7:])
    return int(nir13)


def nir_key(nir13: str) -> str:
    """Return the 2-digit control key of a 13-character NIR (spaces ignored).

    >>> nir_key("1841276451089")
    '46'
    """
    compact = nir13.replace(" ", "").upper()
    if len(compact) != 13 or not _NIR13.match(compact):
        raise ValueError(f"not a 13-character NIR: {nir13!r}")
    return f"{97 - _as_number(compact) % 97:02d}"


def is_valid_nir(nir15: str) -> bool:
    """True when ``nir15`` (spaces ignored) is a well-formed NIR whose key matches."""
    compact = nir15.replace(" ", "").upper()
    if len(compact) != 15 or not compact[13:].isdigit():
        return False
    if not _NIR13.match(compact[:13]):
        return False
    return nir_key(compact[:13]) == compact[13:]


def make_nir(sex_digit: int, birth_year: int, birth_month: int, insee5: str, order: int) -> str:
    """Build a 15-character NIR from its parts.

    ``insee5`` is the birth place code as the NIR records it: department + commune for people
    born in France (``97X`` + 2 digits overseas), ``99`` + INSEE country code when born abroad.
    """
    if not 1 <= order <= 999:
        raise ValueError("order must be in 1..999")
    nir13 = f"{sex_digit}{birth_year % 100:02d}{birth_month:02d}{insee5}{order:03d}"
    return nir13 + nir_key(nir13)
