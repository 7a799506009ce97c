"""Teacher forcing of an input-feeding LSTM decoder with multiplicative attention, differentiated by hand.

With input feeding every decoder step waits for the previous step's attentional vector, so training runs the
decoder one step at a time. Left to autograd, each step records a chain of small operations whose backward pass
replays them one by one. Here the forward pass writes what the backward pass needs into ``[T, B, ...]`` buffers;
the backward pass computes every step's local derivatives in a few operations over all steps, walks the steps in
reverse doing only the recurrence, and sums each weight's gradient over all steps in one matrix product. The
equations are ``seqnlp.nn.cells.LSTMCell``'s and ``seqnlp.nn.attention.Attention``'s (``dot`` and ``general``:
the score is the state against precomputed keys); ``Seq2Seq`` takes this path for a one-layer LSTM decoder, where
no dropout applies inside the loop, and tests check it against the step-by-step autograd loop and ``gradcheck``.
"""

from __future__ import annotations

import torch

from seqnlp.nn.gemm import mm_t, mm_tn


def input_fed_lstm(
    gates: torch.Tensor,
    weight: torch.Tensor,
    h0: torch.Tensor,
    c0: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask_bias: torch.Tensor,
    combine: torch.Tensor,
) -> torch.Tensor:
    """Attentional vectors ``[B, T, D]`` of every step of an input-feeding LSTM decoder.

    ``gates`` ``[B, T, 4H]``: each step's embedding share of the gates, biases included; ``weight``
    ``[4H, D + H]``: the gates' product with the fed vector and the previous state, ``[W_feed | W_hh]``;
    ``h0``, ``c0`` ``[B, H]``: the first state; ``keys`` ``[B, S, H]`` and ``values`` ``[B, S, D]``: the
    memory as the attention scores it and as the combine layer projects it; ``mask_bias`` ``[B, 1, S]``;
    ``combine`` ``[D, H]``: the combine layer's state columns. Step t: ``z = gates_t + [feed; h] @ weight^T``,
    the LSTM's equations on ``z``, ``a = softmax(keys h + mask_bias)``, ``out = tanh(combine h + a @ values)``,
    and ``feed = out`` for the next step (zeros for the first).
    """
    return _InputFedLSTM.apply(gates, weight, h0, c0, keys, values, mask_bias, combine)


