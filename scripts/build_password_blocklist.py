"""Build `src/rempart/identity/data/common-passwords.txt.xz`, the password blocklist.

Sources (all redistributable; see src/rempart/identity/data/SOURCES.md):
- the Python `zxcvbn` package's frequency lists (MIT): 30,000 common passwords, English
  Wikipedia and film words, English first names and surnames;
- npm `@zxcvbn-ts/language-common` (MIT): 49,233 common and breached passwords;
- npm `@zxcvbn-ts/language-fr` (MIT; commonWords ODC-BY, OpenSubtitles via OPUS): French
  Wikipedia words, common words, first names and last names.

NIST SP 800-63B asks to refuse passwords from breach corpora and dictionary words; French
words matter here because the staff are French. Entries shorter than 4 characters are dropped
(the policy asks 15 characters; short entries only matter as the core of a longer password,
and 1-3 letter cores would refuse random passwords).

Usage: fetch the two npm tarballs with `npm pack @zxcvbn-ts/language-common
@zxcvbn-ts/language-fr`, unpack them, then
`python scripts/build_password_blocklist.py COMMON_DIR FR_DIR`.
"""

from __future__ import annotations

import json
import lzma
import sys
import unicodedata
from pathlib import Path

from zxcvbn.frequency_lists import FREQUENCY_LISTS

OUT = Path(__file__).resolve().parent.parent / "src/rempart/identity/data/common-passwords.txt.xz"
MIN_ENTRY = 4


def fold(word: str) -> str:
    return unicodedata.normalize("NFKC", word).casefold().strip()


def main(common_dir: str, fr_dir: str) -> int:
    words: set[str] = set()
    for entries in FREQUENCY_LISTS.values():
        words.update(entries)
    words.update(json.loads((Path(common_dir) / "src/passwords.json").read_text()))
    for name in ("wikipedia", "commonWords", "firstnames", "lastnames"):
        words.update(json.loads((Path(fr_dir) / f"src/{name}.json").read_text()))
    folded = sorted({w for w in map(fold, words) if len(w) >= MIN_ENTRY and "\n" not in w})
    OUT.write_bytes(lzma.compress("\n".join(folded).encode(), preset=9))
    print(f"{len(folded)} entries, {OUT.stat().st_size} bytes -> {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
