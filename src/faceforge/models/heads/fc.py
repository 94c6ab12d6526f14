"""Classification heads: each owns its class centres and returns the training loss.

FCHead: normalised centres, a margin, cross-entropy. SoftmaxHead: an ordinary linear layer.
PartialFC (An et al. 2021): each step uses the batch's classes plus a random sample of the
others, so 100k+ identities fit in memory and time; with DDP the centres are sharded across
ranks and the softmax is computed over all shards (embeddings and labels are gathered).

`class_logits` are the un-margined logits (scaled cosines for FCHead) that logit
distillation compares between student and teacher.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from faceforge.models.heads.base import Head


class SoftmaxHead(Head):
    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)

    def logits(self, emb: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(emb)

    def class_logits(self, emb: torch.Tensor) -> torch.Tensor:
        return self.fc(emb)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(emb), labels)


class FCHead(Head):
    """Cosine logits between normalised embeddings and normalised centres, then `margin`."""

    def __init__(self, in_features: int, num_classes: int, margin: nn.Module) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.xavier_uniform_(self.weight) if margin.__class__.__name__ == "AdaCos" else \
            nn.init.normal_(self.weight, 0, 0.01)
        self.margin = margin

    def cosine(self, emb: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(emb), F.normalize(self.weight))

    def logits(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.margin(self.cosine(emb), labels)

    def class_logits(self, emb: torch.Tensor) -> torch.Tensor:
        """Scaled cosines without the margin (the margin's current scale s)."""
        return self.cosine(emb) * self.margin.s

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(emb, labels), labels)


class _AllGather(torch.autograd.Function):
    """all_gather whose backward returns each rank its own slice of the summed gradient,
    times the world size: DDP averages backbone gradients over ranks, and the loss is
    already the mean over the global batch."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        n = grad.shape[0] // dist.get_world_size()
        r = dist.get_rank()
        return grad[r * n:(r + 1) * n] * dist.get_world_size()


class PartialFC(Head):
    """Sampled-centre margin softmax. `sample_rate` is the fraction of (this rank's)
    centres used each step; the batch's own classes are always included. It shards when it
    is built inside a process group; built outside one it is an ordinary replicated head
    (whose gradients the Trainer averages)."""

    def __init__(self, in_features: int, num_classes: int, margin: nn.Module, sample_rate: float = 0.1,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not 0 < sample_rate <= 1:
            raise ValueError("sample_rate must be in (0, 1]")
        self.distributed = dist.is_available() and dist.is_initialized()
        self.world = dist.get_world_size() if self.distributed else 1
        self.rank = dist.get_rank() if self.distributed else 0
        self.num_classes = num_classes
        # This rank's contiguous shard of the centres: [start, start + local).
        base, extra = divmod(num_classes, self.world)
        self.local = base + (self.rank < extra)
        self.start = self.rank * base + min(self.rank, extra)
        self.num_sample = max(1, int(round(sample_rate * self.local)))
        self.weight = nn.Parameter(torch.normal(0, 0.01, (self.local, in_features)))
        self.margin = margin
        if self.distributed:  # every rank sees the gathered rows, each owns some classes
            margin.rows_shared = True
        self.generator = generator

    def sharded_parameters(self) -> list[nn.Parameter]:
        return [self.weight] if self.distributed else []

    def full_state_dict(self) -> dict:
        """Every rank's centres in class order (all ranks must call this together)."""
        state = self.state_dict()
        if not self.distributed:
            return state
        rows = -(-self.num_classes // self.world)
        padded = self.weight.detach().new_zeros(rows, self.weight.shape[1])
        padded[:self.local] = self.weight.detach()
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        base, extra = divmod(self.num_classes, self.world)
        state["weight"] = torch.cat([p[:base + (r < extra)] for r, p in enumerate(parts)])
        return state

    def _sample(self, local_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices of the centres used this step and the labels remapped into them (-1: not here)."""
        present = local_labels[local_labels >= 0].unique()
        if self.num_sample <= len(present) or self.num_sample >= self.local:
            index = present if self.num_sample <= len(present) else torch.arange(self.local, device=local_labels.device)
        else:
            score = torch.rand(self.local, generator=self.generator, device="cpu").to(local_labels.device)
            score[present] = 2.0  # always keep the batch's classes
            index = torch.topk(score, self.num_sample).indices.sort().values
        remap = torch.full((self.local,), -1, dtype=torch.long, device=local_labels.device)
        remap[index] = torch.arange(len(index), device=local_labels.device)
        mapped = torch.where(local_labels >= 0, remap[local_labels.clamp_min(0)], local_labels)
        return index, mapped

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            emb = _AllGather.apply(emb)
            labels = self._gather_labels(labels)
        local = labels - self.start
        local = torch.where((local >= 0) & (local < self.local), local, torch.full_like(local, -1))
        index, mapped = self._sample(local)
        weight = self.weight[index]
        logits = self.margin(F.linear(F.normalize(emb), F.normalize(weight)), mapped)
        if not self.distributed:
            return F.cross_entropy(logits, mapped)
        return _distributed_cross_entropy(logits, mapped)

    def _gather_labels(self, labels: torch.Tensor) -> torch.Tensor:
        out = [torch.empty_like(labels) for _ in range(self.world)]
        dist.all_gather(out, labels.contiguous())
        return torch.cat(out)


class _DistributedCrossEntropy(torch.autograd.Function):
    """Cross-entropy over classes split across ranks. Forward combines the shards' maxima,
    exp-sums and target probabilities with all_reduce; backward gives each rank the exact
    gradient for its own logits, (softmax − one-hot) / N."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, mapped: torch.Tensor) -> torch.Tensor:
        gmax = logits.max(dim=1).values
        dist.all_reduce(gmax, op=dist.ReduceOp.MAX)
        e = (logits - gmax[:, None]).exp()
        total = e.sum(dim=1)
        dist.all_reduce(total)
        prob = e / total[:, None]
        rows = (mapped >= 0).nonzero().squeeze(1)
        target = torch.zeros(len(mapped), dtype=prob.dtype, device=prob.device)
        target[rows] = prob[rows, mapped[rows]]
        dist.all_reduce(target)
        ctx.save_for_backward(prob, mapped)
        return -target.clamp_min(1e-30).log().mean()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        prob, mapped = ctx.saved_tensors
        g = prob.clone()
        rows = (mapped >= 0).nonzero().squeeze(1)
        g[rows, mapped[rows]] -= 1.0
        return g * (grad / len(mapped)), None


def _distributed_cross_entropy(logits: torch.Tensor, mapped: torch.Tensor) -> torch.Tensor:
    return _DistributedCrossEntropy.apply(logits, mapped)