class _InputFedLSTM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gates, weight, h0, c0, keys, values, mask_bias, combine):
        batch, steps, width = gates.shape
        hidden, dim = width // 4, combine.size(0)
        # tanh as 2 sigmoid(2x) - 1: torch.tanh costs several times torch.sigmoid on CPU. The candidate gate's rows
        # are doubled in the products, so one sigmoid over all four gates serves them all.
        doubled = gates.new_ones(width)
        doubled[2 * hidden : 3 * hidden] = 2
        gates = torch.mul(gates.transpose(0, 1), doubled, out=gates.new_empty(steps, batch, width))  # [T, B, 4H]
        weight_doubled, keys_t, combine = weight * doubled.unsqueeze(1), keys.transpose(1, 2), combine.contiguous()
        # Step t reads [feed; h] from row t and writes its attentional vector and state into row t + 1, so the
        # rows 0..T-1 are the products' inputs (for the weight gradient) and rows 1..T the outputs.
        fed = gates.new_empty(steps + 1, batch, dim + hidden)
        acts = gates.new_empty(steps, batch, width)  # i, f, g, o after their nonlinearities
        cells = gates.new_empty(steps + 1, batch, hidden)  # row 0: c0
        tanh_cells = gates.new_empty(steps, batch, hidden)
        attention = gates.new_empty(steps, batch, mask_bias.size(2))
        contexts = gates.new_empty(steps, batch, dim)
        fed[0, :, :dim] = 0
        fed[0, :, dim:] = h0
        cells[0] = c0
        for t in range(steps):
            z = mm_t(fed[t], weight_doubled, gates[t])
            act = acts[t]
            torch.sigmoid(z, out=act)
            i, f, g, o = act.chunk(4, dim=1)
            g.mul_(2).sub_(1)
            c = torch.addcmul(f * cells[t], i, g, out=cells[t + 1])
            tanh_c = torch.sigmoid(c * 2, out=tanh_cells[t]).mul_(2).sub_(1)
            h = torch.mul(o, tanh_c, out=fed[t + 1, :, dim:])
            weights = torch.baddbmm(mask_bias, h.unsqueeze(1), keys_t).softmax(dim=2)  # [B, 1, S]
            attention[t] = weights.squeeze(1)
            context = torch.bmm(weights, values, out=contexts[t].unsqueeze(1)).squeeze(1)
            torch.sigmoid(mm_t(h, combine, context).mul_(2), out=fed[t + 1, :, :dim]).mul_(2).sub_(1)
        ctx.save_for_backward(weight, keys, values, combine, fed, acts, cells, tanh_cells, attention, contexts)
        return fed[1:, :, :dim].transpose(0, 1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_outputs):
        weight, keys, values, combine, fed, acts, cells, tanh_cells, attention, contexts = ctx.saved_tensors
        steps, batch, width = acts.shape
        hidden, dim = width // 4, combine.size(0)
        outputs, states = fed[1:, :, :dim], fed[1:, :, dim:]
        # Every step's local derivatives at once, before the loop: what is left in it is the recurrence.
        out_slope = 1 - outputs * outputs  # tanh' of the combine layer
        grad_pre_all = torch.mul(grad_outputs.transpose(0, 1), out_slope, out=acts.new_empty(steps, batch, dim))
        i, f, g, o = acts.chunk(4, dim=2)
        c_slope = o * (1 - tanh_cells * tanh_cells)  # dh -> dc
        gate_slopes = torch.cat(  # dc -> (di, df, dg), dh -> do, each through its nonlinearity
            [g * i * (1 - i), cells[:-1] * f * (1 - f), i * (1 - g * g), tanh_cells * o * (1 - o)], dim=2
        ).view(steps, batch, 4, hidden)
        grad_gates = acts.new_empty(steps, batch, 4, hidden)
        grad_scores = acts.new_empty(steps, batch, attention.size(2))
        grad_feed = None
        values_t, combine_t, weight_t = values.transpose(1, 2), combine.t(), weight.t()
        grad_h_next = acts.new_zeros(batch, hidden)
        grad_c = acts.new_zeros(batch, hidden)
        for t in reversed(range(steps)):
            pre = grad_pre_all[t]
            if grad_feed is not None:
                pre.addcmul_(grad_feed, out_slope[t])
            grad_h = mm_t(pre, combine_t, grad_h_next)
            # the context's gradient is ``pre``; through the softmax, with sum_s a_s (values_s . pre) = context . pre
            weights = attention[t]
            # [B, 1, D] @ [B, D, S]: MKL multiplies this way round several times faster than [B, S, D] @ [B, D, 1]
            grad_weights = torch.bmm(pre.unsqueeze(1), values_t).squeeze(1)
            centre = torch.linalg.vecdot(contexts[t], pre).unsqueeze(1)
            score = torch.mul(weights, grad_weights - centre, out=grad_scores[t])
            grad_h = torch.baddbmm(grad_h.unsqueeze(1), score.unsqueeze(1), keys).squeeze(1)
            grad_c = torch.addcmul(grad_c, grad_h, c_slope[t])
            torch.mul(gate_slopes[t, :, :3], grad_c.unsqueeze(1), out=grad_gates[t, :, :3])
            torch.mul(gate_slopes[t, :, 3], grad_h, out=grad_gates[t, :, 3])
            grad_c = grad_c * f[t]
            grad_inputs = mm_t(grad_gates[t].view(batch, width), weight_t)
            grad_feed, grad_h_next = grad_inputs[:, :dim], grad_inputs[:, dim:]
        needs = ctx.needs_input_grad
        grad_gates = grad_gates.view(steps, batch, width)
        grad_weight = mm_tn(grad_gates.view(-1, width), fed[:-1].reshape(-1, dim + hidden)) if needs[1] else None
        grad_combine = mm_tn(grad_pre_all.view(-1, dim), states.reshape(-1, hidden)) if needs[7] else None
        grad_keys = torch.bmm(grad_scores.permute(1, 2, 0), states.transpose(0, 1)) if needs[4] else None
        grad_values = torch.bmm(attention.permute(1, 2, 0), grad_pre_all.transpose(0, 1)) if needs[5] else None
        return (
            grad_gates.transpose(0, 1),
            grad_weight,
            grad_h_next,
            grad_c if needs[3] else None,
            grad_keys,
            grad_values,
            None,
            grad_combine,
        )
