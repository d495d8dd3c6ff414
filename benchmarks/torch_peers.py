"""The PyTorch peers' side of the reference problems, written once for every benchmark.

UFM-CE with K=10, d=32, n=20, weight decay 5e-3 on W, H and b, the mean cross-entropy, init
scale 0.1 (the problems of ``gflow.bench.reference_config``):

- :func:`ufm_ce_field`: the gradient-flow vector field -grad L on a flat (B, P) state laid out
  as gflow's public parameters raveled (H (N, d) rows, then W (K, d), then b (K,)), each init
  its own loss, for torchdiffeq and torchode;
- :func:`sgd_one_init`: torch.optim.SGD on one init, as the published neural-collapse code runs.

Imports torch only (never JAX), so that a peer's whole process pays for nothing of gflow's.
"""

from __future__ import annotations

K, D, PER_CLASS, LAM, LR, SCALE = 10, 32, 20, 5e-3, 0.1, 0.1
N = K * PER_CLASS
STATE_SIZE = N * D + K * D + K  # P, one init's state


def ufm_ce_field(device: str = "cpu", counter: dict | None = None):
    """``field(t, y) -> -grad L(y)`` for y (B, P); ``counter["calls"]`` counts evaluations."""
    import torch

    labels = torch.arange(K, device=device).repeat_interleave(PER_CLASS)

    def field(t, y):
        if counter is not None:
            counter["calls"] += 1
        with torch.enable_grad():
            y = y.detach().requires_grad_()
            H = y[:, : N * D].reshape(-1, N, D)
            W = y[:, N * D : N * D + K * D].reshape(-1, K, D)
            b = y[:, N * D + K * D :].reshape(-1, 1, K)
            logits = torch.bmm(H, W.transpose(1, 2)) + b
            fit = torch.nn.functional.cross_entropy(logits.reshape(-1, K), labels.repeat(len(y)))
            loss = fit * len(y) + LAM / 2 * (y**2).sum()
            (g,) = torch.autograd.grad(loss, y)
        return -g

    return field


def sgd_one_init(steps: int, device: str = "cpu") -> None:
    """``steps`` SGD steps (lr 0.1) on one fresh random init, one init's loss at a time."""
    import torch

    labels = torch.arange(K, device=device).repeat_interleave(PER_CLASS)
    W = (SCALE * torch.randn(K, D, device=device)).requires_grad_()
    H = (SCALE * torch.randn(N, D, device=device)).requires_grad_()
    b = (SCALE * torch.randn(K, device=device)).requires_grad_()
    opt = torch.optim.SGD([W, H, b], lr=LR)
    cross_entropy = torch.nn.CrossEntropyLoss()
    for _ in range(steps):
        opt.zero_grad()
        decay = W.square().sum() + H.square().sum() + b.square().sum()
        loss = cross_entropy(H @ W.T + b, labels) + LAM / 2 * decay
        loss.backward()
        opt.step()
