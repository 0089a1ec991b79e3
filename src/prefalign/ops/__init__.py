"""Tensor operations shared by the stages: memory-lean per-token log-probs."""

from prefalign.ops.logprobs import completion_logprobs, selective_log_softmax, sequence_logps

__all__ = ["completion_logprobs", "selective_log_softmax", "sequence_logps"]
