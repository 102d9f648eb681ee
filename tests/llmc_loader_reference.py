"""llm.c's shuffled data loader and state-file writer, re-implemented from its behaviour (its
llmc/rand.h, llmc/dataloader.h and train_gpt2.cu's save_state), for tests/test_llmc_exact.sh.

  order SAMPLES SEED RANK N                 N batches as "FILE_INDEX SAMPLE" lines, one a batch
  state SAMPLES SEED RANK K OUT [--short] --from OURS
        the state after K batches, written as llm.c writes it (no run record, no checksum), with
        OURS's header slots 2..23 and optimizer state; --short: our old layout instead (4-byte
        mt19937 seed, run record version 1 copied from OURS with its version set to 1)
  check SAMPLES SEED RANK K STATE           our state file's loader part equals llm.c's after K
  selftest                                  the generator against llm.c's documented outputs

SAMPLES: samples per shard in glob order, comma-separated ((tokens - 1) // (processes*B*T)).
"""
import struct
import sys

N, M = 624, 397
MATRIX_A = (0x0, 0x9908B0DF)


class MT19937:
    """torch.manual_seed's Mersenne Twister; left/next as llm.c's mt19937_state stores them."""

    def __init__(self, seed):
        self.state = [seed & 0xFFFFFFFF]
        for j in range(1, N):
            prev = self.state[-1]
            self.state.append((1812433253 * (prev ^ (prev >> 30)) + j) & 0xFFFFFFFF)
        self.left, self.next = 1, 0

    def _twist(self):
        s = self.state
        for j in range(N):
            y = (s[j] & 0x80000000) | (s[(j + 1) % N] & 0x7FFFFFFF)
            s[j] = s[(j + M) % N] ^ (y >> 1) ^ MATRIX_A[y & 1]
        self.left, self.next = N, 0

    def randint32(self):
        self.left -= 1
        if self.left <= 0:
            self._twist()
        y = self.state[self.next]
        self.next += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        y ^= y >> 18
        return y

    def pack(self, seed_bytes):
        """The struct's bytes: seed (8 bytes in llm.c's layout, 4 in our old one), left, next,
        state[624], matrix_a[2]. llm.c never sets the seed: any bytes are valid there."""
        seed = b"\xA5" * seed_bytes
        return seed + struct.pack("<iI624I2I", self.left, self.next, *self.state, *MATRIX_A)


def random_permutation(data, rng):
    """llm.c's Fisher-Yates: in place on what data holds, one 32-bit draw per swap."""
    for i in range(len(data) - 1, 0, -1):
        j = rng.randint32() % (i + 1)
        data[i], data[j] = data[j], data[i]


class Loader:
    """The shuffled loader's position as llm.c keeps it (dataloader_init / _reset / _advance_)."""

    def __init__(self, samples, seed, rank):
        self.samples = samples
        self.rng = MT19937(seed + rank)
        self.shard_indices = list(range(len(samples)))
        self.reset()

    def _open(self):
        self.num_samples = self.samples[self.shard_indices[self.shard]]
        self.intra = list(range(self.num_samples))
        random_permutation(self.intra, self.rng)

    def reset(self):
        self.shard, self.sample = 0, 0
        random_permutation(self.shard_indices, self.rng)  # composed with the last epoch's order
        self._open()

    def next_batch(self):
        if self.sample >= self.num_samples:
            if self.shard == len(self.samples) - 1:
                self.reset()
            else:
                self.shard += 1
                self.sample = 0
                self._open()
        batch = (self.shard_indices[self.shard], self.intra[self.sample])
        self.sample += 1
        return batch

    def shuffle_state(self, seed_bytes=8):
        """What save_state writes after the optimizer state when the loader shuffles."""
        out = struct.pack("<Q", len(self.samples))
        out += struct.pack("<%di" % len(self.samples), *self.shard_indices)
        out += struct.pack("<Q", self.num_samples)
        out += struct.pack("<%di" % self.num_samples, *self.intra)
        return out + self.rng.pack(seed_bytes)


def loader_after(samples, seed, rank, k):
    loader = Loader(samples, seed, rank)
    for _ in range(k):
        loader.next_batch()
    return loader


def write_state(loader, ours_path, out_path, short):
    ours = open(ours_path, "rb").read()
    header = list(struct.unpack_from("<256i", ours, 0))
    params = header[40] | (header[41] << 32)
    arrays = 3 if header[4] else 2
    optimizer = ours[1024:1024 + 4 * params * arrays]
    new = [0] * 256
    new[0], new[1] = 20240527, 1  # llm.c's magic and version
    new[2:24] = header[2:24]  # processes, rank, master weights, shuffle, step, sampler rng
    new[6] = 0  # our ZeRO slot, zero in llm.c's files (and a single process here)
    new[5] = 1
    raw = bytearray(struct.pack("<256i", *new))
    struct.pack_into("<QQ", raw, 4 * 30, loader.shard, loader.sample)
    if short:  # our old files: the run record (version 1), with the parameter count
        raw[4 * 40:4 * 42] = ours[4 * 40:4 * 42]
        raw[4 * 100:4 * 254] = ours[4 * 100:4 * 254]
        struct.pack_into("<i", raw, 4 * 100, 1)
    body = bytes(raw) + optimizer + loader.shuffle_state(4 if short else 8)
    open(out_path, "wb").write(body)


def check_state(loader, path):
    data = open(path, "rb").read()
    header = struct.unpack_from("<256i", data, 0)
    params = header[40] | (header[41] << 32)
    start = 1024 + 4 * params * (3 if header[4] else 2)
    problems = []
    position = struct.unpack_from("<QQ", data, 4 * 30)
    if position != (loader.shard, loader.sample):
        problems.append("position %s, llm.c's %s" % (position, (loader.shard, loader.sample)))
    expected = loader.shuffle_state()
    got = data[start:start + len(expected)]
    # the seed (8 bytes before left) is not compared: llm.c leaves it unset
    seed_at = len(expected) - 2520
    if got[:seed_at] != expected[:seed_at]:
        problems.append("shard/sample orders differ from llm.c's")
    if got[seed_at + 8:] != expected[seed_at + 8:]:
        problems.append("mt19937 state (left, next, state, matrix_a) differs from llm.c's")
    if len(data) != start + len(expected) + 8 * header[50]:
        problems.append("%d bytes, expected %d" % (len(data), start + len(expected) + 8 * header[50]))
    return problems


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "selftest":
        # llm.c's llmc/rand.h documents these first draws for manual_seed(137)
        rng = MT19937(137)
        got = [rng.randint32() for _ in range(5)]
        want = [4053805790, 2173880614, 380293709, 1237255315, 2986595568]
        print("ok" if got == want else "differs: %s" % got)
        return 0 if got == want else 1
    samples = [int(v) for v in args[0].split(",")]
    if cmd == "order":
        seed, rank, n = (int(v) for v in args[1:4])
        loader = Loader(samples, seed, rank)
        for _ in range(n):
            print("%d %d" % loader.next_batch())
        return 0
    seed, rank, k = int(args[1]), int(args[2]), int(args[3])
    loader = loader_after(samples, seed, rank, k)
    if cmd == "state":
        out, rest = args[4], args[5:]
        short = "--short" in rest
        write_state(loader, rest[rest.index("--from") + 1], out, short)
        return 0
    if cmd == "check":
        problems = check_state(loader, args[4])
        for p in problems:
            print(p)
        return 1 if problems else 0
    raise SystemExit("unknown command " + cmd)


if __name__ == "__main__":
    sys.exit(main())
