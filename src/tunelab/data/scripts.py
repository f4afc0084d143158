"""Character classes of the scripts written without spaces between words (Chinese, Japanese).

Shared by what splits text into words: the NER readers (a span may start at any such character) and
text augmentation (each such character is a word of its own). Pure ``re``: importing it imports
nothing else.
"""

from __future__ import annotations

import re

#: CJK ideographs and kana, as ranges for a regex character class (``[{CJK}]``).
CJK = (
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uf900-\ufaff"  # compatibility ideographs
    "\U00020000-\U0002ffff"  # extensions B-F
)

#: One character written without spaces around it: the ideographs and kana above, CJK punctuation
#: ("。", "，") and full-width forms.
UNSPACED = re.compile(rf"[{CJK}\u3000-\u303f\uff00-\uffef]")
