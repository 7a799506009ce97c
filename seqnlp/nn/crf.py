"""Linear-chain CRF: its training loss (the batched forward algorithm) in torch; its searches (Viterbi, marginals,
entity probabilities) over its scores as arrays, in ``seqnlp.nn.crf_decoding``, the one code an ONNX export runs."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from seqnlp.nn import crf_decoding

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

    def arrays(self, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The start, transition and end scores (forbidden moves included) as float32 arrays, divided by
        ``temperature``: what the searches of ``seqnlp.nn.crf_decoding`` read."""
        return tuple(scores.detach().float().cpu().numpy() for scores in self._scores(temperature))

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """The best tag sequence of each sentence (Viterbi), trimmed to its length."""
        return crf_decoding.viterbi(_array(emissions), _lengths(mask), *self.arrays())

    def marginals(self, emissions: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """``P(tag at t = k | sentence)`` as ``[B, T, K]``; each real token's row sums to 1, padding rows are 0."""
        scores = _array(emissions) / temperature
        alpha, beta, log_z = crf_decoding.forward_backward(scores, _lengths(mask), *self.arrays(temperature))
        return torch.from_numpy(np.exp(alpha + beta - log_z[:, None, None])) * mask.cpu().unsqueeze(2)

    def span_log_probs(
        self,
        emissions: torch.Tensor,
        mask: torch.Tensor,
        spans: list[tuple[int, int, list[int]]],
        continues,
        temperature: float = 1.0,
    ) -> list[float]:
        """log P(tokens ``start ..`` of sentence ``row`` carry exactly ``tags`` as one whole entity), for each
        ``(row, start, tags)`` of ``spans`` (``crf_decoding.span_log_probs``); ``continues[i, j]``: tag ``j`` after
        tag ``i`` would extend the same entity. ``temperature`` divides every score first
        (``seqnlp.evaluation.calibration``): the probabilities change, the best path does not."""
        scores = _array(emissions)
        scores = scores if temperature == 1.0 else scores / temperature
        return crf_decoding.span_log_probs(
            scores, _lengths(mask), spans, *self.arrays(temperature), np.asarray(continues, dtype=bool)
        )


def _array(scores: torch.Tensor) -> np.ndarray:
    return scores.detach().float().cpu().numpy()


def _lengths(mask: torch.Tensor) -> np.ndarray:
    return mask.sum(1).cpu().numpy()


def _log_product(log_vector: torch.Tensor, exp_matrix: torch.Tensor) -> torch.Tensor:
    """``log(exp(log_vector) @ exp_matrix)`` for ``[B, K]`` rows, each rescaled by its maximum to stay finite."""
    peak = log_vector.max(dim=1, keepdim=True).values
    return torch.log(((log_vector - peak).exp() @ exp_matrix).clamp_min(1e-30)) + peak
