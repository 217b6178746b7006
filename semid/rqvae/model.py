"""The RQ-VAE: encoder MLP -> residual quantizer -> decoder MLP, and its loss as the paper writes it::

    L(x) = ||x - x̂||²  +  Σ_l  β ||r_l - sg[e_l]||²  +  ||sg[r_l] - e_l||²,      β = 0.25

The behaviour-aware variant (``quantizer: rqvae_cooc``) adds ``λ · InfoNCE(E(x_a), E(x_b))`` over co-engaged
pairs (``rqvae_cooc_loss``; pairs and InfoNCE in ``semid.rqvae.cooccur``); ``encode`` is the same either way.

``Rqvae`` is a plain ``nn.Module`` (what gets frozen and exported; torch only, no Lightning);
``semid.rqvae.module.RqvaeModule`` is the LightningModule that trains it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from semid.rqvae.config import ModelConfig
from semid.rqvae.quantizer import Quantized, ResidualQuantizer


def mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    """One hidden layer (the paper's encoder and decoder)."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


class Rqvae(nn.Module):
    """x [B, D] -> z [B, d] -> codes [B, L] and ẑ [B, d] -> x̂ [B, D]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.input_dim is None:
            raise ValueError("model.input_dim must be set (it is taken from the corpus when training)")
        self.cfg = cfg
        self.encoder = mlp(cfg.input_dim, cfg.hidden_dim, cfg.latent_dim)
        self.quantizer = ResidualQuantizer(cfg.levels, cfg.codebook_size, cfg.latent_dim)
        self.decoder = mlp(cfg.latent_dim, cfg.hidden_dim, cfg.input_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Quantized]:
        z = self.encoder(x)
        q = self.quantizer(z)
        return self.decoder(q.z_q), q

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """SIDs [B, L] of inputs [B, D]."""
        return self.quantizer.encode(self.encoder(x))

    @torch.no_grad()
    def reconstruct(self, codes: Tensor) -> Tensor:
        """x̂ [B, D] decoded from SIDs [B, L]."""
        return self.decoder(self.quantizer.decode_codes(codes))


@dataclass
class RqvaeLoss:
    total: Tensor  # scalar
    recon: Tensor  # ||x - x̂||², scalar
    commitment: Tensor  # ||r_l - sg[e_l]||² per level [L] (β not applied)
    codebook: Tensor  # ||sg[r_l] - e_l||² per level [L]


def rqvae_loss(x: Tensor, x_hat: Tensor, r: Tensor, e: Tensor, beta: float) -> RqvaeLoss:
    """Squared norms are summed over features and averaged over the batch.

    x, x_hat: [B, D];  r (residuals r_l), e (chosen codes e_l): [L, B, d].
    """
    sg = torch.Tensor.detach
    recon = ((x - x_hat) ** 2).sum(-1).mean()
    commitment = ((r - sg(e)) ** 2).sum(-1).mean(-1)  # [L]
    codebook = ((sg(r) - e) ** 2).sum(-1).mean(-1)  # [L]
    total = recon + (beta * commitment + codebook).sum()
    return RqvaeLoss(total, recon, commitment, codebook)


def rqvae_cooc_loss(base: RqvaeLoss, z_a: Tensor, z_b: Tensor, lam: float, temperature: float) -> tuple[Tensor, Tensor]:
    """(total, contrastive) of the behaviour-aware RQ-VAE: ``base.total + λ · InfoNCE(z_a, z_b)``.

    z_a, z_b: encoder outputs E(x_a), E(x_b) [P, d] of P co-engaged pairs; the other pairs are the negatives.
    The term acts on the encoder; the codebooks follow its outputs through ``||sg[r_l] - e_l||²``.

    >>> import torch
    >>> base = RqvaeLoss(torch.tensor(1.0), torch.tensor(1.0), torch.zeros(2), torch.zeros(2))
    >>> total, c = rqvae_cooc_loss(base, torch.eye(3), torch.eye(3), lam=0.5, temperature=0.1)
    >>> round(float(total - base.total - 0.5 * c), 6)
    0.0
    """
    from semid.rqvae.cooccur import info_nce

    contrastive = info_nce(z_a, z_b, temperature)
    return base.total + lam * contrastive, contrastive
