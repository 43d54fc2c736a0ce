"""Token search (codes, Codings, CodeableConcepts, Identifiers, booleans) as blind-index tokens.

FHIR token search has four forms, each answered by one token, so equality of tokens is the match:
  `code`          any system          "c:<code>"
  `system|code`   that system         "sc:<system>|<code>"
  `|code`         no system at all    "nc:<code>"
  `system|`       any code of system  "sy:<system>"
A value is indexed under every form it satisfies. Codes and identifiers are compared exactly
(case-sensitive), as most code systems and identifier issuers require. `|` and `\\` inside a
system or code are escaped, so "a|b" + "c" and "a" + "b|c" cannot produce the same token.
"""

from __future__ import annotations

from rempart.errors import InvalidSearch


def _esc(part: str) -> str:
    return part.replace("\\", "\\\\").replace("|", "\\|")


def code_tokens(system: str | None, code: str | None, ns: str = "") -> list[str]:
    """Tokens of one (system, code) pair. `ns` keeps families apart within one parameter (the
    `:identifier` tokens of a reference parameter use "i")."""
    out: list[str] = []
    if code:
        out.append(f"{ns}c:{code}")
        if system:
            out.append(f"{ns}sc:{_esc(system)}|{_esc(code)}")
        else:
            out.append(f"{ns}nc:{code}")
    if system:
        out.append(f"{ns}sy:{system}")
    return out


def split_unescaped(value: str, sep: str) -> list[str]:
    """Split on `sep` not preceded by a backslash, keeping escapes for a later unescape()."""
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            cur.append(value[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def unescape(value: str) -> str:
    """FHIR search escapes: `\\,`, `\\|`, `\\$` and `\\\\` stand for the character itself."""
    out: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            out.append(value[i + 1])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def query_token(raw: str, param: str, ns: str = "") -> str:
    """The token a single (comma-free) token query value looks up."""
    parts = split_unescaped(raw, "|")
    if len(parts) == 1:
        code = unescape(parts[0])
        return f"{ns}c:{code}"
    if len(parts) != 2:
        raise InvalidSearch(f"Search parameter '{param}': use code, system|code, |code or system|")
    system, code = unescape(parts[0]), unescape(parts[1])
    if system and code:
        return f"{ns}sc:{_esc(system)}|{_esc(code)}"
    if code:
        return f"{ns}nc:{code}"
    if system:
        return f"{ns}sy:{system}"
    raise InvalidSearch(f"Search parameter '{param}': '|' alone names no system and no code")
