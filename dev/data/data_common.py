"""Shared helpers for the data-preparation scripts in dev/data/.

Standard library only (tiktoken is imported lazily, by gpt2_encoder alone), so
any script can `from data_common import ...` and the tokenizer file can be
written on a machine without tiktoken.

File formats are specified in docs/formats.md (llm.c's formats):
  - data shard: 256 int32 header [20240520, 1, ntok] then ntok uint16 tokens
                (or [20240801, 7, ntok] then uint32 tokens when an id >= 65536)
  - tokenizer:  256 int32 header [20240328, 2, V, eot] then V records of
                uint8 length + that many raw bytes
All integers are little-endian.
"""

import array
import hashlib
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request

# ---------------------------------------------------------------------------
# locating input files

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED_DATA_DIR = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data")
CACHE_DIR = os.path.join(REPO_ROOT, "dev", "data", "cache")

_GPT2_URL = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"

# relpath -> (canonical url, sha256); the sha256s are those of the shared data README
KNOWN_FILES = {
    "tinyshakespeare.txt": (
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    ),
    "gpt2/encoder.json": (
        _GPT2_URL + "encoder.json",
        "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    ),
    "gpt2/vocab.bpe": (
        _GPT2_URL + "vocab.bpe",
        "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    ),
}


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def find_shared_file(relpath, url=None, sha256=None):
    """Return the path of a data file, looking in this order:

    1. <repo>/../shared/data/<relpath>
    2. $LLMC_DATA_DIR/<relpath>
    3. dev/data/cache/<relpath> (a previous download; its sha256 is checked)
    4. download `url` into dev/data/cache/<relpath>, checking `sha256`.

    url/sha256 default to the pinned values of KNOWN_FILES for the known files.
    Files found in 1. or 2. are used as they are (not hashed).
    """
    known_url, known_sha = KNOWN_FILES.get(relpath, (None, None))
    url = url or known_url
    sha256 = sha256 or known_sha

    candidates = [os.path.join(SHARED_DATA_DIR, relpath)]
    if os.environ.get("LLMC_DATA_DIR"):
        candidates.append(os.path.join(os.environ["LLMC_DATA_DIR"], relpath))
    for path in candidates:
        if os.path.isfile(path):
            return path

    cached = os.path.join(CACHE_DIR, relpath)
    if os.path.isfile(cached):
        if sha256 is None or sha256_file(cached) == sha256:
            return cached
        print(f"data_common: {cached} has the wrong sha256, downloading it again", file=sys.stderr)

    searched = ", ".join(candidates + [cached])
    if url is None:
        raise FileNotFoundError(f"{relpath}: not found (looked in {searched}) and no download url is known")

    print(f"data_common: downloading {url} -> {cached}", file=sys.stderr)
    os.makedirs(os.path.dirname(cached), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(cached), prefix=os.path.basename(cached) + ".", suffix=".tmp")
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as resp:
                    for block in iter(lambda: resp.read(1 << 20), b""):
                        h.update(block)
                        out.write(block)
            except (urllib.error.URLError, OSError) as e:
                raise RuntimeError(
                    f"{relpath}: not found locally (looked in {searched}) and the download of {url} "
                    f"failed: {e}. Put the file in one of those places or set LLMC_DATA_DIR."
                ) from e
            out.flush()
            os.fsync(out.fileno())
        if sha256 is not None and h.hexdigest() != sha256:
            raise RuntimeError(f"{relpath}: downloaded {url} has sha256 {h.hexdigest()}, expected {sha256}")
        os.replace(tmp, cached)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return cached


# ---------------------------------------------------------------------------
# atomic binary writes

def _header(values):
    """A 256-slot little-endian int32 header holding `values` in its first slots."""
    if len(values) > 256:
        raise ValueError("header has only 256 slots")
    h = array.array("i", list(values) + [0] * (256 - len(values)))
    assert h.itemsize == 4
    if sys.byteorder != "little":
        h.byteswap()
    return h.tobytes()


def atomic_write(path, chunks):
    """Write the byte strings `chunks` to path.tmp, fsync, then rename over `path`."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            for c in chunks:
                f.write(c)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    try:  # make the rename itself durable
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


DATA_MAGIC_U16, DATA_VERSION_U16 = 20240520, 1
DATA_MAGIC_U32, DATA_VERSION_U32 = 20240801, 7


def write_datafile(path, tokens, vocab_size=None):
    """Write a data shard (docs/formats.md): uint16 tokens, or uint32 if any id >= 65536.

    `tokens` is any iterable of ints; every id must be >= 0 and < 2**32
    (and < vocab_size if given). Returns the number of bytes written.
    """
    tokens = list(tokens)
    ntok = len(tokens)
    if ntok >= 2**31:
        raise ValueError(f"{path}: {ntok} tokens do not fit the int32 count field; split into shards")
    lo = min(tokens) if tokens else 0
    hi = max(tokens) if tokens else 0
    if lo < 0:
        raise ValueError(f"{path}: negative token id {lo}")
    if vocab_size is not None and hi >= vocab_size:
        raise ValueError(f"{path}: token id {hi} out of range for vocabulary size {vocab_size}")
    if hi < 2**16:
        header = _header([DATA_MAGIC_U16, DATA_VERSION_U16, ntok])
        data = array.array("H", tokens)
        assert data.itemsize == 2
    elif hi < 2**32:
        header = _header([DATA_MAGIC_U32, DATA_VERSION_U32, ntok])
        data = array.array("I" if array.array("I").itemsize == 4 else "L", tokens)
        assert data.itemsize == 4
    else:
        raise ValueError(f"{path}: token id {hi} does not fit uint32")
    if sys.byteorder != "little":
        data.byteswap()
    payload = data.tobytes()
    atomic_write(path, [header, payload])
    return len(header) + len(payload)


def read_datafile(path):
    """Read a data shard back: returns an array of token ids (checks magic, version and length)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 1024:
        raise ValueError(f"{path}: shorter than the 1024-byte header")
    header = array.array("i", raw[:1024])
    if sys.byteorder != "little":
        header.byteswap()
    magic, version, ntok = header[0], header[1], header[2]
    if (magic, version) == (DATA_MAGIC_U16, DATA_VERSION_U16):
        data = array.array("H")
    elif (magic, version) == (DATA_MAGIC_U32, DATA_VERSION_U32):
        data = array.array("I" if array.array("I").itemsize == 4 else "L")
    else:
        raise ValueError(f"{path}: bad magic/version {magic}/{version}")
    if len(raw) != 1024 + ntok * data.itemsize:
        raise ValueError(f"{path}: length {len(raw)} != 1024 + {ntok} * {data.itemsize}")
    data.frombytes(raw[1024:])
    if sys.byteorder != "little":
        data.byteswap()
    return data


# ---------------------------------------------------------------------------
# GPT-2 vocabulary

GPT2_VOCAB_SIZE = 50257
GPT2_EOT = 50256
GPT2_EOT_STR = "<|endoftext|>"
# GPT-2's pre-tokenizer pattern (needs \p{..} classes: tiktoken / `regex`, not `re`)
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def _byte_to_char():
    """GPT-2's reversible byte -> printable unicode character mapping.

    The 188 'printable' bytes ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) stand for
    themselves; the other 68 bytes (controls, space, DEL, 0x80..0xA0, 0xAD) are
    given chr(256), chr(257), ... in increasing byte order.
    """
    printable = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    table, k = [], 0
    for b in range(256):
        if b in printable:
            table.append(chr(b))
        else:
            table.append(chr(256 + k))
            k += 1
    assert k == 68
    return table


def _char_to_byte():
    return {c: b for b, c in enumerate(_byte_to_char())}


def _vocab_file(vocab_dir, name):
    if vocab_dir is None:
        return find_shared_file("gpt2/" + name)
    path = os.path.join(vocab_dir, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file (expected GPT-2's {name} in {vocab_dir})")
    return path


def gpt2_token_bytes(vocab_dir=None):
    """The raw bytes of every GPT-2 token: a list of 50257 `bytes`, indexed by id.

    Computed from encoder.json (vocab_dir=None: the shared gpt2/ directory).
    Id 50256 (<|endoftext|>) is b'<|endoftext|>'.
    """
    path = _vocab_file(vocab_dir, "encoder.json")
    with open(path, "r", encoding="utf-8") as f:
        encoder = json.load(f)
    if len(encoder) != GPT2_VOCAB_SIZE or encoder.get(GPT2_EOT_STR) != GPT2_EOT:
        raise ValueError(f"{path}: expected {GPT2_VOCAB_SIZE} tokens with {GPT2_EOT_STR} = {GPT2_EOT}")
    c2b = _char_to_byte()
    table = [None] * GPT2_VOCAB_SIZE
    for token, idx in encoder.items():
        if not (isinstance(idx, int) and 0 <= idx < GPT2_VOCAB_SIZE) or table[idx] is not None:
            raise ValueError(f"{path}: bad or repeated id {idx!r} for token {token!r}")
        if idx == GPT2_EOT:
            table[idx] = GPT2_EOT_STR.encode("utf-8")
            continue
        try:
            table[idx] = bytes(c2b[c] for c in token)
        except KeyError as e:
            raise ValueError(f"{path}: token {token!r} has a character outside GPT-2's byte alphabet") from e
    if len(set(table)) != GPT2_VOCAB_SIZE:
        raise ValueError(f"{path}: two tokens have the same bytes")
    return table


TOKENIZER_MAGIC, TOKENIZER_VERSION = 20240328, 2


def write_tokenizer(vocab_dir, path):
    """Write the GPT-2 tokenizer file (version 2, docs/formats.md). Returns the number of bytes written."""
    table = gpt2_token_bytes(vocab_dir)
    chunks = [_header([TOKENIZER_MAGIC, TOKENIZER_VERSION, len(table), GPT2_EOT])]
    for idx, b in enumerate(table):
        if not 1 <= len(b) <= 255:
            raise ValueError(f"token {idx} is {len(b)} bytes long; the format allows 1..255")
        chunks.append(bytes([len(b)]) + b)
    atomic_write(path, chunks)
    return sum(len(c) for c in chunks)


def read_tokenizer(path):
    """Read a tokenizer file (version 1 or 2, with or without our merge table): (token bytes, eot id)."""
    with open(path, "rb") as f:
        raw = f.read()
    header = array.array("i", raw[:1024])
    if sys.byteorder != "little":
        header.byteswap()
    if header[0] != TOKENIZER_MAGIC or header[1] not in (1, 2):
        raise ValueError(f"{path}: bad magic/version {header[0]}/{header[1]}")
    n, eot = header[2], (header[3] if header[1] == 2 else GPT2_EOT)
    table, pos = [], 1024
    for _ in range(n):
        ln = raw[pos]
        table.append(raw[pos + 1:pos + 1 + ln])
        pos += 1 + ln
    # our extension (docs/formats.md): merges and special token ids after the tokens
    extension = 8 * header[5] + 4 * header[6] if header[1] == 2 and header[4] == 1 else 0
    if pos + extension != len(raw):
        raise ValueError(f"{path}: {len(raw) - pos} bytes after {n} tokens, expected {extension}")
    return table, eot


# ---------------------------------------------------------------------------
# GPT-2 encoder (tiktoken, built offline from the local vocabulary files)

class GPT2Encoder:
    """GPT-2 BPE encoder: `.encode_ordinary(text) -> list[int]`, `.eot`, `.decode_bytes(ids)`."""

    def __init__(self, tiktoken_encoding, token_bytes):
        self.enc = tiktoken_encoding
        self.token_bytes = token_bytes
        self.eot = GPT2_EOT
        self.n_vocab = len(token_bytes)

    def encode_ordinary(self, text):
        """Encode text as plain text: '<|endoftext|>' in the text is not turned into the eot id."""
        return self.enc.encode_ordinary(text)

    def encode_ordinary_batch(self, texts):
        return self.enc.encode_ordinary_batch(texts)

    def decode_bytes(self, ids):
        tb = self.token_bytes
        return b"".join(tb[i] for i in ids)

    def decode(self, ids, errors="replace"):
        return self.decode_bytes(ids).decode("utf-8", errors=errors)


def gpt2_encoder(vocab_dir=None):
    """Build GPT-2's BPE encoder with tiktoken from local encoder.json / vocab.bpe (no download).

    Checks that vocab.bpe's merges agree with encoder.json's ids (merge i makes
    token 256 + i) and a few known encodings. Raises ImportError if tiktoken is
    not installed.
    """
    try:
        import tiktoken
    except ImportError as e:
        raise ImportError(
            "gpt2_encoder needs tiktoken to encode text: pip install tiktoken "
            "(writing the tokenizer file and reading/writing shards need nothing beyond the standard library)"
        ) from e

    token_bytes = gpt2_token_bytes(vocab_dir)
    ranks = {b: i for i, b in enumerate(token_bytes) if i != GPT2_EOT}

    # vocab.bpe: '#version' line then 50000 merges "a b" (in GPT-2's byte alphabet)
    bpe_path = _vocab_file(vocab_dir, "vocab.bpe")
    c2b = _char_to_byte()
    with open(bpe_path, "r", encoding="utf-8") as f:
        lines = [ln for ln in f.read().split("\n")[1:] if ln]
    if len(lines) != GPT2_VOCAB_SIZE - 257:
        raise ValueError(f"{bpe_path}: {len(lines)} merges, expected {GPT2_VOCAB_SIZE - 257}")
    single = sorted(ranks[bytes([b])] for b in range(256))
    if single != list(range(256)):
        raise ValueError("encoder.json: ids 0..255 are not the 256 single bytes")
    for i, ln in enumerate(lines):
        a, b = ln.split(" ")
        merged = bytes(c2b[c] for c in a + b)
        if ranks.get(merged) != 256 + i:
            raise ValueError(f"{bpe_path}: merge {i} ({ln!r}) does not give token {256 + i} of encoder.json")

    enc = tiktoken.Encoding(
        name="gpt2_local",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={GPT2_EOT_STR: GPT2_EOT},
        explicit_n_vocab=GPT2_VOCAB_SIZE,
    )
    encoder = GPT2Encoder(enc, token_bytes)

    # known answers, spelled in encoder.json's alphabet (Ġ = space, Ċ = newline)
    def ids(*tokens):
        return [ranks[bytes(c2b[c] for c in t)] for t in tokens]

    checks = [
        ("Hello world", ids("Hello", "Ġworld")),
        ("I'm here\n\n", ids("I", "'m", "Ġhere", "ĊĊ")),
        ("a  b", ids("a", "Ġ", "Ġb")),
        ("<|endoftext|>", ids("<", "|", "end", "of", "text", "|", ">")),
    ]
    for text, want in checks:
        got = encoder.encode_ordinary(text)
        if got != want:
            raise RuntimeError(f"GPT-2 encoder self-check failed on {text!r}: got {got}, want {want}")
    sample = "naïve café — 東京 🙂 <|endoftext|>\t\r\n 12345 don't"
    if encoder.decode_bytes(encoder.encode_ordinary(sample)) != sample.encode("utf-8"):
        raise RuntimeError("GPT-2 encoder self-check failed: round trip")
    return encoder
