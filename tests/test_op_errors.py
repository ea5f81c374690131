"""Bad arguments to the public ops raise ValueError naming the argument and what was expected."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from statetrack.ops import delta_rule, linear_scan, selective_scan

Args = dict[str, torch.Tensor]


def delta_rule_args() -> Args:
    B, T, H, K, V = 2, 5, 3, 4, 6
    return {"q": torch.randn(B, T, H, K), "k": torch.randn(B, T, H, K),
            "v": torch.randn(B, T, H, V), "beta": torch.rand(B, T, H),
            "gate": torch.rand(B, T, H), "initial_state": torch.randn(B, H, K, V)}


def call_delta_rule(a: Args, **options: object) -> object:
    return delta_rule(a["q"], a["k"], a["v"], a["beta"], gate=a["gate"],
                      initial_state=a["initial_state"], **options)


def linear_scan_args() -> Args:
    return {"a": torch.rand(2, 5, 3, 4), "b": torch.randn(2, 5, 3, 4),
            "initial_state": torch.randn(2, 3, 4)}


def call_linear_scan(a: Args, **options: object) -> object:
    return linear_scan(a["a"], a["b"], initial_state=a["initial_state"], **options)


def selective_scan_args() -> Args:
    Bsz, T, Dm, N = 2, 5, 4, 3
    return {"x": torch.randn(Bsz, T, Dm), "dt": torch.randn(Bsz, T, Dm),
            "A": -torch.rand(Dm, N), "B": torch.randn(Bsz, T, N), "C": torch.randn(Bsz, T, N),
            "D": torch.randn(Dm), "z": torch.randn(Bsz, T, Dm), "dt_bias": torch.randn(Dm),
            "initial_state": torch.randn(Bsz, Dm, N)}


def call_selective_scan(a: Args, **options: object) -> object:
    return selective_scan(a["x"], a["dt"], a["A"], a["B"], a["C"], D=a["D"], z=a["z"],
                          dt_bias=a["dt_bias"], initial_state=a["initial_state"], **options)


Op = tuple[Callable[[], Args], Callable[..., object]]
OPS: dict[str, Op] = {
    "delta_rule": (delta_rule_args, call_delta_rule),
    "linear_scan": (linear_scan_args, call_linear_scan),
    "selective_scan": (selective_scan_args, call_selective_scan),
}

# (op, argument, expected layout, dim to resize or None when the argument defines the sizes)
LAYOUTS = [
    ("delta_rule", "q", "[B, T, H, K]", None),
    ("delta_rule", "k", "[B, T, H, K]", 3),
    ("delta_rule", "v", "[B, T, H, V]", 1),
    ("delta_rule", "beta", "[B, T, H]", 2),
    ("delta_rule", "gate", "[B, T, H]", 1),
    ("delta_rule", "initial_state", "[B, H, K, V]", 2),
    ("linear_scan", "a", "[B, T, *]", 3),
    ("linear_scan", "b", "[B, T, *]", None),
    ("linear_scan", "initial_state", "[B, *]", 0),
    ("selective_scan", "x", "[B, T, Dm]", None),
    ("selective_scan", "dt", "[B, T, Dm]", 2),
    ("selective_scan", "A", "[Dm, N]", 0),
    ("selective_scan", "B", "[B, T, N]", 2),
    ("selective_scan", "C", "[B, T, N]", 1),
    ("selective_scan", "D", "[Dm]", 0),
    ("selective_scan", "z", "[B, T, Dm]", 0),
    ("selective_scan", "dt_bias", "[Dm]", 0),
    ("selective_scan", "initial_state", "[B, Dm, N]", 1),
]
IDS = [f"{op}-{name}" for op, name, _, _ in LAYOUTS]


def raises_naming(op: str, args: Args, name: str, *needles: str, **options: object) -> None:
    """Calling ``op`` raises ValueError whose message starts with ``name:`` and has every needle."""
    options.setdefault("backend", "reference")
    with pytest.raises(ValueError) as info:
        OPS[op][1](args, **options)
    message = str(info.value)
    assert message.startswith(f"{name}:"), message
    assert all(n in message for n in needles), (needles, message)


@pytest.mark.parametrize("op", list(OPS))
def test_valid_arguments_pass(op: str) -> None:
    """The baseline arguments of these tests are accepted (so each failure below is the one
    we changed)."""
    make, call = OPS[op]
    call(make(), backend="reference")


@pytest.mark.parametrize("op, name, layout, dim", LAYOUTS, ids=IDS)
def test_wrong_number_of_dims(op: str, name: str, layout: str, dim: int | None) -> None:
    """An argument with a missing dimension is rejected, naming it and its layout."""
    args = OPS[op][0]()
    # linear_scan's b may have any trailing shape ([B, T, *]): only fewer than 2 dims is wrong.
    args[name] = args[name][0, 0, 0] if (op, name) == ("linear_scan", "b") else args[name][0]
    raises_naming(op, args, name, layout)


@pytest.mark.parametrize("op, name, layout, dim", [c for c in LAYOUTS if c[3] is not None],
                         ids=[i for i, c in zip(IDS, LAYOUTS, strict=True) if c[3] is not None])
def test_mismatched_size(op: str, name: str, layout: str, dim: int) -> None:
    """An argument whose size disagrees with the others is rejected, naming it and its layout."""
    args = OPS[op][0]()
    t = args[name]
    args[name] = torch.cat([t, t.narrow(dim, 0, 1)], dim=dim)
    raises_naming(op, args, name, layout, str(tuple(args[name].shape)))


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
@pytest.mark.parametrize("op, name, layout, dim", LAYOUTS, ids=IDS)
def test_non_float_dtype(op: str, name: str, layout: str, dim: int | None,
                         dtype: torch.dtype) -> None:
    """A non-floating argument is rejected, naming it, its layout and the allowed dtypes."""
    args = OPS[op][0]()
    args[name] = args[name].to(dtype)
    raises_naming(op, args, name, layout, "float32", str(dtype))


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("backend", ["cuda", "Torch", ""])
def test_bad_backend(op: str, backend: str) -> None:
    """An unknown backend lists the allowed ones."""
    raises_naming(op, OPS[op][0](), "backend", repr(backend),
                  *("auto", "reference", "torch", "triton"), backend=backend)


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("chunk_size", [0, -4, 2.5])
def test_bad_chunk_size(op: str, chunk_size: object) -> None:
    """A chunk size that is not a positive int is rejected by name."""
    raises_naming(op, OPS[op][0](), "chunk_size", "positive int", chunk_size=chunk_size)


@pytest.mark.parametrize("eig_range", [(0.0, 2.0), (1.0, 0.0), (-1.5, 1.0), (0.5, 0.5),
                                       (0.0, 0.5, 1.0), "zero to one"])
def test_bad_eig_range(eig_range: object) -> None:
    """An eig_range outside -1 <= lo < hi <= 1 states the allowed values."""
    raises_naming("selective_scan", selective_scan_args(), "eig_range",
                  "-1 <= lo < hi <= 1", eig_range=eig_range)



def selective_scan_variants() -> list[tuple[str, Args, bool]]:
    """(case, arguments, whether they are valid): the baseline selective_scan arguments with
    and without the optional inputs, then with one changed: to a wrong rank, a size off by one
    in each dim, a non-floating or unsupported floating dtype, another device, a list, None
    (valid for the optional inputs only)."""
    base = selective_scan_args()
    required = ("x", "dt", "A", "B", "C")
    out = [("valid", base, True),
           ("no optional", {k: v if k in required else None for k, v in base.items()}, True)]
    for name, t in base.items():
        bad = {"fewer dims": t[0], "more dims": t[None], "list": t.tolist(), "int64": t.long(),
               "bool": t.bool(), "float8": t.to(torch.float8_e4m3fn), "meta": t.to("meta")}
        bad |= {f"dim {d} + 1": torch.cat([t, t.narrow(d, 0, 1)], dim=d) for d in range(t.ndim)}
        out += [(f"{name} {what}", base | {name: v}, False) for what, v in bad.items()]
        out.append((f"{name} None", base | {name: None}, name not in required))
    return out


SS_VARIANTS = selective_scan_variants()


@pytest.mark.parametrize("case, args, valid", SS_VARIANTS, ids=[c for c, _, _ in SS_VARIANTS])
def test_selective_scan_fast_check_agrees_with_the_named_checks(case: str, args: Args,
                                                                valid: bool) -> None:
    """selective_scan skips its named checks when one pass finds every input well formed: that
    pass accepts exactly the arguments the named checks accept, so each error above is still
    raised, by the named checks."""
    import importlib

    ss = importlib.import_module("statetrack.ops.selective_scan")
    values = [args[n] for n in ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_state")]
    if valid:
        ss._check_inputs(*values)
    else:
        with pytest.raises(ValueError):
            ss._check_inputs(*values)
    assert ss._well_formed(*values) == valid
