"""The CLIP text tower over the positions a text uses, not its whole padded context.

Tokens come padded to the context length (77); a query such as "red oak armchair" uses 5 of
them. CLIP's text transformer is causal (each position attends to itself and those before it)
and takes its features at the end-of-text token (argmax pooling), so the padding after the
longest text of a batch never reaches the result: the tower run over the first L positions
gives the same vectors (to float rounding) for a small part of the compute (~12x less for a
5-token text). `short_text_tower` builds that forward for the towers where it holds, the torch
backend calls it and the ONNX text tower is exported from it with a dynamic sequence axis.
Towers it does not hold for (non-causal, other pooling, Hugging Face text models) get None:
they run the full context as before.
"""

from __future__ import annotations

import numpy as np


def used_length(tokens) -> int:
    """Positions up to the longest text's end-of-text token (the highest id of each row, the
    argmax-pooling rule), at least 1; the positions after it are padding that changes nothing."""
    ends = np.asarray(tokens).argmax(axis=-1)
    return int(ends.max()) + 1 if ends.size else 1


def trimmed(tokens):
    """`tokens` (numpy or torch, (n, context)) cut after the longest text's end-of-text token."""
    return tokens[:, : used_length(tokens)]


def short_text_tower(model):
    """A torch module running `model`'s text tower on (n, L) tokens for any L up to the context
    length, or None when the model's text tower is not a causal, argmax-pooled CLIP one of plain
    residual attention blocks. It is checked against the model's own `encode_text` once."""
    import torch
    from open_clip.model import CLIP
    from open_clip.transformer import ResidualAttentionBlock

    if not isinstance(model, CLIP) or getattr(model, "attn_mask", None) is None:
        return None
    if getattr(model, "text_pool_type", None) != "argmax":
        return None
    if not getattr(model.transformer, "batch_first", False):
        return None
    blocks = list(model.transformer.resblocks)
    for block in blocks:
        attn = getattr(block, "attn", None)
        if (type(block) is not ResidualAttentionBlock or hasattr(block, "ln_1_kv")
                or not isinstance(attn, torch.nn.MultiheadAttention) or attn.in_proj_weight is None
                or not attn.batch_first):  # fmt: skip
            return None

    class ShortText(torch.nn.Module):
        """The text tower written out over any length. Attention is spelled here rather than
        through nn.MultiheadAttention, whose traced ONNX graph keeps the export's length."""

        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, tokens):
            m = self.model
            length = tokens.shape[1]
            cast = m.transformer.get_cast_dtype()
            x = m.token_embedding(tokens).to(cast) + m.positional_embedding[:length].to(cast)
            # The causal mask for this length (a slice of the model's buffer would be folded
            # into the ONNX graph as a constant of the export's length).
            mask = torch.triu(torch.full_like(x[0, :, :1].expand(-1, length), float("-inf")), 1)
            for block in m.transformer.resblocks:
                x = x + block.ls_1(_attention(block.attn, block.ln_1(x), mask))
                x = x + block.ls_2(block.mlp(block.ln_2(x)))
            x = m.ln_final(x)
            x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
            if isinstance(m.text_projection, torch.nn.Linear):
                return m.text_projection(x)
            return x @ m.text_projection if m.text_projection is not None else x

    tower = ShortText().eval()
    sample = torch.zeros((2, model.context_length), dtype=torch.long)
    sample[0, :4] = torch.tensor([1, 5, 7, model.vocab_size - 1])
    sample[1, :2] = torch.tensor([3, model.vocab_size - 1])
    device = model.positional_embedding.device
    sample = sample.to(device)
    with torch.inference_mode():
        full = model.encode_text(sample).float()
        short = tower(sample[:, :4]).float()
    if not torch.allclose(short, full, atol=1e-3 * float(full.abs().max()) + 1e-5):
        return None
    return tower


def _attention(attn, x, mask):
    """nn.MultiheadAttention's self-attention (packed in-projection, no dropout: eval)."""
    import torch

    heads = attn.num_heads
    q, k, v = torch.nn.functional.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v))  # (n, heads, L, hd)
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2) + mask.to(q.dtype)
    out = (scores.softmax(dim=-1) @ v).transpose(1, 2).flatten(2)
    return attn.out_proj(out)
