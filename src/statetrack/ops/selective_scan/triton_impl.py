"""Triton backend of ``selective_scan``: the autograd function around the fused kernels."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
import triton

from statetrack.eig import EigRange
from statetrack.ops.selective_scan.triton_bwd import ss_bwd_carry_kernel, ss_bwd_kernel
from statetrack.ops.selective_scan.triton_kernels import ss_fwd_carry_kernel, ss_fwd_kernel
from statetrack.ops.selective_scan.triton_lanes import ss_lanes_fwd_kernel
from statetrack.ops.selective_scan.triton_lanes_bwd import ss_lanes_bwd_kernel


@dataclass(frozen=True)
class ScanConfig:
    """Tile sizes: BT steps per chunk, BD channels per program (one lane each), SEG steps
    between saved states (a multiple of BT), num_warps spread over the N states; maxnreg, when
    set, caps the registers per thread (the launch option: spills traded for more programs per
    multiprocessor). ``parts`` > 1 splits the time into that many parts (whole segments, at
    most one per segment) run at once after a pass that carries the state (forward,
    ``ss_fwd_carry_kernel``) or the adjoint (backward, ``ss_bwd_carry_kernel``) across them:
    more programs for long sequences of few channels. ``bfly`` (backward; 1, 2 or 4; 0 off)
    sums dB and dC over the channels by the inline-PTX reduce-scatter of ``triton_bfly.py``,
    that many elements per asm instance, BD 8 or 16 at one warp (the layout it was checked
    for); it is inline PTX, so on CPU tensors (TRITON_INTERPRET) the same sums take tl.sum.
    ``RBT`` (backward, "chunk_pipe" only; None: BT) is the chunk of the backward's recompute
    of the forward, a multiple of BT dividing SEG: a longer scan per chunk, storing the states
    that enter the reverse loop's chunks from within it. SEG = BT in "chunk_pipe" is dense:
    the forward saves the state entering every chunk of the backward, which recomputes
    nothing; the saved states (``[B, cdiv(T, SEG), N, Dm]`` float32) grow as SEG shrinks,
    16-fold from SEG = 64 to 4."""

    BT: int = 16
    BD: int = 32
    SEG: int = 64
    num_warps: int = 4
    maxnreg: int | None = None
    parts: int = 1
    bfly: int = 0
    RBT: int | None = None

    def __post_init__(self) -> None:
        if self.SEG % self.BT:
            raise ValueError(f"ScanConfig.SEG: expected a multiple of BT = {self.BT} (the "
                             f"steps between saved states), got {self.SEG}")
        if self.RBT is not None and (self.RBT % self.BT or self.SEG % self.RBT):
            raise ValueError(f"ScanConfig.RBT: expected a multiple of BT = {self.BT} that "
                             f"divides SEG = {self.SEG}, got {self.RBT}")
        if self.bfly not in (0, 1, 2, 4):
            raise ValueError(f"ScanConfig.bfly: expected 0 (off), 1, 2 or 4, got {self.bfly!r}")
        if self.bfly and (self.BD not in (8, 16) or self.num_warps != 1):
            raise ValueError("ScanConfig.bfly: needs BD 8 or 16 at num_warps 1 (the layout its "
                             f"PTX was checked for), got BD {self.BD}, num_warps "
                             f"{self.num_warps}")


FWD_CONFIG = ScanConfig(BT=16, BD=32, SEG=64, num_warps=4)  # fastest of the H200 sweep
BWD_CONFIG = ScanConfig(BT=4, BD=32, SEG=64, num_warps=4)  # fastest of the H200 sweep


@dataclass(frozen=True)
class PipeTiles:
    """The "chunk_pipe" layout's tiles, chosen per call from the grid (cdiv(Dm, BD) · B
    programs, BD of ``many``'s forward, per multiprocessor) and the sequence length: ``few``
    when T is at most ``short_T`` steps; else ``many`` from ``many_per_sm`` programs per
    multiprocessor, ``fewest`` (when given) below ``fewest_per_sm``, and ``few`` between. Each
    set is (forward, backward), forward and backward on one SEG, the spacing of the saved
    states the backward restarts from.

    ``dense`` (when given; SEG = the backward's BT: the forward saves the state entering every
    chunk and the backward recomputes nothing) takes precedence over all three when the
    forward saves states for a backward, the grid is not below ``fewest_per_sm`` and its saved
    states (``[B, cdiv(T, SEG), N, Dm]`` float32) take at most ``dense_max_bytes``
    (STATETRACK_SCAN_DENSE_MIB, when set, overrides it in MiB; 0 turns dense off)."""

    many: tuple[ScanConfig, ScanConfig]
    few: tuple[ScanConfig, ScanConfig]
    many_per_sm: int = 2
    short_T: int = 0
    fewest: tuple[ScanConfig, ScanConfig] | None = None
    fewest_per_sm: int = 0
    dense: tuple[ScanConfig, ScanConfig] | None = None
    dense_max_bytes: int = 512 * 2**20

    def sets(self) -> dict[str, tuple[ScanConfig, ScanConfig]]:
        """The tile sets by name (``fewest`` and ``dense`` only when given)."""
        named = {"many": self.many, "few": self.few, "fewest": self.fewest, "dense": self.dense}
        return {name: pair for name, pair in named.items() if pair is not None}


# H200 sweeps, [−1, 1], bf16, ms at (8, 2048, 2048) / (4, 8192, 1536) / (256, 40, 256) /
# (256, 256, 256), every tile's y and gradients checked against the "chunk" layout first.
# Session 10 (benchmarks/results/logs/h200_scan_sweep_s10.log, replayed from CUDA graphs, so
# kernel time only):
#   forward (BT, BD, warps) = (4, 16, 1) / (8, 16, 1) / (16, 8, 1): 0.429 / 0.411 / 0.471;
#     1.442 / 1.193 / 0.905; 0.040 / 0.041 / 0.057; 0.179 / 0.210 / 0.241
#   forward+backward, backward at (4, 8, 1): 2.539; 5.510; 0.216; 1.231; every other backward
#     tried ((2, 8), (1, 8), (2, 4), (4, 4); session 9: (2, 16), (4, 16, 2 warps)) is slower
#     at every shape, by 38–110% in session 10
# Session 10's first sweep (logs/h200_scan_pipe_s10.log, eager): register caps (maxnreg 128–200)
# and splits in time (parts 2, 4) were slower at every shape but (256, 40, 256), where the
# host's launch work sets the eager time.
# Session 11's second sweep (logs/h200_scan_sweep_s11_call2.log, graphs; the tiles also in
#   the first, _s11.log, agree within 1%), the forward at (4, 16, 1): the (4, 8, 1) backward
#   at 2.551; 5.554; 0.220; 1.238 took 2.357; 5.162; 0.203; 1.136 with its recompute in chunks
#   of RBT = 16 steps (8 and 32 slower), 2.393; 5.425; 0.212; 1.153 with the dB/dC sums by the
#   butterfly at bfly = 4 (bfly = 1 and 2, first sweep only, slower than without it), and
#   2.218; 5.048; 0.205; 1.064 with both.
# So the backward is (4, 8, 1) at bfly = 4, RBT = 16 throughout, and the forward follows the
# grid: with BD = 16 the grids have 1024, 384, 4096 and 4096 programs on 132 multiprocessors;
# (256, 256, 256), at 8 or more per multiprocessor, takes "many"; (4, 8192, 1536), under 4,
# "fewest" (BD = 8 doubles its programs); (8, 2048, 2048) and (256, 40, 256) (T under short_T)
# take "few".
# Session 17's sweep (logs/h200_scan_sweep_s17.log, graphs) added dense pairs (SEG = BT: the
# forward saves the state entering every chunk, the backward recomputes nothing). Forward (4, 16,
# 1) with the (4, 8, 1) backward at bfly = 4 took 1.913; 4.244; 0.165; 0.935 against the sets
# chosen above, 2.116 (few); 4.200 (fewest); 0.205 (few); 1.065 (many); the backward at BD 16
# (3.644; 9.578; 0.257; 1.591), the forward at BD 8 (1.939; 4.246; 0.175; 0.969) and BT 8 for
# both (2.734; 5.663; 0.245; 1.330) lost. So "dense" is that pair, wherever its saved states
# (16 times the recomputing sets': [B, T/4, N, Dm] float32, 512 MiB at (8, 2048, 2048)) fit
# dense_max_bytes, but at grids below fewest_per_sm, where it did not pay.
_PIPE_BWD = ScanConfig(BT=4, BD=8, SEG=64, num_warps=1, bfly=4, RBT=16)
PIPE_TILES = PipeTiles(
    many=(ScanConfig(BT=4, BD=16, SEG=64, num_warps=1), _PIPE_BWD),
    few=(ScanConfig(BT=8, BD=16, SEG=64, num_warps=1), _PIPE_BWD),
    many_per_sm=8, short_T=64,
    fewest=(ScanConfig(BT=16, BD=8, SEG=64, num_warps=1), _PIPE_BWD),
    fewest_per_sm=4,
    dense=(ScanConfig(BT=4, BD=16, SEG=4, num_warps=1),
           ScanConfig(BT=4, BD=8, SEG=4, num_warps=1, bfly=4)),
    dense_max_bytes=512 * 2**20)


@functools.cache
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


DENSE_ENV = "STATETRACK_SCAN_DENSE_MIB"


def dense_max_bytes(tiles: PipeTiles) -> int:
    """The largest saved-state buffer the dense tiles may take: STATETRACK_SCAN_DENSE_MIB (MiB,
    a non-negative integer) when set, else ``tiles.dense_max_bytes``."""
    raw = os.environ.get(DENSE_ENV)
    if raw is None or raw == "":
        return tiles.dense_max_bytes
    if not raw.strip().isdigit():
        raise ValueError(f"{DENSE_ENV}: expected a non-negative integer (MiB; 0 turns the dense "
                         f"backward off), got {raw!r}")
    return int(raw) * 2**20


def saved_state_bytes(Bsz: int, T: int, Dm: int, N: int, SEG: int) -> int:
    """Bytes of the states a forward saves for its backward every SEG steps:
    ``[B, cdiv(T, SEG), N, Dm]`` float32."""
    return 4 * Bsz * _cdiv(T, SEG) * N * Dm


def pipe_tiles(Bsz: int, T: int, Dm: int, device: torch.device, *, N: int = 1,
               save: bool = False) -> tuple[ScanConfig, ScanConfig]:
    """The (forward, backward) tiles of "chunk_pipe" for a batch of Bsz rows of T steps of Dm
    channels and N states; ``save``: the forward saves states for a backward (the dense set
    is considered only then)."""
    tiles = PIPE_TILES
    for name, (f, b) in tiles.sets().items():
        if f.SEG != b.SEG:
            raise ValueError(f"selective_scan: PIPE_TILES.{name} has forward SEG = {f.SEG} and "
                             f"backward SEG = {b.SEG}; the backward restarts from the states the "
                             "forward saves, so they must be equal")
    if tiles.dense is not None and tiles.dense[1].SEG != tiles.dense[1].BT:
        raise ValueError(f"selective_scan: PIPE_TILES.dense needs SEG = the backward's BT = "
                         f"{tiles.dense[1].BT}, got SEG = {tiles.dense[1].SEG}")
    sms = _sm_count(device.index or 0) if device.type == "cuda" else 1
    programs = triton.cdiv(Dm, tiles.many[0].BD) * Bsz
    if save and tiles.dense is not None:
        small_grid = tiles.fewest is not None and programs < tiles.fewest_per_sm * sms
        states = saved_state_bytes(Bsz, T, Dm, N, tiles.dense[0].SEG)
        if not small_grid and states <= dense_max_bytes(tiles):
            return tiles.dense
    if T <= tiles.short_T:
        return tiles.few
    if programs >= tiles.many_per_sm * sms:
        return tiles.many
    if tiles.fewest is not None and programs < tiles.fewest_per_sm * sms:
        return tiles.fewest
    return tiles.few


@dataclass(frozen=True)
class LanesConfig:
    """Tiles of the "lanes" layout (``triton_lanes.py``): BT steps per chunk over the lanes and
    warps (a power of 2), BD channels per program held in each thread's registers."""

    BT: int = 128
    BD: int = 4
    num_warps: int = 4


