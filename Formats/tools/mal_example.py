#!/usr/bin/env python3
"""An independent writer and reader of the .mal format, written from Formats/MAL.md alone.

    mal_example.py write OUT.mal        writes the worked example of MAL.md §11 (one F32 tensor [2, 3])
    mal_example.py write-model OUT.mal  writes a complete tiny GPT-2 (1 layer, byte-level tokenizer in
                                        aux/tokenizer.bin, MAL.md §7.2) that `malrun` runs
    mal_example.py read FILE.mal        lists the tensors of any .mal file and checks every checksum

Needs the PyPI packages xxhash and zstandard (Debian: python3-xxhash, python3-zstandard). `make test`
uses it to check that the spec is complete (Tests/Scripts/format_check.sh): the files this script
writes pass `malconv check` and run, and this script reads every kind of file malconv writes.
"""
import json, struct, sys
import xxhash, zstandard

MAGIC = b"\x89MAL\r\n\x1a\n"
DTYPES = {1: "BOOL", 2: "U8", 3: "I8", 4: "U16", 5: "I16", 6: "U32", 7: "I32", 8: "U64", 9: "I64", 10: "F16", 11: "BF16",
          12: "F32", 13: "F64", 14: "F8_E4M3", 15: "F8_E5M2", 16: "F8_E8M0", 17: "F8_E4M3FNUZ", 18: "F8_E5M2FNUZ", 19: "C64",
          20: "F4", 21: "F6_E2M3", 22: "F6_E3M2"}
