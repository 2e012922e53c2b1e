import struct, sys
src, dst, newpre = sys.argv[1], sys.argv[2], sys.argv[3].encode()
b = open(src, 'rb').read()
pos = 4 + 4
n_t, n_kv = struct.unpack_from('<QQ', b, pos); pos += 16
def rd_str(p):
    l, = struct.unpack_from('<Q', b, p); return b[p+8:p+8+l], p+8+l
def skip_val(t, p):
    fixed = {0:1,1:1,2:2,3:2,4:4,5:4,6:4,7:1,10:8,11:8,12:8}
    if t in fixed: return p + fixed[t]
    if t == 8: return rd_str(p)[1]
    if t == 9:
        et, n = struct.unpack_from('<IQ', b, p); p += 12
        for _ in range(n): p = skip_val(et, p)
        return p
    raise Exception(t)
align = 32
patch = None
for _ in range(n_kv):
    k, p = rd_str(pos); t, = struct.unpack_from('<I', b, p); p += 4
    vstart = p; p = skip_val(t, p)
    if k == b'tokenizer.ggml.pre': patch = (vstart, p)
    if k == b'general.alignment': align = struct.unpack_from('<I', b, vstart)[0]
    pos = p
for _ in range(n_t):
    name, p = rd_str(pos); nd, = struct.unpack_from('<I', b, p); p += 4 + 8*nd + 4 + 8; pos = p
hdr_end = pos
data_start = (hdr_end + align - 1) // align * align
newval = struct.pack('<Q', len(newpre)) + newpre
hdr = b[:patch[0]] + newval + b[patch[1]:hdr_end]
pad = (-len(hdr)) % align
open(dst, 'wb').write(hdr + b'\0' * pad + b[data_start:])
