"""Words -> sub-token windows with aligned labels, and window predictions -> one tag per word.

Every input, labelled or not, is a list of words tokenised with ``is_split_into_words=True``:
CoNLL and JSONL-token files give the words; a JSONL-span file and a raw text to predict are split
by the reader's own word pattern (words, single punctuation marks, single CJK characters) with
each word's character offsets. One path for training and prediction means a model sees at
prediction time exactly the word starts it was trained on, whatever the tokenizer. (A tokenizer's
own pre-tokenizer would not do: a sentencepiece tokenizer such as e5-small-multilingual's splits
only on spaces, so a Chinese sentence would be one "word" with one tag.)

``encode_words`` reads the tokenizer as it is given. Given word by word, a byte-level BPE tokenizer
(RoBERTa, GPT-2) left at its default ``add_prefix_space=False`` reads every word as the start of a
text, "visited" mid-sentence as ``vis`` ``ited`` instead of the ``Ġvisited`` the model was
pre-trained on; ``prefix_space`` sets it to read each word after a space. That is a choice made
once, when a run begins (the task's ``prepare_tokenizer`` hook, which the trainer calls and records
in run.json), and kept with the run's ``tokenizer/`` folder: setting it here, on every tokenizer
given, switched a run trained before the choice existed to pieces it never saw, at prediction and
on a resume.

Each word is labelled on one sub-token, its first (the rest and the special tokens get -100, ignored
by the loss); except that where a tokenizer gives a word a bare word-boundary piece first
(sentencepiece's ``▁``: it does for every Chinese character in e5's vocabulary; a byte-level BPE's
``Ġ`` before a word its vocabulary has no ``Ġ`` piece for), the label goes to the next piece, since
the bare piece is the same token for every such word and says nothing about it.

A sentence longer than ``max_length`` becomes overlapping windows (the tokenizer's
``return_overflowing_tokens`` with ``stride`` shared tokens), never truncated. A word whose
labelled sub-token lies in two windows is predicted from the one where it is most central, i.e.
farthest from a cut edge (a sentence's own start and end are not cuts): that is where the model
saw the most context on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tunelab.data.encoding import Encoded
from tunelab.tasks.token_classification.reading import word_offsets

IGNORE = -100  # the label of a position the loss and the metrics skip (torch's ignore_index)
_MARKER = "▁"  # sentencepiece's word-boundary piece (U+2581)
_BYTE_MARKER = "Ġ"  # a byte-level BPE's space (byte 0x20 as it writes it), the boundary its pieces carry


def split_words(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Words of a raw text and their ``(start, end)`` character offsets (``text[start:end]`` is the word).

    The same split as a JSONL-span training file's, so a model predicts on the word starts it
    learned on; Chinese and Japanese characters are one word each.
    """
    offsets = word_offsets(text)
    return [text[s:e] for s, e in offsets], offsets


@dataclass
class Windows:
    """The tokenised windows of a set of sentences (``extra`` of the ``Encoded`` that holds them)."""

    sample: list[int]  # window -> index of its sentence
    words: list[list[int]]  # window -> per token: the word it labels, or -1 (specials, other sub-tokens)
    cut_left: list[bool]  # window -> it starts inside its sentence (not at the sentence start)
    cut_right: list[bool]  # window -> it ends inside its sentence


