"""Random passwords for test accounts that the password policy accepts.

A random password can spell a part of its account's name (`Xy7-gUlK-ADMiN1...` for
`t.admin.…` once failed a CI run), which the policy rightly refuses; draw again until it is
accepted, so an account's creation never depends on luck.
"""

from __future__ import annotations

import secrets

from rempart.identity.password_policy import PasswordOwner, WeakPassword, check_password


def acceptable_password(username: str, display_name: str, *, prefix: str = "Xy7-") -> str:
    while True:
        candidate = prefix + secrets.token_urlsafe(24)
        try:
            check_password(candidate, PasswordOwner(username, display_name))
        except WeakPassword:
            continue
        return candidate