BITS = {"BOOL": 8, "U8": 8, "I8": 8, "U16": 16, "I16": 16, "U32": 32, "I32": 32, "U64": 64, "I64": 64, "F16": 16, "BF16": 16,
        "F32": 32, "F64": 64, "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "C64": 64,
        "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}
CODECS = {0: "raw", 1: "zstd", 2: "zstd+planes", 3: "alias", 4: "zstd+nibbles"}

def h64(b): return xxhash.xxh64_intdigest(b, seed=0)

def tensor_hash(chunk_hashes): return h64(b"".join(struct.pack("<Q", h) for h in chunk_hashes))

def write_example(path):
    spec = {"architecture": "gpt2", "vocabSize": 2, "hiddenSize": 3, "layers": 1, "heads": 1, "kvHeads": 1,
            "headDim": 3, "intermediateSize": 12, "maxPositions": 4, "norm": "layerNorm", "normEps": 1e-5,
            "activation": "gelu_new", "positions": "learned", "tiedEmbeddings": True, "attentionBias": True,
            "mlpBias": True, "eosTokenIds": [], "mtpLayers": 0}
    data = struct.pack("<6f", 1.0, -2.0, 0.5, 3.0, 0.0, -1.5)        # F32 [2, 3], 24 bytes
    write_container(path, spec, [("token_embd.weight", 12, [2, 3], data)], command="write")

def write_container(path, spec, tensors, command="write-model"):
    """tensors: (name, dtype code, dims, raw bytes), each stored raw (codec 0) in one chunk,
    64-byte aligned; then metadata, table and header as MAL.md §2-§5 lay them out."""
    out = bytearray(96)
    records = []
    for name, dcode, dims, data in tensors:
        out += b"\0" * ((64 - len(out) % 64) % 64)
        off = len(out)
        out += data
        ch = h64(data)
        n = name.encode()
        rec = struct.pack("<HBBBBHIIQQII", len(n), dcode, 0, len(dims), 0, 0, 1 << 20, 0xFFFFFFFF, len(data),
                          tensor_hash([ch]), 1 if data else 0, 0)
        rec += struct.pack(f"<{len(dims)}Q", *dims) + n
        if data: rec += struct.pack("<QIIQ", off, len(data), 0, ch)
        records.append(rec)
    meta = json.dumps({"format": "mal", "formatVersion": "1.0", "architecture": spec["architecture"], "spec": spec,
                       "nameScheme": "malconv-canonical-1",
                       "provenance": {"converter": "mal_example.py", "converterVersion": "1", "command": command,
                                      "options": {}, "sources": [], "droppedTensors": []}},
                      separators=(",", ":"), sort_keys=True).encode()
    meta_off = len(out)
    out += meta
    table = struct.pack("<II", len(records), 0) + b"".join(records)
    table_off = len(out)
    out += table
    hdr = MAGIC + struct.pack("<HHIQQQQQQQ", 1, 0, 0, len(out), meta_off, len(meta), table_off, len(table), h64(meta), h64(table))
    hdr += b"\0" * 16
    hdr += struct.pack("<Q", h64(hdr))
    out[0:96] = hdr
    open(path, "wb").write(out)

def tokenizer_blob():
    """aux/tokenizer.bin (MAL.md §7.2) of a byte-level tokenizer: token i is byte i, no merges,
    <|endoftext|> an added special token (id 256, not in the vocabulary: length 0xFFFFFFFF)."""
    b = b"MALTOK\x00\x01" + struct.pack("<I", 257)
    for i in range(256): b += struct.pack("<I", 1) + bytes([i])
    b += struct.pack("<I", 0xFFFFFFFF) + struct.pack("<I", 0)
    rest = json.dumps({"addedTokens": [{"id": 256, "content": "<|endoftext|>", "special": True, "lstrip": False, "rstrip": False,
                                        "singleWord": False, "normalized": False}],
                       "preTokenizer": {"byteLevel": {"addPrefixSpace": False, "useRegex": True}},
                       "postProcessor": {"byteLevel": {}}, "ignoreMerges": False,
                       "bosToken": "<|endoftext|>", "eosToken": "<|endoftext|>"}).encode()
    return b + struct.pack("<I", len(rest)) + rest

def write_model(path):
    """A GPT-2 of 1 layer (hidden 8, 2 heads, ffn 32, 16 positions, tied head) over the 256 bytes
    and <|endoftext|>: every tensor the runtime needs (NAMES.md), F32, small random values."""
    import random
    rnd = random.Random(0)
    V, H, I, P = 257, 8, 32, 16
    def f32(*dims, scale=0.5, const=None):
        n = 1
        for d in dims: n *= d
        vals = [const] * n if const is not None else [rnd.gauss(0, scale) for _ in range(n)]
        return struct.pack(f"<{n}f", *vals)
    t = [("token_embd.weight", [V, H], f32(V, H)), ("position_embd.weight", [P, H], f32(P, H, scale=0.1)),
         ("output_norm.weight", [H], f32(H, const=1.0)), ("output_norm.bias", [H], f32(H, const=0.0))]
    b = "blk.0."
    for name, dims in [("attn_norm", None), ("ffn_norm", None)]:
        t += [(b + name + ".weight", [H], f32(H, const=1.0)), (b + name + ".bias", [H], f32(H, const=0.0))]
    for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
        t += [(b + name + ".weight", [H, H], f32(H, H)), (b + name + ".bias", [H], f32(H, scale=0.1))]
    t += [(b + "ffn_up.weight", [I, H], f32(I, H)), (b + "ffn_up.bias", [I], f32(I, scale=0.1)),
          (b + "ffn_down.weight", [H, I], f32(H, I)), (b + "ffn_down.bias", [H], f32(H, scale=0.1))]
    tensors = [(name, 12, dims, data) for name, dims, data in t]
    blob = tokenizer_blob()
    tensors.append(("aux/tokenizer.bin", 2, [len(blob)], blob))
    spec = {"architecture": "gpt2", "vocabSize": V, "hiddenSize": H, "layers": 1, "heads": 2, "kvHeads": 2, "headDim": 4,
            "intermediateSize": I, "maxPositions": P, "norm": "layerNorm", "normEps": 1e-5, "activation": "gelu_new",
            "positions": "learned", "tiedEmbeddings": True, "attentionBias": True, "mlpBias": True, "eosTokenIds": [256],
            "bosTokenId": 256, "mtpLayers": 0}
    write_container(path, spec, tensors)

def read(path):
    b = open(path, "rb").read()
    assert b[:8] == MAGIC, "bad magic"
    major, minor, flags, flen, moff, mlen, toff, tlen, mh, th = struct.unpack_from("<HHIQQQQQQQ", b, 8)
    assert struct.unpack_from("<Q", b, 88)[0] == h64(b[:88]), "header checksum"
    assert major == 1 and flags == 0 and flen == len(b)
    assert h64(b[moff:moff + mlen]) == mh and h64(b[toff:toff + tlen]) == th
    meta = json.loads(b[moff:moff + mlen])
    print(f"version {major}.{minor}, {meta['architecture']}, {len(b)} bytes")
    p = toff
    count, _ = struct.unpack_from("<II", b, p); p += 8
    entries = []
    for _ in range(count):
        nlen, dcode, codec, rank, tflags, _, csize, link, rawlen, thash, nchunks, _ = struct.unpack_from("<HBBBBHIIQQII", b, p); p += 40
        shape = list(struct.unpack_from(f"<{rank}Q", b, p)); p += 8 * rank
        name = b[p:p + nlen].decode(); p += nlen
        chunks = [struct.unpack_from("<QIIQ", b, p + 24 * i) for i in range(nchunks)]; p += 24 * nchunks
        entries.append((name, DTYPES[dcode], CODECS[codec], shape, csize, link, rawlen, thash, chunks))
    check_scale_grids(meta, entries)
    dctx = zstandard.ZstdDecompressor()
    for name, dtype, codec, shape, csize, link, rawlen, thash, chunks in entries:
        if codec != "alias":
            assert tensor_hash([c[3] for c in chunks]) == thash
            es = BITS[dtype] // 8
            for i, (off, slen, _, ch) in enumerate(chunks):
                want = min(csize, rawlen - i * csize)
                stored = b[off:off + slen]
                if codec == "raw":
                    raw = stored
                else:
                    raw = b"".join(dctx.decompressobj().decompress(f) for f in split_frames(stored))
                    if codec == "zstd+planes":
                        n = want // es
                        raw = unshuffle(raw, n, es)
                    elif codec == "zstd+nibbles":
                        assert dtype == "F8_E4M3" and len(raw) == 2 * ((want + 1) // 2), f"{name} chunk {i}"
                        raw = join_nibbles(raw, want)
                assert len(raw) == want and h64(raw) == ch, f"{name} chunk {i}"
        target = f" -> {entries[link][0]}" if link != 0xFFFFFFFF else ""
        print(f"  {name:40s} {dtype:8s} {str(shape):16s} {codec:12s}{target}")

def check_scale_grids(meta, entries):
    """MAL.md §8: a quantised weight's scale grid is ceil(dims / block) for its own block."""
    default = ((meta["spec"].get("quantization") or {}).get("weightBlockSize")) or [128, 128]
    for name, _, codec, shape, _, link, _, _, _ in entries:
        if codec == "alias" or link == 0xFFFFFFFF or not name.endswith(".weight"):
            continue
        br, bc = (meta.get("blockShapes") or {}).get(name, default)
        bc = bc or shape[1]                      # 0: one block per row (per channel)
        want = [-(-shape[0] // br), -(-shape[1] // bc)]
        assert entries[link][3] == want, f"{name}: scale grid {entries[link][3]}, its {br}x{bc} blocks give {want}"

def split_frames(buf):
    """Concatenated zstd frames (the byte-plane codec stores one frame per plane)."""
    frames, p = [], 0
    while p < len(buf):
        n = zstandard.frame_content_size(buf[p:])  # noqa: F841 (validates the frame header)
        size = zstandard.ZstdDecompressor().decompressobj()
        params = zstandard.get_frame_parameters(buf[p:])
        # find the compressed size of this frame by decoding it
        d = zstandard.ZstdDecompressor().decompressobj()
        d.decompress(buf[p:])
        used = len(buf) - p - len(d.unused_data)
        frames.append(buf[p:p + used])
        p += used
    return frames

def join_nibbles(planes, n):
    """MAL.md §6 codec 4: plane E holds the exponent bits (6..3) of bytes 2k (low nibble) and
    2k+1 (high nibble), plane S their sign (bit 7 -> nibble bit 3) and mantissa (bits 2..0)."""
    h = (n + 1) // 2
    e, s = planes[:h], planes[h:2 * h]
    lo = lambda f: bytes(f(x & 0xF) for x in range(256))                   # noqa: E731
    hi = lambda f: bytes(f(x >> 4) for x in range(256))                    # noqa: E731
    sm = lambda v: ((v & 8) << 4) | (v & 7)                                 # noqa: E731
    ex = lambda v: v << 3                                                   # noqa: E731
    def ors(a, b):
        return (int.from_bytes(a, "little") | int.from_bytes(b, "little")).to_bytes(len(a), "little")
    out = bytearray(2 * h)
    out[0::2] = ors(e.translate(lo(ex)), s.translate(lo(sm)))
    out[1::2] = ors(e.translate(hi(ex)), s.translate(hi(sm)))
    return bytes(out[:n])

def unshuffle(raw, n, es):
    """Byte planes back to elements: chunk[k * es + j] = plane[j][k] (MAL.md §6)."""
    out = bytearray(n * es)
    for j in range(es): out[j::es] = raw[j * n:(j + 1) * n]
    return bytes(out)

if __name__ == "__main__":
    {"write": write_example, "write-model": write_model, "read": read}[sys.argv[1]](sys.argv[2])
