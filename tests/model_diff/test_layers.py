"""Layer typing and block positions on real tensor names of common architectures."""

from __future__ import annotations

import pytest

from model_diff.layers import (
    LAYER_TYPES,
    LayerClassifier,
    block_layout,
    block_position,
    builtin_layer_type,
    classify_layer,
)

# (name, layer type, block label or None) — names as they appear in the published checkpoints.
BERT = [
    ("bert.embeddings.word_embeddings.weight", "embedding", None),
    ("bert.embeddings.position_embeddings.weight", "embedding", None),
    ("bert.embeddings.token_type_embeddings.weight", "embedding", None),
    ("bert.embeddings.LayerNorm.weight", "norm", None),
    ("bert.embeddings.LayerNorm.bias", "norm", None),
    ("bert.encoder.layer.0.attention.self.query.weight", "attention", "bert.encoder.layer.0"),
    ("bert.encoder.layer.0.attention.self.key.bias", "attention", "bert.encoder.layer.0"),
    ("bert.encoder.layer.0.attention.self.value.weight", "attention", "bert.encoder.layer.0"),
    ("bert.encoder.layer.0.attention.output.dense.weight", "attention", "bert.encoder.layer.0"),
    ("bert.encoder.layer.0.attention.output.LayerNorm.weight", "norm", "bert.encoder.layer.0"),
    ("bert.encoder.layer.11.intermediate.dense.weight", "mlp", "bert.encoder.layer.11"),
    ("bert.encoder.layer.11.output.dense.weight", "mlp", "bert.encoder.layer.11"),
    ("bert.encoder.layer.11.output.dense.bias", "mlp", "bert.encoder.layer.11"),
    ("bert.encoder.layer.11.output.LayerNorm.bias", "norm", "bert.encoder.layer.11"),
    ("bert.pooler.dense.weight", "head", None),
    ("cls.predictions.bias", "head", None),
    ("cls.predictions.transform.dense.weight", "head", None),
    ("cls.predictions.transform.LayerNorm.weight", "norm", None),
    ("cls.predictions.decoder.weight", "head", None),
    ("classifier.weight", "head", None),
]
GPT2 = [
    ("transformer.wte.weight", "embedding", None),
    ("transformer.wpe.weight", "embedding", None),
    ("transformer.h.0.ln_1.weight", "norm", "transformer.h.0"),
    ("transformer.h.0.attn.c_attn.weight", "attention", "transformer.h.0"),
    ("transformer.h.0.attn.c_proj.bias", "attention", "transformer.h.0"),
    ("transformer.h.0.attn.bias", "attention", "transformer.h.0"),
    ("transformer.h.7.ln_2.bias", "norm", "transformer.h.7"),
    ("transformer.h.7.mlp.c_fc.weight", "mlp", "transformer.h.7"),
    ("transformer.h.7.mlp.c_proj.weight", "mlp", "transformer.h.7"),
    ("transformer.ln_f.weight", "norm", None),
    ("lm_head.weight", "head", None),
    # GPT-2 as saved by the original OpenAI conversion: no "transformer." prefix
    ("h.10.attn.c_attn.bias", "attention", "h.10"),
    ("wte.weight", "embedding", None),
]
LLAMA = [
    ("model.embed_tokens.weight", "embedding", None),
    ("model.layers.0.self_attn.q_proj.weight", "attention", "model.layers.0"),
    ("model.layers.0.self_attn.k_proj.weight", "attention", "model.layers.0"),
    ("model.layers.0.self_attn.v_proj.weight", "attention", "model.layers.0"),
    ("model.layers.0.self_attn.o_proj.weight", "attention", "model.layers.0"),
    ("model.layers.0.self_attn.rotary_emb.inv_freq", "attention", "model.layers.0"),
    ("model.layers.0.mlp.gate_proj.weight", "mlp", "model.layers.0"),
    ("model.layers.0.mlp.up_proj.weight", "mlp", "model.layers.0"),
    ("model.layers.31.mlp.down_proj.weight", "mlp", "model.layers.31"),
    ("model.layers.31.input_layernorm.weight", "norm", "model.layers.31"),
    ("model.layers.31.post_attention_layernorm.weight", "norm", "model.layers.31"),
    ("model.norm.weight", "norm", None),
    ("lm_head.weight", "head", None),
    # Meta's original consolidated.00.pth naming
    ("tok_embeddings.weight", "embedding", None),
    ("layers.3.attention.wq.weight", "attention", "layers.3"),
    ("layers.3.attention.wo.weight", "attention", "layers.3"),
    ("layers.3.feed_forward.w1.weight", "mlp", "layers.3"),
    ("layers.3.feed_forward.w2.weight", "mlp", "layers.3"),
    ("layers.3.attention_norm.weight", "norm", "layers.3"),
    ("layers.3.ffn_norm.weight", "norm", "layers.3"),
    ("norm.weight", "norm", None),
    ("output.weight", "head", None),
]
MIXTRAL = [
    ("model.layers.5.block_sparse_moe.gate.weight", "mlp", "model.layers.5"),
    ("model.layers.5.block_sparse_moe.experts.0.w1.weight", "mlp", "model.layers.5"),
    ("model.layers.5.block_sparse_moe.experts.7.w2.weight", "mlp", "model.layers.5"),
    ("model.layers.5.block_sparse_moe.experts.7.w3.weight", "mlp", "model.layers.5"),
    ("model.layers.5.self_attn.q_proj.weight", "attention", "model.layers.5"),
    # Qwen2-MoE: router and shared expert inside "mlp"
    ("model.layers.2.mlp.gate.weight", "mlp", "model.layers.2"),
    ("model.layers.2.mlp.experts.59.down_proj.weight", "mlp", "model.layers.2"),
    ("model.layers.2.mlp.shared_expert.up_proj.weight", "mlp", "model.layers.2"),
    ("model.layers.2.mlp.shared_expert_gate.weight", "mlp", "model.layers.2"),
]
T5 = [
    ("shared.weight", "embedding", None),
    ("encoder.embed_tokens.weight", "embedding", None),
    ("encoder.block.0.layer.0.SelfAttention.q.weight", "attention", "encoder.block.0"),
    ("encoder.block.0.layer.0.SelfAttention.o.weight", "attention", "encoder.block.0"),
    (
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        "attention",
        "encoder.block.0",
    ),
    ("encoder.block.0.layer.0.layer_norm.weight", "norm", "encoder.block.0"),
    ("encoder.block.7.layer.1.DenseReluDense.wi.weight", "mlp", "encoder.block.7"),
    ("encoder.block.7.layer.1.DenseReluDense.wo.weight", "mlp", "encoder.block.7"),
    ("encoder.final_layer_norm.weight", "norm", None),
    ("decoder.block.3.layer.1.EncDecAttention.k.weight", "attention", "decoder.block.3"),
    ("decoder.block.3.layer.2.DenseReluDense.wi_0.weight", "mlp", "decoder.block.3"),
    ("decoder.block.3.layer.2.layer_norm.weight", "norm", "decoder.block.3"),
    ("decoder.final_layer_norm.weight", "norm", None),
    ("lm_head.weight", "head", None),
]
VIT = [
    # HuggingFace ViTForImageClassification
    ("vit.embeddings.cls_token", "embedding", None),
    ("vit.embeddings.position_embeddings", "embedding", None),
    ("vit.embeddings.patch_embeddings.projection.weight", "embedding", None),
    ("vit.encoder.layer.7.layernorm_before.weight", "norm", "vit.encoder.layer.7"),
    ("vit.encoder.layer.7.attention.attention.query.weight", "attention", "vit.encoder.layer.7"),
    ("vit.encoder.layer.7.attention.output.dense.weight", "attention", "vit.encoder.layer.7"),
    ("vit.encoder.layer.7.intermediate.dense.weight", "mlp", "vit.encoder.layer.7"),
    ("vit.encoder.layer.7.output.dense.weight", "mlp", "vit.encoder.layer.7"),
    ("vit.encoder.layer.7.layernorm_after.bias", "norm", "vit.encoder.layer.7"),
    ("vit.layernorm.weight", "norm", None),
    ("classifier.bias", "head", None),
    # timm vit_base_patch16_224
    ("cls_token", "embedding", None),
    ("pos_embed", "embedding", None),
    ("patch_embed.proj.weight", "embedding", None),
    ("blocks.4.norm1.weight", "norm", "blocks.4"),
    ("blocks.4.attn.qkv.weight", "attention", "blocks.4"),
    ("blocks.4.attn.proj.bias", "attention", "blocks.4"),
    ("blocks.4.mlp.fc1.weight", "mlp", "blocks.4"),
    ("blocks.4.mlp.fc2.bias", "mlp", "blocks.4"),
    ("norm.bias", "norm", None),
    ("head.weight", "head", None),
]
RESNET = [
    ("conv1.weight", "other", None),
    ("bn1.weight", "norm", None),
    ("bn1.running_mean", "norm", None),
    ("bn1.num_batches_tracked", "norm", None),
    ("layer1.0.conv1.weight", "other", "layer1.0"),
    ("layer1.0.bn2.running_var", "norm", "layer1.0"),
    ("layer2.0.downsample.0.weight", "other", "layer2.0"),
    ("layer2.0.downsample.1.weight", "norm", "layer2.0"),
    ("layer4.2.conv3.weight", "other", "layer4.2"),
    ("fc.weight", "head", None),
    ("fc.bias", "head", None),
    # torchvision VGG16
    ("features.0.weight", "other", "features.0"),
    ("features.28.bias", "other", "features.28"),
    ("classifier.6.weight", "head", None),
]

