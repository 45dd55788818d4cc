#!/usr/bin/env python3
"""Build the GPT-2 BPE test fixture for tests/test_bpe.c from Hugging Face's tokenizer.

Runs where `transformers`/`tokenizers` are installed (offline). Reads the tokenizer files and
the SQuAD v1.1 dev set from one folder:
  DIR/vocab.json DIR/merges.txt DIR/squad-v1.1-dev.json (or .json.zst)
and writes OUT/bpe_fixture.bin.zst (or OUT/bpe_fixture.bin without the zstandard module;
compress it with `zstd -19`).

Fixture layout (little-endian):
  "SWQBPEF1" u32 n_records, then per record:
  u8 mode (0: HF default, "<|endoftext|>" in text becomes the special token;
           1: special tokens treated as plain text), u32 text_len, text bytes (UTF-8),
  u32 n_ids, n_ids x u16 ids.
Usage: bpe_fixture.py DIR OUT

The committed tests/fixtures/bpe/bpe_fixture.bin.zst was made on the device machine
(transformers 5.17.0, tokenizers 0.23.2; no zstandard there, so compressed here with zstd -19)
with DIR holding vocab.json, merges.txt, encoder.json, vocab.bpe and the decompressed dev set.
transformers 5 ignores GPT2TokenizerFast(vocab_file=, merges_file=) (an empty vocabulary), so the
script takes the first construction that encodes the known cases right (from_pretrained(DIR)).
The ids are checked against a bare `tokenizers` BPE, tiktoken and OpenAI's encoder.py algorithm.
"""
import json
import os
import struct
import sys
import time

HARD = [
    "Hello world", " Hello, world!", "", " ", "  ", "   a", "  a", "a  ", "a ", "trailing spaces   ",
    "\n", "\n\n\n", "a\n\n b", "a\n \nb", "\t\tx\t", " \t \n x", "line1\r\nline2\r\n", "\x0b\x0c\x1c\x1d\x1e\x1f",
    " " * 100 + "x", "x" + " " * 37, "a" * 300, "=" * 80,
    "12345 678", "3.14159 2,718 1e-10 0x1F", "½ ² ① Ⅻ ٣٤ ４２", "$1,000.00 (approx.) 50% off!!",
    "don't I'll 'S 's", "we're they've I'm you'd it's 'll 're 've 'm 'd 't", "'''' \"quoted\" ‘curly’ “double”",
    "O'Neil's rock'n'roll", "DON'T I'LL",
    "你好，世界！这是一个测试。", "日本語のテキストとカタカナ", "안녕하세요 세계", "مرحبا بالعالم، كيف حالك؟",
    "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "Привет, мир!", "Καλημέρα κόσμε", "Straße naïve café Ωmega Ǆ ǅ ʰ",
    "e\u0301 e\u0308\u0301 a\u0300\u0301\u0302\u0303", "\u0301leading combining", "Hello世界123abc한국어",
    "😀😀😀 smile", "👨\u200d👩\u200d👧\u200d👦 family", "🏳️\u200d🌈 flag", "🇺🇸🇯🇵", "👍🏽 ok", "❤️ ♥ ☃",
    "\ufeffBOM at start", "mid\ufeffdle", "zero\u200bwidth\u200cnon\u200djoiner",
    "nbsp\u00a0here ideographic\u3000space", "nel\u0085next", "ls\u2028ps\u2029end", "thin\u2009space\u202f\u205f",
    "ogham\u1680mark", "\u00a0\u00a0 leading nbsp", "\ufffd replacement \U0010ffff \ue000 private",
    "\x00\x01\x7f control", "def f(x):\n    return x**2\n", "https://example.com/a?b=c&d=e#frag",
    "C++ && || -> => <= >= != ==", "∑∫√∞ ≈ ≠", "<|endoftext|>", "a<|endoftext|>b", " <|endoftext|> ",
    "text<|endoftext|><|endoftext|>more", "<|endoftext", "<|endoftext|>\n\nNext document", "<|ENDOFTEXT|>",
]


