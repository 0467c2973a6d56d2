"""Index tables for words and characters, and featurization of token
sequences into padded id arrays.

Pure Python/numpy: no spaCy, no torch. The tables are built once from the
training tokens at ``initialize()`` and serialised with the model.
"""
import re
from collections import Counter
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence

import numpy as np

PAD, UNK, MASK = "<PAD>", "<UNK>", "<Mask>"
SPECIALS = (PAD, UNK, MASK)
PAD_ID, UNK_ID, MASK_ID = 0, 1, 2
_DIGITS = re.compile(r"[0-9]")
# char ids per token string, cached for speed; cleared when full (~350 bytes an entry)
_CHAR_CACHE_LIMIT = 50_000


class Batch(NamedTuple):
    """Padded ids of a batch of token sequences."""

    word_ids: np.ndarray  # [B, L] int64, PAD_ID at padding
    char_ids: np.ndarray  # [B, L, W] int64, PAD_ID at padding
    lengths: np.ndarray  # [B] int64


class IndexTables:
    """Word and character vocabularies with their training frequencies.

    Ids 0, 1, 2 of both tables are ``<PAD>``, ``<UNK>`` and ``<Mask>``.
    ``word_counts[i]`` is how often entry i was seen in training (tokens
    below ``min_freq`` are counted under ``<UNK>``); these counts weight the
    embedding normalisation.

    The first ``n_trained`` entries are the specials and the training words;
    entries after them (``extra_words``, e.g. words that only have a
    pretrained vector) have count 0. With ``fallbacks``, a token whose key is
    not in the table is looked up lowercased, then lowercased with digits
    normalised (see :func:`spacy_mat.vectors.lookup_keys`), before ``<UNK>``:
    "Merkel", unseen in training, gets the row of GloVe's "merkel".
    """

    def __init__(
        self,
        words: Sequence[str] = SPECIALS,
        word_counts: Optional[Sequence[int]] = None,
        chars: Sequence[str] = SPECIALS,
        char_counts: Optional[Sequence[int]] = None,
        *,
        lowercase: bool = False,
        normalize_digits: bool = False,
        max_word_length: int = 50,
        n_trained: Optional[int] = None,
        fallbacks: bool = False,
    ):
        self.words = list(words)
        self.n_trained = len(self.words) if n_trained is None else n_trained
        self.fallbacks = fallbacks
        self.chars = list(chars)
        self.word_counts = list(word_counts or [0] * len(self.words))
        self.char_counts = list(char_counts or [0] * len(self.chars))
        self.lowercase = lowercase
        self.normalize_digits = normalize_digits
        self.max_word_length = max_word_length
        self._word_index = {w: i for i, w in enumerate(self.words)}
        self._char_index = {c: i for i, c in enumerate(self.chars)}
        self._char_cache: Dict[str, np.ndarray] = {}

    @classmethod
    def from_sequences(
        cls,
        sequences: Iterable[Sequence[str]],
        *,
        min_freq: int = 1,
        lowercase: bool = False,
        normalize_digits: bool = False,
        max_word_length: int = 50,
        extra_words: Iterable[str] = (),
        fallbacks: bool = False,
    ) -> "IndexTables":
        """Build tables from training token sequences.

        ``extra_words`` (e.g. words that have pretrained vectors) get an entry
        with count 0 even when rare or unseen in training.
        """
        tables = cls(lowercase=lowercase, normalize_digits=normalize_digits,
                     max_word_length=max_word_length)
        word_freq: Counter = Counter()
        char_freq: Counter = Counter()
        for seq in sequences:
            for text in seq:
                word_freq[tables.word_key(text)] += 1
                char_freq.update(text[:max_word_length])
        words, counts = list(SPECIALS), [0, 0, 0]
        for word, count in sorted(word_freq.items(), key=lambda wc: (-wc[1], wc[0])):
            if count >= min_freq and word not in SPECIALS:
                words.append(word)
                counts.append(count)
            else:
                counts[UNK_ID] += count
        known = set(words)
        n_trained = len(words)
        for word in extra_words:
            key = tables.word_key(word)
            if key not in known:
                known.add(key)
                words.append(key)
                counts.append(0)
        chars = list(SPECIALS) + sorted(char_freq)
        char_counts = [0, 0, 0] + [char_freq[c] for c in chars[3:]]
        return cls(words, counts, chars, char_counts, lowercase=lowercase,
                   normalize_digits=normalize_digits, max_word_length=max_word_length,
                   n_trained=n_trained, fallbacks=fallbacks)

    def case_groups(self) -> np.ndarray:
        """``[len(words)]`` int64: the same id for entries with the same
        lowercase form (casing variants of one word), computed once."""
        groups = getattr(self, "_case_groups", None)
        if groups is None or len(groups) != len(self.words):
            ids: Dict[str, int] = {}
            groups = np.fromiter((ids.setdefault(w.lower(), len(ids)) for w in self.words),
                                 dtype=np.int64, count=len(self.words))
            self._case_groups = groups
        return groups

    def case_groups_on(self, device: "torch.device") -> "torch.Tensor":
        """:meth:`case_groups` as a tensor on ``device``: on the CPU a view
        of the array, elsewhere uploaded once and kept (MAT reads it every
        step)."""
        import torch

        groups = self.case_groups()
        if torch.device(device).type == "cpu":
            return torch.from_numpy(groups)
        cached = getattr(self, "_case_groups_device", None)
        if cached is None or cached[0] is not groups or cached[1] != torch.device(device):
            cached = (groups, torch.device(device), torch.as_tensor(groups, device=device))
            self._case_groups_device = cached
        return cached[2]

    def word_key(self, text: str) -> str:
        """The form under which a token is looked up in the word table."""
        if self.lowercase:
            text = text.lower()
        if self.normalize_digits:
            text = _DIGITS.sub("0", text)
        return text

    def word_id(self, text: str) -> int:
        key = self.word_key(text)
        found = self._word_index.get(key)
        if found is not None:
            return found
        if self.fallbacks:
            lower = key.lower()
            found = self._word_index.get(lower)
            if found is None:
                found = self._word_index.get(_DIGITS.sub("0", lower))
            if found is not None:
                return found
        return UNK_ID

    def char_ids(self, text: str) -> np.ndarray:
        """Character ids of one token (cached per token string)."""
        ids = self._char_cache.get(text)
        if ids is None:
            index = self._char_index
            clipped = text[: self.max_word_length] or " "
            ids = np.fromiter((index.get(c, UNK_ID) for c in clipped), dtype=np.int64,
                              count=len(clipped))
            if len(self._char_cache) >= _CHAR_CACHE_LIMIT:
                self._char_cache.clear()
            self._char_cache[text] = ids
        return ids

    def featurize(self, sequences: Sequence[Sequence[str]]) -> Batch:
        """Padded word and char ids for non-empty token sequences."""
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        if len(sequences) and lengths.min() == 0:
            raise ValueError("featurize() got an empty sequence; filter empty sequences first")
        n_max = int(lengths.max()) if len(sequences) else 0
        char_rows = [[self.char_ids(t) for t in seq] for seq in sequences]
        w_max = max((len(c) for row in char_rows for c in row), default=1)
        word_ids = np.zeros((len(sequences), n_max), dtype=np.int64)
        char_ids = np.zeros((len(sequences), n_max, w_max), dtype=np.int64)
        for b, (seq, row) in enumerate(zip(sequences, char_rows)):
            word_ids[b, : len(seq)] = [self.word_id(t) for t in seq]
            for i, chars in enumerate(row):
                char_ids[b, i, : len(chars)] = chars
        return Batch(word_ids, char_ids, lengths)

    def to_dict(self) -> dict:
        return {
            "words": self.words, "word_counts": self.word_counts,
            "chars": self.chars, "char_counts": self.char_counts,
            "lowercase": self.lowercase, "normalize_digits": self.normalize_digits,
            "max_word_length": self.max_word_length,
            "n_trained": self.n_trained, "fallbacks": self.fallbacks,
        }

    @classmethod
    def from_dict(cls, msg: dict) -> "IndexTables":
        return cls(msg["words"], msg["word_counts"], msg["chars"], msg["char_counts"],
                   lowercase=msg["lowercase"], normalize_digits=msg["normalize_digits"],
                   max_word_length=msg["max_word_length"],
                   # tables saved before pretrained-only rows existed: all trained
                   n_trained=msg.get("n_trained"), fallbacks=msg.get("fallbacks", False))

    def __len__(self) -> int:
        return len(self.words)
