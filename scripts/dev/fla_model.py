"""flash-linear-attention's own DeltaNet model with statetrack's weights, and a check that the two
compute the same thing.

fla (`fla-core` and `flash-linear-attention`, 0.6.0) is not a dependency of statetrack: this
script imports it, as a reference to compare against, and is never imported by the package.
`fla_from_statetrack(config)` builds statetrack's DeltaNet model from a config (its seed, its
init) and fla's `DeltaNetForCausalLM` of the same shape (`allow_neg_eigval` for the [−1, 1]
range, the config's norm eps), and copies every weight across. Run as a script, it compares the
two on a batch of training lengths in float32: the logits at the answer positions and every
parameter's gradient of the loss.

    TRITON_INTERPRET=1 PYTHONPATH=FLA_SITE:src python3 scripts/dev/fla_model.py \\
        configs/chomsky/parity/deltanet_neg.yaml --set model.norm_eps=1e-6 \\
        --set model.mixer_options.norm_eps=1e-6 [--max-len 150 --beta-scale 50]

On a CPU fla's Triton kernels run under the interpreter (TRITON_INTERPRET=1, set before
anything imports triton; a few minutes at the default batch 8 × length 40), with its autotuner's
benchmark stubbed out: no config is timed, and the first is kept.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import torch
import torch.nn.functional as F

from statetrack.experiment.config import ExperimentConfig, load_config
from statetrack.experiment.evaluation import TRAIN_STREAM, data_rng, trim
from statetrack.experiment.trainer import build
from statetrack.tasks import NO_LOSS


def stub_autotune_benchmark() -> None:
    """Under TRITON_INTERPRET there is no GPU to time configs on: make every timing equal."""
    import triton.runtime.autotuner as autotuner

    autotuner.Autotuner._bench = lambda self, *args, config, **kwargs: [1.0, 1.0, 1.0]


def paper_model_settings(config: ExperimentConfig) -> tuple[bool, float]:
    """(allow_neg_eigval, norm_eps) of fla's DeltaNet model for statetrack's model
    ``config.model``, which must be the paper's DeltaNet (Table 3's, up to the eigenvalue range
    and the norm eps): a setting fla's model has no counterpart for is refused."""
    model, options = config.model, config.model.get("mixer_options", {})
    wanted = {"mixer": "deltanet", "mlp": "swiglu", "mlp_ratio": 6.0, "init": "paper",
              "final_norm": True, "norm": "rms"}
    for key, value in wanted.items():
        if model.get(key, value) != value:
            raise SystemExit(f"model.{key}: fla's DeltaNet model needs {value!r}, "
                             f"got {model.get(key)!r}")
    plain = {"num_householder": 1, "use_gate": False, "unit_keys": False, "conv_bias": False,
             "conv_kernel": 4}
    extra = set(options) - set(plain) - {"num_heads", "eig_range", "norm_eps", "backend"}
    if extra or any(options.get(k, v) != v for k, v in plain.items()):
        raise SystemExit(f"model.mixer_options {options}: fla's DeltaNet model has {plain} "
                         "and no other option here")
    eig_range = [float(x) for x in options.get("eig_range", [0, 1])]
    if eig_range not in ([0.0, 1.0], [-1.0, 1.0]):
        raise SystemExit(f"eig_range {eig_range}: fla's DeltaNet has [0, 1] or [-1, 1]")
    eps = model.get("norm_eps", 1e-5)
    if options.get("norm_eps", 1e-5) != eps:
        raise SystemExit("fla's DeltaNet model has one norm eps: model.norm_eps and "
                         "model.mixer_options.norm_eps must agree")
    return eig_range == [-1.0, 1.0], eps


def fla_config(config: ExperimentConfig, vocab_size: int) -> Any:
    """fla's DeltaNetConfig of statetrack's paper DeltaNet model ``config.model``."""
    from fla.models import DeltaNetConfig

    allow_neg_eigval, eps = paper_model_settings(config)
    model = config.model
    return DeltaNetConfig(
        hidden_size=model["d_model"], num_heads=model["mixer_options"]["num_heads"],
        num_hidden_layers=model["n_layers"], vocab_size=vocab_size,
        allow_neg_eigval=allow_neg_eigval, norm_eps=eps, fuse_cross_entropy=False)


def weight_map(n_layers: int) -> dict[str, str]:
    """fla's parameter name → statetrack's, for every parameter but the MLP's gate and up
    projections (statetrack keeps them stacked in one ``gate_up``: gate first)."""
    names = {"model.embeddings.weight": "embedding.weight", "model.norm.weight": "norm.weight",
             "lm_head.weight": "head.weight"}
    for i in range(n_layers):
        fla, ours = f"model.layers.{i}.", f"blocks.{i}."
        names[fla + "attn_norm.weight"] = ours + "mixer_norm.weight"
        names[fla + "mlp_norm.weight"] = ours + "mlp_norm.weight"
        names[fla + "attn.o_norm.weight"] = ours + "mixer.o_norm.weight"
        names[fla + "mlp.down_proj.weight"] = ours + "mlp.down.weight"
        for p in "qkvbo":
            names[fla + f"attn.{p}_proj.weight"] = ours + f"mixer.{p}_proj.weight"
        for p in "qkv":
            names[fla + f"attn.{p}_conv1d.weight"] = ours + f"mixer.{p}_conv.conv.weight"
    return names


