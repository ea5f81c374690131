"""dB and dC of the fused backward summed over a program's channels by a butterfly
reduce-scatter in inline PTX (``ScanConfig.bfly``; off by default).

In the backward each chunk adds, for every step t and state n, the sums over the program's BD
channels of g·Δx (dB) and dy'·h (dC) into float32 buffers. ``tl.sum`` over the channel axis,
which lies across BD lanes of a warp, is an all-reduce: each of the 2 × 16 values a lane holds
(4 steps × 4 states at BT = 4, BD = 8, one warp) goes through log2(BD) shuffle rounds and every
lane ends with every sum (96 shuffles a chunk; session 10 measured the two sums at 11–28% of
forward+backward, ``README.md``). A reduce-scatter halves the values a lane keeps at each
round instead: the lanes of each pair split the values, each sends the half it gives up and
adds the half it keeps. Over 8 values (4 elements of dB's and 4 of dC's, ``pack = 4``) and 3
rounds that is 4 + 2 + 1 shuffles instead of 8 × 3, and each lane ends with one whole sum of
one (tensor, element), which it adds to memory itself: the lanes issue exactly the atomics
needed, one per sum. With BD = 16 a fourth round is an all-reduce of that one value, and half
of the lanes add.

Triton has no shuffle, so the rounds are inline PTX (``tl.inline_asm_elementwise``). That
code relies on the layout Triton gives its operands: the channel axis, and nothing else, on
the lowest log2(BD) bits of the lane index, so that lanes differing in those bits hold the
same (step, state) in the same register. ``tests/test_scan_bfly.py`` checks that in the
compiled kernel's TTGIR (offline, no GPU); a GPU test checks the gradients.
"""

from __future__ import annotations

import triton
import triton.language as tl


def bfly_asm(bd: int, pack: int) -> str:
    """The PTX of one asm instance: ``pack`` elements each of dB's and dC's partials, BD
    channels on lanes (BD and pack powers of 2, 2·pack ≤ BD ≤ 32).

    Operands (P = pack): ``$0..`` P dummy outputs; then P each of dB's partials, dC's
    partials, the elements' offsets from the bases in float32 elements (s32; −1: masked), the
    lane's channel d shifted right by log2(BD / 2P) (the same P times: its top bits pick the
    halves kept), dB's and dC's base addresses (u64). A lane ends with the whole sum of value
    e of the 2P (dC's when e ≥ P; element e mod P) on BD / 2P lanes, and the first of those adds
    it to memory with a relaxed atomic."""
    if pack < 1 or pack & (pack - 1) or bd not in (8, 16, 32) or 2 * pack > bd:
        raise ValueError(f"bfly_asm: need BD in (8, 16, 32) and a power-of-2 pack with "
                         f"2·pack ≤ BD, got BD {bd}, pack {pack}")
    op = iter(range(1000))
    outs = [f"${next(op)}" for _ in range(pack)]
    p_b = [f"${next(op)}" for _ in range(pack)]
    p_c = [f"${next(op)}" for _ in range(pack)]
    offs = [f"${next(op)}" for _ in range(pack)]
    e_in = [f"${next(op)}" for _ in range(pack)][0]  # all P the same value
    base_b = [f"${next(op)}" for _ in range(pack)][0]
    base_c = [f"${next(op)}" for _ in range(pack)][0]
    values = p_b + p_c
    body = []
    mask, bit, n_kept = bd // 2, pack, 0
    # reduce-scatter: each round over lane mask m halves the values; the lanes whose e has the
    # round's bit keep the upper half (the first round: dC's)
    while len(values) > 1:
        body += [f"and.b32 t, {e_in}, {bit};", "setp.ne.b32 p, t, 0;"]
        half = len(values) // 2
        kept = []
        for lo, hi in zip(values[:half], values[half:], strict=True):
            out = f"v{n_kept}"
            n_kept += 1
            body += [f"selp.f32 k, {hi}, {lo}, p;", f"selp.f32 s, {lo}, {hi}, p;",
                     f"shfl.sync.bfly.b32 r, s, {mask}, 0x1f, 0xffffffff;",
                     f"add.f32 {out}, k, r;"]
            kept.append(out)
        values = kept
        mask, bit = mask // 2, bit // 2
    total = values[0]
    while mask >= 1:  # all-reduce the one value left over the lane bits left
        body += [f"shfl.sync.bfly.b32 r, {total}, {mask}, 0x1f, 0xffffffff;",
                 f"add.f32 {total}, {total}, r;"]
        mask //= 2
    body += [f"and.b32 t, {e_in}, {pack - 1};", f"mov.b32 off, {offs[0]};"]
    for j in range(1, pack):
        body += [f"setp.eq.u32 p, t, {j};", f"@p mov.b32 off, {offs[j]};"]
    body += [f"and.b32 t, {e_in}, {pack};", "setp.ne.u32 p, t, 0;",
             f"selp.b64 base, {base_c}, {base_b}, p;",
             "mul.wide.s32 addr, off, 4;", "add.s64 addr, base, addr;",
             "setp.ge.s32 live, off, 0;"]
    if bd > 2 * pack:  # the sum sits on bd / 2P lanes: the one whose low lane bits are 0 adds
        body += ["mov.u32 t, %laneid;", f"and.b32 t, t, {bd // (2 * pack) - 1};",
                 "setp.eq.and.b32 live, t, 0, live;"]
    body += [f"@live red.relaxed.gpu.global.add.f32 [addr], {total};"]
    body += [f"mov.b32 {o}, 0;" for o in outs]
    head = ["{", ".reg .pred p, live;", ".reg .b32 t;", ".reg .f32 k, s, r;",
            f".reg .f32 v<{n_kept}>;", ".reg .s32 off;", ".reg .b64 base, addr;"]
    return "\n".join(head + body + ["}"])


