"""The seven models of the paper's Table 3 (2 blocks, d_model 128, 4 heads)."""

from __future__ import annotations

from statetrack.models.config import ModelConfig

NEGATIVE = [-1.0, 1.0]


def paper_models(vocab_size: int) -> dict[str, ModelConfig]:
    """Name → config, following the public configs (PAPER.md "Training protocol").

    Mamba: Mamba-1 block, d_state 16, expand 2, dt_rank 8, conv kernel 1 (the public configs;
    the paper text says 4), no MLP. DeltaNet: 4 heads, conv kernel 4 without a bias (fla's
    ShortConvolution has none), a 512-wide SwiGLU MLP (``mlp_ratio`` 6.0: fla's DeltaNetConfig
    rounds 2/3 · 4 · 128 up to a multiple of 256) and the init the paper's code gave it
    (``init: paper``, SequenceModel.init_paper). mLSTM: xLSTM mLSTM block (expand 2, 4 heads,
    conv 4, q/k/v block size 4), no feed-forward, as xLSTM's mLSTM blocks. sLSTM: 4 heads, conv
    4, gated GELU feed-forward with factor 1.3. Transformer: rotary softmax attention with 4
    heads and a SwiGLU MLP, same width and depth.
    """
    base = dict(vocab_size=vocab_size, d_model=128, n_layers=2)
    mamba = dict(d_state=16, expand=2, dt_rank=8, conv_kernel=1)
    deltanet = dict(num_heads=4, conv_kernel=4, conv_bias=False)
    deltanet_mlp = dict(mlp="swiglu", mlp_ratio=6.0, init="paper")
    return {
        "transformer": ModelConfig(**base, mixer="attention", mixer_options=dict(num_heads=4),
                                   mlp="swiglu"),
        "mlstm": ModelConfig(**base, mixer="mlstm", mlp="none",
                             mixer_options=dict(num_heads=4, expand=2, conv_kernel=4,
                                                qkv_blocksize=4)),
        "slstm": ModelConfig(**base, mixer="slstm", mlp="gelu", mlp_ratio=1.3,
                             mixer_options=dict(num_heads=4, conv_kernel=4)),
        "mamba": ModelConfig(**base, mixer="mamba", mlp="none", mixer_options=dict(mamba)),
        "mamba_neg": ModelConfig(**base, mixer="mamba", mlp="none",
                                 mixer_options=dict(mamba, eig_range=NEGATIVE)),
        "deltanet": ModelConfig(**base, mixer="deltanet", mixer_options=dict(deltanet),
                                **deltanet_mlp),
        "deltanet_neg": ModelConfig(**base, mixer="deltanet",
                                    mixer_options=dict(deltanet, eig_range=NEGATIVE),
                                    **deltanet_mlp),
    }