def load_squad(d):
    p = os.path.join(d, "squad-v1.1-dev.json")
    if os.path.exists(p):
        with open(p, "rb") as f:
            raw = f.read()
    else:
        import zstandard
        with open(p + ".zst", "rb") as f:
            raw = zstandard.ZstdDecompressor().stream_reader(f).read()
    js = json.loads(raw.decode("utf-8"))
    texts = []
    for art in js["data"]:
        for par in art["paragraphs"]:
            texts.append(par["context"])
            for qa in par["qas"]:
                texts.append(qa["question"])
    return texts


def openai_reference(d):
    """OpenAI's original encoder.py algorithm (needs the `regex` module)."""
    try:
        import regex as re
    except ImportError:
        return None
    enc = json.load(open(os.path.join(d, "vocab.json"), encoding="utf-8"))
    lines = open(os.path.join(d, "merges.txt"), encoding="utf-8").read().split("\n")[1:-1]
    ranks = {tuple(l.split()): i for i, l in enumerate(lines)}
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    b2u = dict(zip(bs, map(chr, cs)))
    pat = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
    cache = {}

    def bpe(token):
        if token in cache:
            return cache[token]
        word = tuple(token)
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
            if best not in ranks:
                break
            a, b = best
            nw, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == a and word[i + 1] == b:
                    nw.append(a + b)
                    i += 2
                else:
                    nw.append(word[i])
                    i += 1
            word = tuple(nw)
        cache[token] = [enc[w] for w in word]
        return cache[token]

    def encode(text):
        out = []
        for t in re.findall(pat, text):
            out.extend(bpe("".join(b2u[b] for b in t.encode("utf-8"))))
        return out
    return encode