def bfly_constraints(pack: int) -> str:
    """``bfly_asm``'s operand constraints: the dummy outputs, then the partials (f32), offsets
    and channel bits (s32) and the two bases (u64), ``pack`` each."""
    return ",".join(["=r"] * pack + ["f"] * 2 * pack + ["r"] * 2 * pack + ["l"] * 2 * pack)


# the PTX for each (BD, pack) a kernel may take, as constexprs (a kernel reads no other globals)
BFLY_ASM_8_1 = tl.constexpr(bfly_asm(8, 1))
BFLY_ASM_8_2 = tl.constexpr(bfly_asm(8, 2))
BFLY_ASM_8_4 = tl.constexpr(bfly_asm(8, 4))
BFLY_ASM_16_1 = tl.constexpr(bfly_asm(16, 1))
BFLY_ASM_16_2 = tl.constexpr(bfly_asm(16, 2))
BFLY_ASM_16_4 = tl.constexpr(bfly_asm(16, 4))
BFLY_CONSTRAINTS_1 = tl.constexpr(bfly_constraints(1))
BFLY_CONSTRAINTS_2 = tl.constexpr(bfly_constraints(2))
BFLY_CONSTRAINTS_4 = tl.constexpr(bfly_constraints(4))


@triton.jit
def _add_dbc_bfly(dB, dC, b_pB, b_pC, o_tn, m_tn, PACK: tl.constexpr):
    """dB[o_tn] += Σ_d b_pB[t, n, d] and dC[o_tn] += Σ_d b_pC[t, n, d]: ``[BT, NP, BD]``
    partials (BD = 8 or 16 channels on lanes), ``o_tn`` int32 offsets from the (per-program)
    pointers dB and dC and ``m_tn`` their mask, both ``[BT, NP]``; by the butterfly above,
    PACK (1, 2 or 4) elements of each per asm instance."""
    BD: tl.constexpr = b_pB.shape[2]
    tl.static_assert(BD == 8 or BD == 16, "bfly: BD must be 8 or 16")
    tl.static_assert(PACK == 1 or PACK == 2 or PACK == 4, "bfly: PACK must be 1, 2 or 4")
    # one warp: each lane holds numel / 32 elements, and an asm instance takes PACK of them
    tl.static_assert(b_pB.numel >= 32 * PACK, "bfly: PACK exceeds the elements of a lane")
    shape: tl.constexpr = b_pB.shape
    off = tl.broadcast_to(tl.where(m_tn, o_tn, -1)[:, :, None], shape).to(tl.int32)
    # the channel's top log2(2·PACK) bits: which halves the lane keeps
    e = tl.broadcast_to((tl.arange(0, BD) // (BD // (2 * PACK)))[None, None, :], shape)
    zero = tl.zeros(shape, tl.int64)
    if PACK == 1:
        cons: tl.constexpr = BFLY_CONSTRAINTS_1
        asm: tl.constexpr = BFLY_ASM_8_1 if BD == 8 else BFLY_ASM_16_1
    elif PACK == 2:
        cons: tl.constexpr = BFLY_CONSTRAINTS_2
        asm: tl.constexpr = BFLY_ASM_8_2 if BD == 8 else BFLY_ASM_16_2
    else:
        cons: tl.constexpr = BFLY_CONSTRAINTS_4
        asm: tl.constexpr = BFLY_ASM_8_4 if BD == 8 else BFLY_ASM_16_4
    tl.inline_asm_elementwise(
        asm, cons, [b_pB, b_pC, off, e, zero + dB.to(tl.int64), zero + dC.to(tl.int64)],
        dtype=tl.int32, is_pure=False, pack=PACK)