def encode_words(
    tokenizer: Any,
    sentences: list[list[str]],
    *,
    max_length: int,
    stride: int,
    tags: list[list[int]] | None = None,
    extra: dict[str, list[Any]] | None = None,
) -> Encoded:
    """Tokenise word lists into windows of at most ``max_length`` tokens.

    Args:
        tokenizer: a fast (Rust) Hugging Face tokenizer; word ids need one.
        sentences: the words of each sentence.
        max_length: tokens per window, special tokens included.
        stride: tokens shared by consecutive windows of one sentence; capped at half a window so
            that each window moves at least half a window on.
        tags: the tag id of each word (labelled data), or None.
        extra: per-sentence data to keep with each window (e.g. character offsets), by key.

    Returns:
        One example per window. ``labels`` (when ``tags`` is given): per token the tag id of the
        word it labels, else -100. ``extra``: ``sample``, ``words``, ``cut_left``, ``cut_right``
        (see :class:`Windows`), ``num_words`` and each key of ``extra``, per window;
        ``text_tokens``: per sentence, its tokens with the windows' overlaps counted once.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("token classification needs a fast tokenizer (word ids); load it with use_fast=True")
    content = max_length - tokenizer.num_special_tokens_to_add()
    if content < 2:
        raise ValueError(f"max_length={max_length} leaves {content} tokens per window; use at least 8")
    stride = min(stride, content // 2)
    out = tokenizer(
        sentences,
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        padding=False,
        return_attention_mask=False,
    )
    mapping: list[int] = out["overflow_to_sample_mapping"]
    # Windows come back sentence-major; the per-sentence loop below relies on it (a cheap guard
    # against a tokenizer change).
    if mapping != sorted(mapping):
        raise RuntimeError("tokenizer returned overflowing windows out of sentence order")
    marker = _marker_id(tokenizer)
    win = Windows(sample=list(mapping), words=[], cut_left=[], cut_right=[])
    by_sample: dict[int, list[int]] = {}
    for w, s in enumerate(mapping):
        by_sample.setdefault(s, []).append(w)
    specials = tokenizer.num_special_tokens_to_add()
    text_tokens: list[int] = []  # per sentence: its tokens counted once (consecutive windows share `stride`)
    for s in range(len(sentences)):
        windows = by_sample.get(s, [])
        word_ids = [out.word_ids(w) for w in windows]
        content = sum(sum(w is not None for w in wids) for wids in word_ids)
        text_tokens.append(specials + content - stride * max(len(windows) - 1, 0))
        ids = [out["input_ids"][w] for w in windows]
        for k, labelled in enumerate(_label_positions(word_ids, ids, stride=stride, marker=marker)):
            win.words.append(labelled)
            win.cut_left.append(k > 0)
            win.cut_right.append(k < len(windows) - 1)
    labels = None
    if tags is not None:
        labels = [
            [tags[s][i] if i >= 0 else IGNORE for i in words]
            for s, words in zip(mapping, win.words, strict=True)
        ]
    keep: dict[str, list[Any]] = {
        "sample": win.sample,
        "words": win.words,
        "cut_left": win.cut_left,
        "cut_right": win.cut_right,
        "num_words": [len(sentences[s]) for s in mapping],
    }
    for key, values in (extra or {}).items():
        keep[key] = [values[s] for s in mapping]  # the same object per window of a sentence: no copy
    return Encoded(
        input_ids=out["input_ids"],
        token_type_ids=out.get("token_type_ids"),
        labels=labels,
        pad_id=tokenizer.pad_token_id or 0,
        extra=keep,
        text_tokens=text_tokens,
    )


def prefix_space(tokenizer: Any) -> bool:
    """Set a tokenizer that reads a word given alone as the start of a text to read it as one after
    a space, in place; whether it changed anything (False: the tokenizer is left as it was).

    Given words (``is_split_into_words=True``), a byte-level BPE tokenizer (RoBERTa, GPT-2) with
    ``add_prefix_space=False``, their default, encodes each as if it began the text: no ``Ġ`` piece
    anywhere, and mid-sentence words in the pieces of sentence starts, without an error; a
    sentencepiece one with ``prepend_scheme="never"`` (``add_prefix_space=False``) likewise drops
    ``▁``. Hugging Face asks for ``add_prefix_space=True`` with such input. The flag lives in the
    backend's pre-tokenizer, so setting the attribute alone would change nothing; both are set. In
    place, since the trainer saves this object as the run's ``tokenizer/`` (``tokenizer.json`` and
    ``add_prefix_space`` in its config), so predict, eval, export and serve load the setting back.
    Called once, when a run begins (``TokenClassificationTask.prepare_tokenizer``), never on a
    run's saved tokenizer: that one is read as the run was trained.

    A pre-tokenizer ``Sequence`` is left alone: its earlier steps split a word further (Llama 3's
    regex), and a prefix space would then go before every piece, not once per word.
    """
    from tokenizers import pre_tokenizers, processors

    backend = tokenizer.backend_tokenizer
    pre = backend.pre_tokenizer
    if isinstance(pre, pre_tokenizers.ByteLevel) and not pre.add_prefix_space:
        pre.add_prefix_space = True
        post = backend.post_processor
        if isinstance(post, (processors.RobertaProcessing, processors.ByteLevel)):
            post.add_prefix_space = True  # its offsets then skip the added space, as a reloaded one's do
    elif isinstance(pre, pre_tokenizers.Metaspace) and pre.prepend_scheme == "never":
        pre.prepend_scheme = "always"
    else:
        return False
    # What save_pretrained writes to tokenizer_config.json: RoBERTa's class rebuilds its
    # pre-tokenizer from it when the run's tokenizer is loaded, whatever tokenizer.json says.
    tokenizer.add_prefix_space = True
    return True


def _marker_id(tokenizer: Any) -> int | None:
    """The id of a bare word-boundary piece, if the vocabulary has one: ``Ġ`` (a space) for a
    byte-level BPE tokenizer, else sentencepiece's ``▁``."""
    from tokenizers import pre_tokenizers

    byte_level = isinstance(tokenizer.backend_tokenizer.pre_tokenizer, pre_tokenizers.ByteLevel)
    token_id = tokenizer.convert_tokens_to_ids(_BYTE_MARKER if byte_level else _MARKER)
    return None if token_id is None or token_id == tokenizer.unk_token_id else int(token_id)


