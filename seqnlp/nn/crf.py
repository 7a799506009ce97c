"""Linear-chain CRF: batched forward algorithm, Viterbi decoding, and forward-backward marginals."""

from __future__ import annotations

import torch
from torch import nn

from seqnlp.data.tags import span_positions

_FORBIDDEN = -10000.0


class CRF(nn.Module):
    """Scores tag sequences as emissions + transitions, with optional forbidden moves.

    ``allowed`` is ``(start[K], transitions[K, K], end[K])`` boolean masks (see
    ``seqnlp.data.tags.allowed_transitions``); forbidden moves get a large negative score
    that is not learned, so decoding never produces an invalid IOB2/BIOES sequence.
    All methods loop over time only; sentences are processed together.
    """

    def __init__(self, num_tags: int, allowed=None):
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))
        if allowed is None:
            allowed = (
                torch.ones(num_tags, dtype=torch.bool),
                torch.ones(num_tags, num_tags, dtype=torch.bool),
                torch.ones(num_tags, dtype=torch.bool),
            )
        for name, mask in zip(("start_penalty", "transition_penalty", "end_penalty"), allowed):
            self.register_buffer(name, (~mask).float() * _FORBIDDEN, persistent=False)

    def _scores(self, temperature: float = 1.0):
        start = self.start + self.start_penalty
        scores = (start, self.transitions + self.transition_penalty, self.end + self.end_penalty)
        return scores if temperature == 1.0 else tuple(s / temperature for s in scores)

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood per sentence ``[B]``; ``mask[B, T]`` marks real tokens (left-aligned)."""
        return self.log_partition(emissions, mask) - self.score(emissions, tags, mask)

    def score(self, emissions, tags, mask):
        start, trans, end = self._scores()
        mask_weights = mask.to(emissions.dtype)
        emit = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)
        moves = trans[tags[:, :-1], tags[:, 1:]]
        last = tags.gather(1, (mask.sum(1) - 1).unsqueeze(1)).squeeze(1)
        return start[tags[:, 0]] + (emit * mask_weights).sum(1) + (moves * mask_weights[:, 1:]).sum(1) + end[last]

    def log_partition(self, emissions, mask):
        """log Z by the forward algorithm, in probability space as one ``[B, K] @ [K, K]`` product per step.

        Rescaling by each row's maximum keeps it stable; it is several times cheaper than
        ``logsumexp`` over ``[B, K, K]``. Forbidden moves have ``exp(score) == 0`` exactly.
        """
        start, trans, end = self._scores()
        exp_trans = trans.exp()
        alpha = start + emissions[:, 0]
        for t in range(1, emissions.size(1)):
            alpha = torch.where(mask[:, t].unsqueeze(1), _log_product(alpha, exp_trans) + emissions[:, t], alpha)
        return torch.logsumexp(alpha + end, dim=1)

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """The best tag sequence of each sentence (Viterbi), trimmed to its length."""
        start, trans, end = self._scores()
        batch, steps, _ = emissions.shape
        score = start + emissions[:, 0]
        backpointers = []
        for t in range(1, steps):
            best, index = (score.unsqueeze(2) + trans).max(dim=1)
            backpointers.append(index)
            score = torch.where(mask[:, t].unsqueeze(1), best + emissions[:, t], score)
        current = (score + end).argmax(dim=1)
        path = torch.empty(batch, steps, dtype=torch.long, device=emissions.device)
        for t in range(steps - 1, 0, -1):
            path[:, t] = current
            previous = backpointers[t - 1].gather(1, current.unsqueeze(1)).squeeze(1)
            current = torch.where(mask[:, t], previous, current)
        path[:, 0] = current
        lengths = mask.sum(1).tolist()
        return [row[:n] for row, n in zip(path.tolist(), lengths)]

    def forward_backward(
        self, emissions: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``alpha[B, T, K]``, ``beta[B, T, K]`` and ``log_z[B]`` in log space, every score divided by
        ``temperature``.

        ``alpha[b, t, k]`` sums the scores of every prefix ending in tag ``k`` at ``t`` (its emission
        included); ``beta[b, t, k]`` every continuation after ``t`` from ``k`` (the end score included).
        Each step is one product in probability space, rescaled by the row's maximum, as in ``log_partition``.
        """
        start, trans, end = self._scores(temperature)
        emissions = emissions if temperature == 1.0 else emissions / temperature
        exp_trans = trans.exp()
        batch, steps, tags = emissions.shape
        alpha = emissions.new_empty(batch, steps, tags)
        beta = emissions.new_empty(batch, steps, tags)
        alpha[:, 0] = start + emissions[:, 0]
        for t in range(1, steps):
            step = _log_product(alpha[:, t - 1], exp_trans) + emissions[:, t]
            alpha[:, t] = torch.where(mask[:, t].unsqueeze(1), step, alpha[:, t - 1])
        beta[:, steps - 1] = end
        for t in range(steps - 2, -1, -1):
            step = _log_product(emissions[:, t + 1] + beta[:, t + 1], exp_trans.T)
            beta[:, t] = torch.where(mask[:, t + 1].unsqueeze(1), step, end.expand(batch, tags))
        last = (mask.sum(1) - 1).clamp_min(0)
        log_z = torch.logsumexp(alpha[torch.arange(batch), last] + end, dim=1)
        return alpha, beta, log_z

    def marginals(self, emissions: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """``P(tag at t = k | sentence)`` as ``[B, T, K]``; each real token's row sums to 1, padding rows are 0."""
        alpha, beta, log_z = self.forward_backward(emissions, mask, temperature)
        return (alpha + beta - log_z[:, None, None]).exp() * mask.unsqueeze(2)

    def span_log_probs(
        self,
        emissions: torch.Tensor,
        mask: torch.Tensor,
        spans: list[tuple[int, int, list[int]]],
        continues: torch.Tensor,
        temperature: float = 1.0,
    ) -> list[float]:
        """log P(tokens ``start ..`` of sentence ``row`` carry exactly ``tags`` as one whole entity), for each
        ``(row, start, tags)`` of ``spans``.

        ``continues[i, j]`` says tag ``j`` after tag ``i`` would extend the same entity (``B-X``/``I-X`` then
        ``I-X``/``E-X``): the tag before the span may not lead into it and the tag after it may not extend it, so
        each probability is that of this entity, not of a longer one that contains it. Everything else is
        summed over, by one forward-backward pass over the batch. ``temperature`` divides every score first
        (``seqnlp.evaluation.calibration``): the probabilities change, the best path does not.
        """
        if not spans:
            return []
        alpha, beta, log_z = self.forward_backward(emissions, mask, temperature)
        start, trans, end = self._scores(temperature)
        emissions = emissions if temperature == 1.0 else emissions / temperature
        into = trans + torch.where(continues, float("-inf"), 0.0)  # moves that do not extend an entity
        at = span_positions(spans, mask.sum(1).tolist())
        index = {
            name: torch.tensor(
                value, dtype=torch.bool if name == "ends_sentence" else torch.long, device=emissions.device
            )
            for name, value in vars(at).items()
        }
        rows, firsts, lasts = index["rows"], index["firsts"], index["lasts"]
        # every span at once; each torch.where picks one branch, the other is computed on a clamped position
        entered = torch.logsumexp(alpha[rows, (firsts - 1).clamp_min(0)] + into[:, index["first_tags"]].T, dim=1)
        head = torch.where(firsts == 0, start[index["first_tags"]], entered)
        body = torch.zeros(len(spans), device=emissions.device, dtype=emissions.dtype)
        body.index_add_(
            0, index["token_spans"], emissions[index["token_rows"], index["token_positions"], index["token_tags"]]
        )
        body.index_add_(0, index["move_spans"], trans[index["move_from"], index["move_to"]])
        after = (lasts + 1).clamp_max(emissions.size(1) - 1)
        left = torch.logsumexp(into[index["last_tags"]] + emissions[rows, after] + beta[rows, after], dim=1)
        tail = torch.where(index["ends_sentence"], end[index["last_tags"]], left)
        return (head + body + tail - log_z[rows]).tolist()


def _log_product(log_vector: torch.Tensor, exp_matrix: torch.Tensor) -> torch.Tensor:
    """``log(exp(log_vector) @ exp_matrix)`` for ``[B, K]`` rows, each rescaled by its maximum to stay finite."""
    peak = log_vector.max(dim=1, keepdim=True).values
    return torch.log(((log_vector - peak).exp() @ exp_matrix).clamp_min(1e-30)) + peak