LAYOUTS = ("chunk", "chunk_pipe", "lanes")
# "chunk": time in registers, channels on lanes (triton_kernels.py, triton_bwd.py);
# "chunk_pipe": the same kernels with PIPE: each chunk loop issues the next chunk's loads before
# this chunk's scans, by hand (README, "Prefetching the next chunk"), with tiles chosen per call
# (PIPE_TILES); the default: on the H200 in session 11 forward+backward at [−1, 1] took
# 2.123 / 4.199 / 1.070 ms against "chunk"'s 7.499 / 14.974 / 3.734 at (8, 2048, 2048),
# (4, 8192, 1536) and (256, 256, 256), and 0.206 against 0.647 from a CUDA graph at
# (256, 40, 256) (eager, 0.900 against 0.958: the host's launch work);
# "lanes": time over lanes, a loop over the N states (triton_lanes.py, triton_lanes_bwd.py).
# The backward follows the layout in force at the forward. STATETRACK_SCAN_LAYOUT, when set,
# overrides LAYOUT; both are read at every call.
LAYOUT: str = "chunk_pipe"
# chosen by offline resources (README): no spills, ≥ 4 programs per multiprocessor; timed on
# the H200 in session 5: slower than "chunk" at every shape (README)
LANES_CONFIG = LanesConfig(BT=128, BD=4, num_warps=4)  # 112 registers
LANES_BWD_CONFIG = LanesConfig(BT=64, BD=4, num_warps=4)  # 108; BT a multiple of BWD_CONFIG.SEG