def counterpart(name: str, ours: dict[str, torch.Tensor], names: dict[str, str]) -> torch.Tensor:
    """statetrack's tensor (from ``ours``, name → tensor) that fla's parameter ``name`` is."""
    for half, suffix in enumerate(("mlp.gate_proj.weight", "mlp.up_proj.weight")):
        if name.endswith(suffix):
            block = name.split(".")[2]
            return ours[f"blocks.{block}.mlp.gate_up.weight"].chunk(2, dim=0)[half]
    return ours[names[name]]


def check_covers(names: dict[str, str], ours: set[str], fla: set[str]) -> None:
    """Every parameter of either model has its one counterpart: ``names`` (fla → statetrack)
    plus each block's gate and up projections, the two halves of statetrack's ``gate_up``."""
    halves = {n for n in fla if n.endswith(("mlp.gate_proj.weight", "mlp.up_proj.weight"))}
    stacked = {n for n in ours if n.endswith("mlp.gate_up.weight")}
    unmatched = (fla - set(names) - halves) | (ours - set(names.values()) - stacked)
    if unmatched or len(halves) != 2 * len(stacked) or set(names) - fla:
        raise SystemExit(f"parameters without a counterpart: {sorted(unmatched)}")


def fla_from_statetrack(config: ExperimentConfig) -> tuple[Any, torch.nn.Module, Any]:
    """(task, statetrack's model, fla's model with the same weights), on the CPU."""
    from fla.models import DeltaNetForCausalLM

    task, ours = build(config)
    fla = DeltaNetForCausalLM(fla_config(config, len(task.vocab)))
    params = dict(ours.named_parameters())
    names = weight_map(config.model["n_layers"])
    check_covers(names, set(params), {name for name, _ in fla.named_parameters()})
    with torch.no_grad():
        for name, p in fla.named_parameters():
            p.copy_(counterpart(name, params, names))
    return task, ours, fla


def compare(config: ExperimentConfig, batch_size: int, max_len: int,
            beta_scale: float = 1.0) -> dict[str, float | str]:
    """Largest differences between the two models on one batch of lengths up to ``max_len``,
    float32. fla runs its fused recurrent kernel on sequences up to 64 long (every training
    batch here) and its chunked one, which refuses float32, on longer ones: so at most 64.
    ``beta_scale`` multiplies both models' β projections first, to push β to the ends of its
    range as training does."""
    if max_len > 64:
        raise SystemExit(f"--max-len {max_len}: fla's chunked delta rule (past length 64) "
                         "refuses float32")
    task, ours, fla = fla_from_statetrack(config)
    with torch.no_grad():
        for model in (ours, fla):
            for name, p in model.named_parameters():
                if name.endswith("b_proj.weight"):
                    p.mul_(beta_scale)
    ours.train()
    fla.train()
    batch = task.sample(batch_size, config.training.min_len, max_len,
                        data_rng(config.training.data_seed, TRAIN_STREAM, 0))
    tokens, target = (torch.from_numpy(a) for a in trim(batch))
    ours_logits, _ = ours(tokens)
    fla_logits = fla(input_ids=tokens).logits
    mask = target != NO_LOSS
    losses = []
    for logits in (ours_logits, fla_logits):
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=NO_LOSS)
        loss.backward()
        losses.append(loss.item())
    grads = {name: p.grad for name, p in ours.named_parameters()}
    names = weight_map(config.model["n_layers"])
    worst_grad, worst_name = 0.0, ""
    for name, p in fla.named_parameters():
        mine = counterpart(name, grads, names)
        rel = (mine - p.grad).abs().max().item() / max(mine.abs().max().item(), 1e-30)
        if rel > worst_grad:
            worst_grad, worst_name = rel, name
    scale = ours_logits[mask].abs().max().item()
    return {"logits_max_abs_diff": (ours_logits[mask] - fla_logits[mask]).abs().max().item(),
            "logits_max_abs": scale, "loss_statetrack": losses[0], "loss_fla": losses[1],
            "grad_max_rel_diff": worst_grad, "grad_worst_param": worst_name}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-len", type=int, default=40)
    parser.add_argument("--beta-scale", type=float, default=1.0,
                        help="multiply the β projections by this first (say 50: β near its ends)")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        stub_autotune_benchmark()
    config = load_config(args.config, args.set)
    for key, value in compare(config, args.batch_size, args.max_len, args.beta_scale).items():
        print(f"{key}: {value:.3e}" if isinstance(value, float) else f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
