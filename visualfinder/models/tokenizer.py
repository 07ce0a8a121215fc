"""CLIP's byte-pair tokenizer in plain Python and numpy: open_clip's SimpleTokenizer without torch.

It reads open_clip's own vocabulary file (bpe_simple_vocab_16e6.txt.gz, found through the
package's import spec, never by importing open_clip) and produces the same token ids: a text
query then needs neither torch nor open_clip (tests/test_lean_path.py checks equality on
every shipped model config). Models with another tokenizer (Hugging Face multilingual ones,
SigLIP's, a reduction mask) are not served here: `lean_tokenizer` returns None and the
embedder uses open_clip's.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import logging
import string
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
# open_clip keeps the first 49152 - 256 - 2 merges of the file (after its header line).
MERGES = 49152 - 256 - 2
# They end within the first ~525 KB of the decompressed file (of 3.2 MB): read only that.
_MERGES_PREFIX_BYTES = 600_000
SPECIAL_TOKENS = ("<start_of_text>", "<end_of_text>")
CLEANERS = ("lower", "whitespace", "canonicalize")
# Plain printable ASCII without an entity: ftfy.fix_text leaves it as it is (checked against
# ftfy in the tests), so the common query skips importing ftfy (~90 ms).
_PLAIN_ASCII = frozenset(string.printable) - set("&\t\n\r\x0b\x0c")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def vocab_path() -> Path | None:
    """open_clip's vocabulary file, located without importing open_clip (or torch)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / VOCAB_FILE
    return path if path.is_file() else None


@lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte -> printable character table (as open_clip builds it)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def _fix_text(text: str) -> str:
    if all(ch in _PLAIN_ASCII for ch in text):
        return text
    import ftfy  # only for text that may need it

    return ftfy.fix_text(text)


def _basic_clean(text: str) -> str:
    return html.unescape(html.unescape(_fix_text(text))).strip()


def _whitespace_clean(text: str) -> str:
    return " ".join(text.split()).strip()


def _clean(text: str, how: str) -> str:
    if how == "lower":
        return _whitespace_clean(_basic_clean(text)).lower()
    if how == "whitespace":
        return _whitespace_clean(_basic_clean(text))
    # canonicalize: lower case, no punctuation (big_vision's prompt engineering)
    text = _basic_clean(text).replace("_", " ").translate(_PUNCTUATION).lower()
    return " ".join(text.split()).strip()


