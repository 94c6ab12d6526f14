"""What the Trainer needs to know about a head or loss, stated by the head itself.

A head is an `nn.Module` `(embeddings, labels) -> scalar loss`. Three facts change how it
must be trained, and each head declares them instead of the Trainer guessing from its
attributes:

- `needs_pk`: the loss needs several images of one identity in every batch (batch-hard
  triplet), so the Trainer switches to P identities × K images batches;
- `sharded_parameters()`: parameters split across DDP ranks (Partial FC's class centres);
  their gradients are already exact on each rank and must not be averaged, while every
  other head parameter is averaged like the backbone's;
- `full_state_dict()`: the whole head in one state dict (collective under DDP: every rank
  calls it), so that a single checkpoint holds every rank's shard.

A plain `nn.Module` from a plugin is treated as unsharded and content with any batch.
"""
from __future__ import annotations

from torch import nn


class Head(nn.Module):
    needs_pk: bool = False

    def sharded_parameters(self) -> list[nn.Parameter]:
        return []

    def full_state_dict(self) -> dict:
        return self.state_dict()


def needs_pk(head: nn.Module) -> bool:
    return isinstance(head, Head) and head.needs_pk


def sharded_parameters(head: nn.Module) -> list[nn.Parameter]:
    return head.sharded_parameters() if isinstance(head, Head) else []


def full_state_dict(head: nn.Module) -> dict:
    return head.full_state_dict() if isinstance(head, Head) else head.state_dict()
