"""semid's SID module inside a user-written LightningModule: Semantic IDs (bigram pieces) for the candidate and
the user's history in front of an ordinary TorchRec EmbeddingBagCollection, trained by a Lightning Trainer; the
module's lookup counters (ids seen, unseen, encoded from content, sent to fallback rows) are logged with the loss.

    python examples/lightning_ranker.py
"""
from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import BinaryAUROC
from torchrec import EmbeddingBagCollection, KeyedJaggedTensor

from semid.embeddings import NgramConfig, SemanticIdCollection
from semid.rqvae import RqvaeConfig, fit_quantizer
from toy_logs import make_logs


class Ranker(L.LightningModule):
    def __init__(self, sid: SemanticIdCollection, dim: int = 16) -> None:
        super().__init__()
        self.sid = sid
        self.ebc = EmbeddingBagCollection(tables=sid.embedding_bag_configs(dim=dim))
        self.mlp = torch.nn.Sequential(torch.nn.Linear(3 * dim + 4, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
        self.auc = BinaryAUROC()

    def forward(self, item: torch.Tensor, history: torch.Tensor, dense: torch.Tensor,
                content: torch.Tensor) -> torch.Tensor:
        kept = history >= 0
        kjt = KeyedJaggedTensor.from_lengths_sync(["item", "history"], torch.cat([item, history[kept]]),
                                                  torch.cat([torch.ones_like(item), kept.sum(1)]))
        pooled = self.ebc(self.sid(kjt, {"item": content})).to_dict()
        i, h = pooled["item"], pooled["history"]
        return self.mlp(torch.cat([i, h, i * h, dense], 1)).squeeze(1)

    def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
        *inputs, click = batch
        loss = torch.nn.functional.binary_cross_entropy_with_logits(self(*inputs), click)
        self.log("loss", loss, prog_bar=True)
        self.log_dict({f"sid/{k}": v.float() for k, v in self.sid.stats().items()})
        return loss

    def validation_step(self, batch: list[torch.Tensor], _: int) -> None:
        *inputs, click = batch
        self.auc.update(self(*inputs), click.long())
        self.log("val_auc", self.auc, prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=3e-3)


def loader(logs, days: slice, shuffle: bool) -> DataLoader:
    rows = logs.day(days)
    tensors = [torch.from_numpy(x) for x in (rows["item_id"], rows["history"], rows["dense"],
                                             logs.content[rows["item_row"]], rows["click"])]
    return DataLoader(TensorDataset(*tensors), batch_size=512, shuffle=shuffle)


def main() -> None:
    logs = make_logs()
    known = ~logs.new
    quantizer = fit_quantizer(logs.content[known], RqvaeConfig(levels=4, codebook_size=16, steps=400,
                                                               holdout_items=0))
    sid = SemanticIdCollection.from_sids(NgramConfig(n=2), logs.item_id[known], quantizer.encode(logs.content[known]),
                                         16, features=["item", "history"], quantizer=quantizer)
    model = Ranker(sid)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(model, loader(logs, slice(0, 4), True), loader(logs, slice(4, 5), False))
    print(f"held-out day AUC {float(trainer.callback_metrics['val_auc']):.3f}; "
          f"lookups encoded from content: {int(sid.stats()['content'])}, fallbacks: {int(sid.stats()['fallback'])}")


if __name__ == "__main__":
    main()