TORCH_NN = [
    # torch.nn.TransformerEncoder / nn.MultiheadAttention
    ("encoder.layers.2.self_attn.in_proj_weight", "attention", "encoder.layers.2"),
    ("encoder.layers.2.self_attn.out_proj.bias", "attention", "encoder.layers.2"),
    ("encoder.layers.2.linear1.weight", "mlp", "encoder.layers.2"),
    ("encoder.layers.2.linear2.bias", "mlp", "encoder.layers.2"),
    ("encoder.layers.2.norm2.weight", "norm", "encoder.layers.2"),
]

ALL = BERT + GPT2 + LLAMA + MIXTRAL + T5 + VIT + RESNET + TORCH_NN


@pytest.mark.parametrize(("name", "layer_type", "block"), ALL, ids=[n for n, _, _ in ALL])
def test_layer_type_and_block_of_real_names(name: str, layer_type: str, block: str | None) -> None:
    """Each real tensor name gets the expected single layer type and block label."""
    assert builtin_layer_type(name) == layer_type
    assert layer_type in LAYER_TYPES
    pos = block_position(name)
    assert (pos.label if pos else None) == block


def test_t5_sublayer_index_is_not_the_block() -> None:
    """T5's ``layer.N`` inside ``block.M`` is a sub-layer: the block index is M."""
    pos = block_position("encoder.block.7.layer.1.DenseReluDense.wi.weight")
    assert pos is not None and pos.index == (7,) and pos.stack == "encoder"


