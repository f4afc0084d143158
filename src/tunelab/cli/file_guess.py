"""How ``eval --data`` and ``predict --input`` guess a new file's encoding, said once for both
commands' ``--help``.

A constant rather than a sentence in each epilog: the two copies had drifted from the reader
(they said nothing of Big5, the Korean and Japanese encodings or UTF-16 without a byte-order mark,
all of which ``detect_encoding`` takes). Kept out of ``tunelab.data`` so ``--help`` imports
neither pandas nor torch; a test checks it against the reader's list of encodings.
"""

from __future__ import annotations

ENCODING_GUESS = (
    "UTF-16 (by its byte-order mark, or NUL bytes on every other byte), else UTF-8 (with or\n"
    "without a byte-order mark), else the one of GB18030, Big5, EUC-KR, Shift-JIS and EUC-JP\n"
    "whose reading looks like its script, else Windows-1252 when bytes 0x80-0x9F occur, else\n"
    "Latin-1"
)