def main():
    d, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    import tokenizers
    import transformers
    print("transformers", transformers.__version__, "tokenizers", tokenizers.__version__)
    vocab, merges = os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt")

    # plain-text reference: a bare tokenizers BPE with GPT-2's byte-level pre-tokenizer, no added tokens
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    raw = Tokenizer(models.BPE.from_file(vocab, merges))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()

    # transformers 5 ignores vocab_file=/merges_file= (its GPT2 tokenizer takes vocab=/merges=),
    # so try the ways in turn and keep the first that encodes the known cases right.
    from transformers import GPT2TokenizerFast
    vocab_d = json.load(open(vocab, encoding="utf-8"))
    merge_l = [tuple(l.split(" ")) for l in open(merges, encoding="utf-8").read().split("\n")[1:] if l]
    builders = [
        ("GPT2TokenizerFast(vocab_file=, merges_file=)", lambda: GPT2TokenizerFast(vocab_file=vocab, merges_file=merges)),
        ("GPT2TokenizerFast.from_pretrained(dir)", lambda: GPT2TokenizerFast.from_pretrained(d, local_files_only=True)),
        ("GPT2TokenizerFast(vocab=dict, merges=tuples)", lambda: GPT2TokenizerFast(vocab=vocab_d, merges=merge_l)),
        ("GPT2TokenizerFast(vocab=dict, merges=strings)",
         lambda: GPT2TokenizerFast(vocab=vocab_d, merges=[" ".join(m) for m in merge_l])),
    ]
    hf = None
    for name, mk in builders:
        try:
            cand = mk()
            got = (cand.encode("Hello world", add_special_tokens=False),
                   cand.encode(" Hello, world!", add_special_tokens=False))
            ok = got == ([15496, 995], [18435, 11, 995, 0])
            print("%s: %s special=%s -> %s %s" % (name, type(cand).__name__, cand.all_special_tokens, got,
                                                  "OK" if ok else "WRONG"))
            if ok:
                hf = cand
                print("USING", name)
                break
        except Exception as e:  # noqa: BLE001
            print("%s failed: %r" % (name, e))
    if hf is None:
        # what GPT2TokenizerFast builds: the same BPE plus <|endoftext|> as special token
        print("USING tokenizers with <|endoftext|> added as special token")
        from tokenizers import AddedToken
        hf_tok = Tokenizer(models.BPE.from_file(vocab, merges))
        hf_tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf_tok.decoder = decoders.ByteLevel()
        hf_tok.add_special_tokens([AddedToken("<|endoftext|>", special=True)])

        class _HF:
            def encode(self, s, add_special_tokens=False, **kw):
                return hf_tok.encode(s, add_special_tokens=False).ids

            def decode(self, ids):
                return hf_tok.decode(ids, skip_special_tokens=False)
        hf = _HF()

    def hf_default(s):
        return hf.encode(s, add_special_tokens=False)

    def hf_plain(s):
        return raw.encode(s, add_special_tokens=False).ids

    split_ids = None
    try:
        split_ids = hf.encode("a<|endoftext|>b", add_special_tokens=False, split_special_tokens=True)
    except Exception as e:  # noqa: BLE001
        print("split_special_tokens not supported:", e)
    for s in ["<|endoftext|>", "a<|endoftext|>b", " <|endoftext|> "]:
        print("HF default   %-20r -> %s" % (s, hf_default(s)))
        print("plain text   %-20r -> %s" % (s, hf_plain(s)))
    print("HF split_special_tokens=True 'a<|endoftext|>b' ->", split_ids)
    assert hf_default("Hello world") == [15496, 995], hf_default("Hello world")

    ref = openai_reference(d)
    print("OpenAI reference encoder:", "available" if ref else "missing (no regex module)")
    tk = None
    try:
        import tiktoken
        from tiktoken.load import data_gym_to_mergeable_bpe_ranks
        ranks = data_gym_to_mergeable_bpe_ranks(os.path.join(d, "vocab.bpe"), os.path.join(d, "encoder.json"))
        tk = tiktoken.Encoding("gpt2_local", mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256},
                               pat_str=r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
        print("tiktoken", tiktoken.__version__, "Hello world ->", tk.encode_ordinary("Hello world"))
    except Exception as e:  # noqa: BLE001
        print("tiktoken cross-check unavailable:", repr(e))
    texts = load_squad(d)
    print("dev texts:", len(texts))

    recs = []
    mism = {"plain_vs_default": 0, "openai": 0, "tiktoken": 0, "roundtrip": 0}
    t0 = time.time()
    ntok = 0
    for i, s in enumerate(HARD + texts):
        ids = hf_default(s)
        ntok += len(ids) if i >= len(HARD) else 0
        recs.append((0, s, ids))
        if "<|endoftext|>" in s:
            recs.append((1, s, hf_plain(s)))
        else:
            p = hf_plain(s)
            if p != ids:
                mism["plain_vs_default"] += 1
                if mism["plain_vs_default"] <= 20:
                    print("MISMATCH plain/default", repr(s)[:80], ids[:10], p[:10])
        if ref is not None:
            r = ref(s)
            if r != hf_plain(s):
                mism["openai"] += 1
                if mism["openai"] <= 20:
                    print("MISMATCH openai/hf", repr(s)[:80], hf_plain(s)[:20], r[:20])
        if tk is not None and tk.encode_ordinary(s) != hf_plain(s):
            mism["tiktoken"] += 1
            if mism["tiktoken"] <= 20:
                print("MISMATCH tiktoken/hf", repr(s)[:80], hf_plain(s)[:20], tk.encode_ordinary(s)[:20])
        if hf.decode(ids) != s:
            mism["roundtrip"] += 1
            if mism["roundtrip"] <= 20:
                print("HF decode does not round-trip:", repr(s)[:80])
    print("encoded %d records, dev set %d texts %d bytes %d tokens, in %.1fs" %
          (len(recs), len(texts), sum(len(t.encode("utf-8")) for t in texts), ntok, time.time() - t0))
    print("mismatches:", mism)
    for s in ["nel\u0085next", "\x0b\x0c\x1c\x1d\x1e\x1f", "ls\u2028ps\u2029end", "zero\u200bwidth"]:
        print("pretok", repr(s), raw.pre_tokenizer.pre_tokenize_str(s))

    buf = bytearray(b"SWQBPEF1")
    buf += struct.pack("<I", len(recs))
    for mode, s, ids in recs:
        b = s.encode("utf-8")
        buf += struct.pack("<BI", mode, len(b)) + b + struct.pack("<I", len(ids))
        buf += struct.pack("<%dH" % len(ids), *ids)
    try:
        import zstandard
        data = zstandard.ZstdCompressor(level=19).compress(bytes(buf))
        name = "bpe_fixture.bin.zst"
    except ImportError:
        data, name = bytes(buf), "bpe_fixture.bin"
    with open(os.path.join(out, name + ".tmp"), "wb") as f:
        f.write(data)
    os.replace(os.path.join(out, name + ".tmp"), os.path.join(out, name))
    print("wrote", name, len(buf), "bytes raw,", len(data), "stored")


if __name__ == "__main__":
    main()