def _label_positions(
    word_ids: list[list[int | None]], ids: list[list[int]], *, stride: int, marker: int | None
) -> list[list[int]]:
    """Per window of one sentence: per token, the word it is the labelled sub-token of, else -1.

    The windows are put back into the sentence's full token sequence first (window ``k`` starts
    ``stride`` content tokens before window ``k - 1`` ends), so that "the first sub-token of a word"
    means the same in every window, also where a window starts in the middle of a word.
    """
    # Full content sequence (no special tokens) and where each window starts in it.
    full_words: list[int] = []
    full_ids: list[int] = []
    starts: list[int] = []
    spans: list[tuple[int, int]] = []  # per window: first and last+1 content position in the window
    for k, (wids, tids) in enumerate(zip(word_ids, ids, strict=True)):
        inner = [j for j, w in enumerate(wids) if w is not None]
        lo, hi = (inner[0], inner[-1] + 1) if inner else (0, 0)
        spans.append((lo, hi))
        start = 0 if k == 0 else starts[-1] + (spans[k - 1][1] - spans[k - 1][0]) - stride
        starts.append(start)
        words = [w for w in wids[lo:hi] if w is not None]
        overlap = len(full_words) - start
        if k > 0 and (overlap < 0 or full_words[start:] != words[:overlap]):
            raise RuntimeError("tokenizer windows do not overlap by `stride` tokens as expected")
        full_words.extend(words[overlap:] if k > 0 else words)
        full_ids.extend(tids[lo:hi][overlap:] if k > 0 else tids[lo:hi])
    # The labelled position of each word in the full sequence.
    labelled = [False] * len(full_words)
    for p, w in enumerate(full_words):
        if p > 0 and full_words[p - 1] == w:
            continue  # not the word's first sub-token
        bare = marker is not None and full_ids[p] == marker
        if bare and p + 1 < len(full_words) and full_words[p + 1] == w:
            labelled[p + 1] = True  # "▁" then the piece that carries the word
        else:
            labelled[p] = True
    result = []
    for wids, start, (lo, _hi) in zip(word_ids, starts, spans, strict=True):
        row = [-1] * len(wids)
        for j, w in enumerate(wids):
            if w is not None and labelled[start + j - lo]:
                row[j] = w
        result.append(row)
    return result


def merge_windows(probs: np.ndarray, enc: Encoded) -> list[tuple[np.ndarray, np.ndarray]]:
    """One prediction per word of each sentence, from the window where the word is most central.

    Args:
        probs: (N_windows, T, L) probabilities (or logits: only the argmax and the chosen value are read).
        enc: the windows ``encode_words`` made.

    Returns:
        Per sentence, ``(tag ids (W,), probability of each (W,))``; a word the tokenizer gave no
        sub-token (a lone zero-width or control character) has tag -1 and probability 0.
    """
    extra = enc.extra or {}
    samples: list[int] = extra["sample"]
    n = (max(samples) + 1) if samples else 0
    tags = [np.full(0, -1, dtype=np.int64)] * n
    scores = [np.zeros(0)] * n
    best: list[np.ndarray] = [np.zeros(0)] * n
    seen: set[int] = set()
    for w, s in enumerate(samples):
        if s not in seen:
            seen.add(s)
            size = extra["num_words"][w]
            tags[s] = np.full(size, -1, dtype=np.int64)
            scores[s] = np.zeros(size)
            best[s] = np.full(size, -1.0)
        row = np.asarray(extra["words"][w])
        positions = np.flatnonzero(row >= 0)
        if positions.size == 0:
            continue
        last = len(enc.input_ids[w]) - 1
        # Distance to a cut edge of the window; a sentence's true start or end is no cut.
        left = positions if extra["cut_left"][w] else np.full(positions.size, np.inf)
        right = (last - positions) if extra["cut_right"][w] else np.full(positions.size, np.inf)
        centrality = np.minimum(left, right)
        word = row[positions]
        better = centrality > best[s][word]
        chosen = probs[w, positions[better]]  # (P, L)
        tags[s][word[better]] = chosen.argmax(axis=-1)
        scores[s][word[better]] = chosen.max(axis=-1)
        best[s][word[better]] = centrality[better]
    return list(zip(tags, scores, strict=True))