def test_mixtral_expert_index_is_not_a_block() -> None:
    """An expert number never becomes a block index."""
    pos = block_position("model.layers.5.block_sparse_moe.experts.7.w1.weight")
    assert pos is not None and pos.index == (5,)


def test_block_layout_orders_naturally_and_gives_relative_depth() -> None:
    """Blocks are ordered numerically (2 before 10) with depth 0..1 per stack."""
    names = [f"model.layers.{i}.mlp.up_proj.weight" for i in (10, 2, 0, 11, 1)]
    layout = block_layout(names)
    order = sorted(layout.values(), key=lambda b: b.ordinal)
    assert [b.label for b in order] == [
        "model.layers.0",
        "model.layers.1",
        "model.layers.2",
        "model.layers.10",
        "model.layers.11",
    ]
    assert order[0].depth == 0.0 and order[-1].depth == 1.0
    assert order[2].depth == pytest.approx(0.5)


def test_encoder_blocks_come_before_decoder_blocks_and_each_spans_full_depth() -> None:
    """In an encoder-decoder model each stack has its own 0..1 depth; encoder first."""
    names = [
        f"{s}.block.{i}.layer.0.layer_norm.weight" for s in ("decoder", "encoder") for i in range(3)
    ]
    layout = block_layout(names)
    assert layout["encoder.block.0"].ordinal == 0
    assert layout["decoder.block.0"].ordinal == 3
    assert layout["decoder.block.2"].depth == 1.0 and layout["encoder.block.2"].depth == 1.0


def test_resnet_stages_and_blocks_form_one_sequence() -> None:
    """ResNet's layer<stage>.<block> orders by stage, then block."""
    names = [
        "layer2.0.conv1.weight",
        "layer1.1.conv1.weight",
        "layer1.0.conv1.weight",
        "layer10.0.conv1.weight",
    ]
    layout = block_layout(names)
    assert [b.label for b in sorted(layout.values(), key=lambda b: b.ordinal)] == [
        "layer1.0",
        "layer1.1",
        "layer2.0",
        "layer10.0",
    ]


def test_user_patterns_take_priority_and_stay_exclusive() -> None:
    """A user regex wins over the built-in rules; the first matching pattern decides."""
    patterns = {"adapter": r"\.lora_[AB]\.", "attention": r"q_proj"}
    c = LayerClassifier(patterns)
    assert c.layer_type("model.layers.0.self_attn.q_proj.lora_A.weight") == "adapter"
    assert c.layer_type("model.layers.0.self_attn.q_proj.weight") == "attention"
    assert c.layer_type("model.layers.0.mlp.up_proj.weight") == "mlp"
    assert classify_layer("model.norm.weight", {"head": r"^model\.norm"}) == "head"


def test_invalid_user_pattern_is_a_value_error_naming_it() -> None:
    """A malformed regex is rejected up front, naming the type it was given for."""
    with pytest.raises(ValueError, match="layer_patterns\\['mlp'\\]"):
        LayerClassifier({"mlp": "("})


@pytest.mark.parametrize(
    "name",
    [
        "model.layers.0.self_attn.rotary_emb.inv_freq",
        "inv_freq",
        "inv_freq.weight",
        "model.rotary_emb.cos_cached",
        "rotary_emb",
        "bert.embeddings.position_ids",
        "bn1.running_mean",
        "bn1.running_mean\n",
        "bn1.num_batches_tracked",
        "transformer.h.0.attn.bias",
        "transformer.h.0.attn.bias.x",
        "transformer.h.0.c_attn.bias",
        "transformer.h.0.attn.masked_bias",
        "a\nb.token_type_ids",
        "model.layers.0.mlp.up_proj.weight",
        "",
    ],
)
def test_is_buffer_answers_as_each_glob_would(name: str) -> None:
    """The one compiled pattern says what ``fnmatchcase`` with each of BUFFER_GLOBS says."""
    from fnmatch import fnmatchcase

    from model_diff.layers import BUFFER_GLOBS, is_buffer

    assert is_buffer(name) == any(fnmatchcase(name, g) for g in BUFFER_GLOBS)
