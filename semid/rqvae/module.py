"""The LightningModule that trains ``Rqvae``: loss, optimizer, k-means initialisation, held-out health."""
from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import Tensor
from torchmetrics import CatMetric, MeanMetric

from semid.core.records import JsonObject
from semid.rqvae.config import CooccurConfig, ModelConfig, TrainConfig
from semid.rqvae.health import CodeUsage, uniqueness
from semid.rqvae.model import Rqvae, rqvae_cooc_loss, rqvae_loss
from semid.rqvae.quantizer import Quantized

_FINAL_METRICS = ("train/loss", "train/recon", "train/rel_error")


class RqvaeModule(L.LightningModule):
    """Training of ``Rqvae``. Dead-code resets and train-time code usage live in callbacks."""

    def __init__(self, model: JsonObject, train: JsonObject, cooccur: JsonObject | None = None) -> None:
        """``model``/``train``: ``to_dict`` of a ``ModelConfig``/``TrainConfig`` (plain dicts, so that
        ``save_hyperparameters`` stores them in checkpoints); ``cooccur``: a ``CooccurConfig``'s, for the
        behaviour-aware RQ-VAE (batches then carry co-engaged pairs), else None."""
        super().__init__()
        self.save_hyperparameters()
        self.model_cfg = ModelConfig(**model)
        self.train_cfg = TrainConfig(**train)
        self.cooccur_cfg = CooccurConfig(**cooccur) if cooccur is not None else None
        self.rqvae = Rqvae(self.model_cfg)
        levels, k = self.model_cfg.levels, self.model_cfg.codebook_size
        # cumulative resets per level: a buffer, so checkpoints and the export carry it
        self.register_buffer("dead_code_resets", torch.zeros(levels, dtype=torch.long))
        # the latest step's loss, recon, rel_error: a buffer, so a run resumed from its final checkpoint has them
        self.register_buffer("last_train_metrics", torch.zeros(len(_FINAL_METRICS)))
        self.last_quantized: Quantized | None = None  # the latest batch's codes and residuals, for callbacks
        self.val_recon = MeanMetric()
        self.val_rel_error = MeanMetric()
        self.val_usage = CodeUsage(levels, k)
        self.val_codes = CatMetric()

    def init_codebooks(self, x: Tensor) -> None:
        gen = torch.Generator().manual_seed(self.train_cfg.seed)
        z = self.rqvae.encoder(x.float()).detach()
        self.rqvae.quantizer.init_kmeans(z, self.train_cfg.kmeans_iters, gen)
        if self.trainer is not None and self.trainer.world_size > 1:
            # every process must start from the same codebooks
            books = self.trainer.strategy.broadcast(self.rqvae.quantizer.codebooks.data)
            self.rqvae.quantizer.codebooks.data.copy_(books)

    def training_step(self, batch: Tensor | tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        # [B, D], or with co-engaged pairs (x_a, x_b) [P, D] each (semid.rqvae.data.ImpressionWeightedBatches)
        x, pairs = (batch[0], batch[1:]) if isinstance(batch, (tuple, list)) else (batch, None)
        if not bool(self.rqvae.quantizer.initialised):
            self.init_codebooks(x)  # the first batch is the (larger) k-means batch
        x_hat, q = self.rqvae(x)
        loss = rqvae_loss(x, x_hat, q.residuals, q.codewords, self.model_cfg.beta)
        c = self.cooccur_cfg
        if pairs is not None and c is not None and c.weight > 0:  # λ = 0 trains the plain RQ-VAE's bits
            total, contrastive = rqvae_cooc_loss(loss, self.rqvae.encoder(pairs[0]), self.rqvae.encoder(pairs[1]),
                                                 c.weight, c.temperature)
            loss.total = total
            self.log("train/cooccur", contrastive.detach(), batch_size=len(pairs[0]))
        self.last_quantized = Quantized(q.codes.detach(), q.residuals.detach(), q.codewords.detach(), q.z_q.detach())
        rel = ((x - x_hat).norm(dim=1) / x.norm(dim=1).clamp(min=1e-12)).mean()
        self.last_train_metrics.copy_(torch.stack([loss.total, loss.recon, rel]).detach())
        self.log_dict({"train/loss": loss.total, "train/recon": loss.recon, "train/rel_error": rel.detach()},
                      prog_bar=False, batch_size=len(x))
        for level in range(self.model_cfg.levels):
            self.log(f"train/commitment_l{level}", loss.commitment[level], batch_size=len(x))
            self.log(f"train/codebook_l{level}", loss.codebook[level], batch_size=len(x))
        return loss.total

    def final_train_metrics(self) -> dict[str, float]:
        """The last training step's loss, reconstruction and relative error (for health.json)."""
        return {k: round(float(v), 6) for k, v in zip(_FINAL_METRICS, self.last_train_metrics.cpu())}

    def configure_optimizers(self) -> torch.optim.Optimizer | OptimizerLRSchedulerConfig:
        t = self.train_cfg
        opt = torch.optim.AdamW(self.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        if t.lr_schedule == "constant":
            return opt
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t.steps, eta_min=t.min_lr)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def validation_step(self, batch: tuple[Tensor] | Tensor, batch_idx: int) -> None:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        codes = self.rqvae.encode(x)
        x_hat = self.rqvae.reconstruct(codes)
        self.val_recon.update(((x - x_hat) ** 2).sum(-1))
        self.val_rel_error.update((x - x_hat).norm(dim=1) / x.norm(dim=1).clamp(min=1e-12))
        self.val_usage.update(codes)
        self.val_codes.update(codes.float())  # codes < 2^24 are exact in float32

    def on_validation_epoch_end(self) -> None:
        usage = self.val_usage.compute()
        codes = self.val_codes.compute().long().view(-1, self.model_cfg.levels).cpu().numpy()
        u = uniqueness(codes)
        metrics = {"val/recon": self.val_recon.compute(), "val/rel_error": self.val_rel_error.compute(),
                   "val/unique_sid_fraction": float(u["unique_sid_fraction"]),
                   "val/largest_collision_group": float(u["largest_collision_group"])}
        for level in range(self.model_cfg.levels):
            metrics[f"val/utilisation_l{level}"] = float(usage["utilisation"][level])
            metrics[f"val/perplexity_l{level}"] = float(usage["perplexity"][level])
        # the metrics above are already summed over ranks (torchmetrics syncs on compute): every rank holds the
        # same values, so averaging them changes nothing; it only tells Lightning they are global
        self.log_dict(metrics, sync_dist=True)
        for m in (self.val_recon, self.val_rel_error, self.val_usage, self.val_codes):
            m.reset()