def scan_layout() -> str:
    """The layout in force: STATETRACK_SCAN_LAYOUT if set, else ``LAYOUT``."""
    layout = os.environ.get("STATETRACK_SCAN_LAYOUT") or LAYOUT
    if layout not in LAYOUTS:
        raise ValueError(f"selective_scan layout: expected one of {LAYOUTS}, got {layout!r} "
                         "(from STATETRACK_SCAN_LAYOUT or triton_impl.LAYOUT)")
    return layout


def _c(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.contiguous()


def _warps(cfg: ScanConfig, NP: int) -> int:
    return max(1, min(cfg.num_warps, NP * cfg.BD // 32))


# The host's integer arithmetic, as triton.cdiv and triton.next_power_of_2 compute it: those are
# constexpr functions, each host call ~1.4 µs of argument unwrapping (13 a forward+backward).
def _cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b


def _next_power_of_2(n: int) -> int:
    return 1 << (n - 1).bit_length() if n > 0 else 0


def _cast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t.to(dtype)``, without the call where it would return t itself (a no-op ``.to`` still
    parses its arguments: ~0.7 µs of host time)."""
    return t if t.dtype == dtype else t.to(dtype)


_PIPE_CHOICES: dict[tuple, tuple[PipeTiles, tuple[ScanConfig, ScanConfig]]] = {}


def _pipe_tiles_cached(Bsz: int, T: int, Dm: int, N: int, save: bool, device: torch.device
                       ) -> tuple[ScanConfig, ScanConfig]:
    """``pipe_tiles``, remembered per (PIPE_TILES object in force, shape, save, dense limit
    variable, device): its checks and arithmetic are host time at every forward. The tiles are
    read at every call, so a reassigned PIPE_TILES (a sweep, a test's monkeypatch) takes effect
    at once; an entry holds its tiles object, so that object's id is not reused while the
    entry lives. A choice that raises is not remembered (it raises again)."""
    tiles = PIPE_TILES
    key = (id(tiles), Bsz, T, Dm, N, save, os.environ.get(DENSE_ENV), device)
    hit = _PIPE_CHOICES.get(key)
    if hit is not None and hit[0] is tiles:
        return hit[1]
    pair = pipe_tiles(Bsz, T, Dm, device, N=N, save=save)
    if len(_PIPE_CHOICES) >= 64:  # shapes that vary call to call (evaluation at many T)
        _PIPE_CHOICES.clear()
    _PIPE_CHOICES[key] = (tiles, pair)
    return pair


def _forward(x, dt, A, B, C, D, z, dt_bias, h0, lo, width, save: bool, pipe: bool = False,
             pair: tuple[ScanConfig, ScanConfig] | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``pair``: chunk_pipe's (forward, backward) tiles (None: chosen here), which the caller
    hands to the backward."""
    Bsz, T, Dm = x.shape
    N = A.shape[1]
    NP = _next_power_of_2(N)
    device = x.device
    if pipe:  # pipe_tiles checks that forward and backward share SEG
        cfg = (pair or _pipe_tiles_cached(Bsz, T, Dm, N, save, device))[0]
    else:
        cfg = FWD_CONFIG
        if save and cfg.SEG != BWD_CONFIG.SEG:  # the backward restarts from these states
            raise ValueError(f"selective_scan: FWD_CONFIG.SEG = {cfg.SEG} differs from "
                             f"BWD_CONFIG.SEG = {BWD_CONFIG.SEG}, the spacing of the saved "
                             "states")
    n_seg = _cdiv(T, cfg.SEG)
    y = torch.empty_like(x)
    hT = torch.empty(Bsz, Dm, N, device=device, dtype=torch.float32)
    hseg = (torch.empty(Bsz, n_seg, N, Dm, device=device, dtype=torch.float32) if save
            else hT)
    parts, per_part = _time_parts(cfg, T)
    grid = (_cdiv(Dm, cfg.BD), Bsz, parts)
    prod = hloc = hT  # read only with parts > 1
    if parts > 1:
        prod, hloc = _part_maps(Bsz, parts, Dm, N, device)
        ss_fwd_carry_kernel[grid](
            x, dt, A, B, dt_bias, prod, hloc, T, Dm, N, lo, width, per_part,
            NP=NP, BT=cfg.BT, BD=cfg.BD, SEG=cfg.SEG, HAS_BIAS=dt_bias is not None,
            num_warps=_warps(cfg, NP))
    ss_fwd_kernel[grid](
        x, dt, A, B, C, D, z, dt_bias, h0, y, hT, hseg, prod, hloc, T, Dm, N, lo, width,
        per_part, NP=NP, BT=cfg.BT, BD=cfg.BD, SEG=cfg.SEG, HAS_D=D is not None,
        HAS_Z=z is not None, HAS_BIAS=dt_bias is not None, HAS_H0=h0 is not None, SAVE=save,
        PIPE=pipe, SPLIT=parts > 1, num_warps=_warps(cfg, NP), maxnreg=cfg.maxnreg)
    return y, hT, (hseg if save else None)


def _forward_lanes(x, dt, A, B, C, D, z, dt_bias, h0, lo, width, save: bool
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The "lanes" forward; it saves the states every BWD_CONFIG.SEG steps that the chunked
    backward restarts from (``[B, cdiv(T, SEG), N, Dm]`` float32)."""
    Bsz, T, Dm = x.shape
    N = A.shape[1]
    cfg, seg = LANES_CONFIG, BWD_CONFIG.SEG
    y = torch.empty_like(x)
    hT = torch.empty(Bsz, Dm, N, device=x.device, dtype=torch.float32)
    hseg = (torch.empty(Bsz, _cdiv(T, seg), N, Dm, device=x.device, dtype=torch.float32)
            if save else hT)
    grid = (_cdiv(Dm, cfg.BD), Bsz)
    ss_lanes_fwd_kernel[grid](
        x, dt, A, B, C, D, z, dt_bias, h0, y, hT, hseg, T, Dm, N, lo, width,
        NP=_next_power_of_2(N), BT=cfg.BT, BD=cfg.BD, SEG=seg, HAS_D=D is not None,
        HAS_Z=z is not None, HAS_BIAS=dt_bias is not None, HAS_H0=h0 is not None, SAVE=save,
        num_warps=cfg.num_warps)
    return y, hT, (hseg if save else None)


def _backward_lanes(x, dt, A, B, C, D, z, dt_bias, hseg, dy, dhT, lo, width) -> tuple:
    """The "lanes" backward, restarting every chunk from the states saved every SEG steps."""
    Bsz, T, Dm = x.shape
    N = A.shape[1]
    cfg, seg = LANES_BWD_CONFIG, BWD_CONFIG.SEG
    if cfg.BT % seg:
        raise ValueError(f"LANES_BWD_CONFIG.BT: expected a multiple of BWD_CONFIG.SEG = {seg} "
                         f"(the saved states' spacing), got {cfg.BT}")
    grads, dBC = _grad_buffers(x, dt, z, N)
    grid = (_cdiv(Dm, cfg.BD), Bsz)
    ss_lanes_bwd_kernel[grid](
        x, dt, A, B, C, D, z, dt_bias, hseg, dy, dhT, *grads,
        T, Dm, N, lo, width,
        NP=_next_power_of_2(N), BT=cfg.BT, BD=cfg.BD, SEG=seg, HAS_D=D is not None,
        HAS_Z=z is not None, HAS_BIAS=dt_bias is not None, HAS_DHT=dhT is not None,
        num_warps=cfg.num_warps)
    return _reduce_grads(grads, dBC, B, C)


def _grad_buffers(x, dt, z, N: int) -> tuple[tuple, torch.Tensor]:
    """The backward kernels' outputs, in their argument order: dx, ddt, dz (or None) in the
    inputs' dtypes; the atomic sums, float32 zeros: dB, dC ``[B, T, N]`` (halves of one buffer,
    dBC ``[2, B, T, N]``, also returned: one cast after), and dA ``[Dm, N]``, dD and
    d dt_bias ``[Dm]`` (views of a second one, so that a gradient kept in ``.grad`` holds no
    more than its own sums); dh0 ``[B, Dm, N]`` float32."""
    Bsz, T, Dm = x.shape
    f32 = dict(device=x.device, dtype=torch.float32)
    dBC = torch.zeros(2, Bsz, T, N, **f32)
    # split_with_sizes: Tensor.split's Python wrapper costs as much again
    dA, dD, dbias = torch.zeros(Dm * N + 2 * Dm, **f32).split_with_sizes([Dm * N, Dm, Dm])
    grads = (torch.empty_like(x), torch.empty_like(dt),
             torch.empty_like(z) if z is not None else None, *dBC.unbind(0), dA.view(Dm, N),
             dD, dbias, torch.empty(Bsz, Dm, N, **f32))
    return grads, dBC


def _reduce_grads(grads: tuple, dBC: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> tuple:
    """(dx, ddt, dA [Dm, N], dB, dC, dD, dz, d dt_bias, dh0): dB and dC in B's and C's dtypes
    (one cast of dBC where those agree)."""
    dx, ddt, dz, _, _, dA, dD, dbias, dh0 = grads
    if B.dtype == C.dtype:
        dB, dC = dBC.to(B.dtype).unbind(0)
    else:
        dB, dC = dBC[0].to(B.dtype), dBC[1].to(C.dtype)
    return (dx, ddt, dA, dB, dC, dD, dz, dbias, dh0)


def _part_maps(Bsz: int, parts: int, Dm: int, N: int, device: torch.device
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The two ``[B, parts, Dm, N]`` float32 outputs of a carry kernel (each part's affine map),
    from one allocation."""
    return torch.empty(2, Bsz, parts, Dm, N, device=device, dtype=torch.float32).unbind(0)


def _time_parts(cfg: ScanConfig, T: int) -> tuple[int, int]:
    """(parts, segments per part) of a pass split in time (forward or backward): at most
    ``cfg.parts``, whole segments each, none empty."""
    n_seg = _cdiv(T, cfg.SEG)
    per_part = _cdiv(n_seg, max(1, min(cfg.parts, n_seg)))
    return _cdiv(n_seg, per_part), per_part


def _backward(x, dt, A, B, C, D, z, dt_bias, hseg, dy, dhT, lo, width, pipe: bool = False,
              cfg: ScanConfig | None = None) -> tuple:
    """``cfg``: chunk_pipe's backward tile, the one paired with the forward that saved hseg
    (None: chosen here as the forward would have, saving)."""
    Bsz, T, Dm = x.shape
    N = A.shape[1]
    NP = _next_power_of_2(N)
    device = x.device
    if cfg is None:
        cfg = _pipe_tiles_cached(Bsz, T, Dm, N, True, device)[1] if pipe else BWD_CONFIG
    if not pipe and cfg.RBT not in (None, cfg.BT):
        raise ValueError(f"selective_scan: BWD_CONFIG.RBT = {cfg.RBT} needs the chunk_pipe "
                         "layout (the chunk layout recomputes in chunks of BT)")
    # bfly: an asm instance takes that many of the BT·NP·BD / 32 elements a lane holds (fewer
    # for small N); a tile of fewer than 32 elements would replicate them over lanes. It is
    # inline PTX: on other devices (TRITON_INTERPRET) the sums take tl.sum, the same sums
    cuda = device.type == "cuda"
    bfly = min(cfg.bfly, cfg.BT * NP * cfg.BD // 32) if cuda else 0
    if cuda and cfg.bfly and bfly < 1:
        raise ValueError("selective_scan: ScanConfig.bfly needs tiles of at least 32 elements "
                         f"(BT·NP·BD); got BT {cfg.BT}, NP {NP}, BD {cfg.BD}")
    parts, per_part = _time_parts(cfg, T)
    grads, dBC = _grad_buffers(x, dt, z, N)
    grid = (_cdiv(Dm, cfg.BD), Bsz, parts)
    q = prod = hseg  # read only with parts > 1
    if parts > 1:
        q, prod = _part_maps(Bsz, parts, Dm, N, device)
        ss_bwd_carry_kernel[grid](
            dt, A, C, z, dt_bias, dy, q, prod, T, Dm, N, lo, width, per_part,
            NP=NP, BT=cfg.BT, BD=cfg.BD, SEG=cfg.SEG, HAS_Z=z is not None,
            HAS_BIAS=dt_bias is not None, num_warps=_warps(cfg, NP))
    # dense (chunk_pipe, SEG = BT): the forward saved every chunk's state and the kernel reads
    # no scratch, so none is allocated (hseg stands in for the unread argument)
    scratch = hseg if pipe and cfg.SEG == cfg.BT else torch.empty(
        grid[0] * Bsz * parts * (cfg.SEG // cfg.BT) * NP * cfg.BD, device=device,
        dtype=torch.float32)
    ss_bwd_kernel[grid](
        x, dt, A, B, C, D, z, dt_bias, hseg, dy, dhT, *grads, scratch, q, prod,
        T, Dm, N, lo, width, per_part,
        NP=NP, BT=cfg.BT, BD=cfg.BD, SEG=cfg.SEG, HAS_D=D is not None, HAS_Z=z is not None,
        HAS_BIAS=dt_bias is not None, HAS_DHT=dhT is not None, PIPE=pipe, SPLIT=parts > 1,
        BFLY=bfly, RBT=cfg.RBT or cfg.BT,
        num_warps=_warps(cfg, NP), maxnreg=cfg.maxnreg)
    return _reduce_grads(grads, dBC, B, C)


class _SelectiveScanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, z, dt_bias, h0, lo: float, width: float):
        save = any(ctx.needs_input_grad[:9])
        ctx.set_materialize_grads(False)
        ctx.layout = scan_layout()
        if ctx.layout == "lanes":
            y, hT, hseg = _forward_lanes(x, dt, A, B, C, D, z, dt_bias, h0, lo, width, save)
        else:
            pipe = ctx.layout == "chunk_pipe"
            # the backward takes the forward's tiles (their SEG spaces the saved states), even
            # if PIPE_TILES or the dense limit change in between
            ctx.pair = (_pipe_tiles_cached(x.shape[0], x.shape[1], x.shape[2], A.shape[1], save,
                                           x.device) if pipe else None)
            y, hT, hseg = _forward(x, dt, A, B, C, D, z, dt_bias, h0, lo, width, save,
                                   pipe=pipe, pair=ctx.pair)
        ctx.save_for_backward(x, dt, A, B, C, D, z, dt_bias, hseg)
        ctx.lo, ctx.width, ctx.h0_meta = lo, width, (None if h0 is None else h0.dtype)
        return y, hT

    @staticmethod
    def backward(ctx, dy, dhT):
        # grads of unused outputs arrive as None (no zero-filled dhT to read; HAS_DHT off)
        x, dt, A, B, C, D, z, dt_bias, hseg = ctx.saved_tensors
        dy = torch.zeros_like(x) if dy is None else dy
        dhT = None if dhT is None else dhT.float().contiguous()
        args = (x, dt, A, B, C, D, z, dt_bias, hseg, dy.contiguous(), dhT, ctx.lo, ctx.width)
        if ctx.layout == "lanes":
            dx, ddt, dA, dB, dC, dD, dz, dbias, dh0 = _backward_lanes(*args)
        else:
            dx, ddt, dA, dB, dC, dD, dz, dbias, dh0 = _backward(
                *args, pipe=ctx.layout == "chunk_pipe",
                cfg=None if ctx.pair is None else ctx.pair[1])
        return (dx, ddt, _cast(dA, A.dtype), dB, dC,
                None if D is None else _cast(dD, D.dtype),
                dz,
                None if dt_bias is None else _cast(dbias, dt_bias.dtype),
                None if ctx.h0_meta is None else _cast(dh0, ctx.h0_meta),
                None, None)


def selective_scan_triton(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    dt_bias: torch.Tensor | None,
    eig_range: EigRange,
    initial_state: torch.Tensor | None,
    *,
    output_final_state: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Fused selective scan on the GPU: ``(y [B, T, Dm] in x's dtype, h_T [B, Dm, N] or None)``.

    Same contract as ``selective_scan_reference``; the state is float32 whatever the inputs
    (h_T is float64 for float64 inputs, computed in float32).
    """
    y, hT = _SelectiveScanFn.apply(
        x.contiguous(), dt.contiguous(), A.contiguous(), B.contiguous(), C.contiguous(), _c(D),
        _c(z), _c(dt_bias), _c(initial_state), eig_range.lo, eig_range.width)
    if not output_final_state:
        return y, None
    return y, (hT.double() if x.dtype == torch.float64 else hT)