class ClipTokenizer:
    """Texts -> (n, context_length) int64 token ids, equal to open_clip's SimpleTokenizer.

    Ids come from the merges alone: a merged token's id is 512 + the rank of the merge that
    made it (each merge's joined string is unique in the vocabulary), so no 49k-entry encoder
    is built, and only the part of the file that open_clip uses is decompressed."""

    def __init__(self, context_length: int = 77, clean: str = "lower", vocab: Path | None = None):
        if clean not in CLEANERS:
            raise ValueError(f"unknown text cleaning {clean!r}")
        path = vocab or vocab_path()
        if path is None:
            raise FileNotFoundError(f"{VOCAB_FILE} (it ships with open_clip)")
        self.context_length = context_length
        self.clean = clean
        with gzip.open(path) as fh:
            head = fh.read(_MERGES_PREFIX_BYTES)
        merges = head.decode("utf-8", errors="replace").split("\n", MERGES + 1)[1 : MERGES + 1]
        if len(merges) < MERGES:  # another vocabulary file than open_clip's: read it whole
            with gzip.open(path) as fh:
                merges = fh.read().decode("utf-8").split("\n")[1 : MERGES + 1]
        # Merges keyed by their line ("a b"): no tuple per merge.
        self._ranks = dict(zip(merges, range(len(merges)), strict=True))
        byte_chars = list(_bytes_to_unicode().values())
        self._base_ids = {c: i for i, c in enumerate(byte_chars + [c + "</w>" for c in byte_chars])}
        self._first_merge_id = len(self._base_ids)
        self.sot_token_id = self._first_merge_id + len(merges)
        self.eot_token_id = self.sot_token_id + 1
        self._cache: dict[str, tuple[int, ...]] = {}
        self._cache_lock = threading.Lock()
        import regex  # open_clip's own pattern needs \p{L} classes

        self._pattern = regex.compile(
            "|".join(SPECIAL_TOKENS) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )

    def _bpe(self, token: str) -> tuple[int, ...]:
        """One pre-token (bytes as CLIP's characters) -> its token ids, merging by rank."""
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        if token in SPECIAL_TOKENS:
            return (self.sot_token_id if token == SPECIAL_TOKENS[0] else self.eot_token_id,)
        word = [*token[:-1], token[-1] + "</w>"]
        ids = [self._base_ids[symbol] for symbol in word]
        ranks = self._ranks
        missing = len(ranks) + 1
        while len(word) > 1:
            pairs = {f"{a} {b}" for a, b in zip(word, word[1:], strict=False)}
            best = min(pairs, key=lambda pair: ranks.get(pair, missing))
            rank = ranks.get(best)
            if rank is None:
                break
            first, second = best.split(" ")
            merged: list[str] = []
            merged_ids: list[int] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    merged_ids.append(self._first_merge_id + rank)
                    i += 2
                else:
                    merged.append(word[i])
                    merged_ids.append(ids[i])
                    i += 1
            word, ids = merged, merged_ids
        result = tuple(ids)
        with self._cache_lock:
            self._cache[token] = result
        return result

    def encode(self, text: str) -> list[int]:
        byte_encoder = _bytes_to_unicode()
        ids: list[int] = []
        for token in self._pattern.findall(_clean(text, self.clean)):
            ids.extend(self._bpe("".join(byte_encoder[b] for b in token.encode("utf-8"))))
        return ids

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        length = context_length or self.context_length
        result = np.zeros((len(texts), length), dtype=np.int64)
        for i, text in enumerate(texts):
            tokens = [self.sot_token_id, *self.encode(text), self.eot_token_id]
            if len(tokens) > length:  # truncate, keeping the end-of-text token last
                tokens = tokens[:length]
                tokens[-1] = self.eot_token_id
            result[i, : len(tokens)] = tokens
        return result


def unsupported_reason(model_name: str, model_cfg: dict) -> str | None:
    """Why the lean tokenizer cannot stand in for open_clip's for this model (None: it can)."""
    text_cfg = model_cfg.get("text_cfg", {}) or {}
    if ":" in model_name:
        return "a model loaded from a hub or folder names its own tokenizer"
    if text_cfg.get("hf_tokenizer_name"):
        return f"it uses the Hugging Face tokenizer {text_cfg['hf_tokenizer_name']}"
    if "siglip" in model_name.lower():
        return "it uses the SigLIP tokenizer"
    kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
    clean = kwargs.pop("clean", "lower")
    if clean not in CLEANERS or kwargs:
        return f"its tokenizer options {text_cfg.get('tokenizer_kwargs')} are not supported"
    if vocab_path() is None:
        return f"open_clip's {VOCAB_FILE} was not found"
    return None


_tokenizers: dict[tuple[int, str], ClipTokenizer] = {}
_tokenizers_lock = threading.Lock()


def lean_tokenizer(model_name: str, model_cfg: dict) -> ClipTokenizer | None:
    """The numpy tokenizer for a model, or None (with a one-line info log) when it needs open_clip's."""
    reason = unsupported_reason(model_name, model_cfg)
    if reason is not None:
        log.info("text of %s goes through open_clip's tokenizer: %s", model_name, reason)
        return None
    text_cfg = model_cfg.get("text_cfg", {}) or {}
    key = (
        int(text_cfg.get("context_length", 77)),
        (text_cfg.get("tokenizer_kwargs") or {}).get("clean", "lower"),
    )
    with _tokenizers_lock:  # one vocabulary per process, whatever the number of models
        if key not in _tokenizers:
            _tokenizers[key] = ClipTokenizer(*key)
        return _tokenizers[key]
