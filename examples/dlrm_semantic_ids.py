"""TorchRec's own DLRM, trained with a plain PyTorch loop on a toy click log: once with the item-id feature
hashed to 4K rows, once with Semantic IDs (SentencePiece pieces, 1K rows), both through semid's
``SemanticIdCollection``. Prints the held-out day's CTR AUC overall and on items new that day.

    python examples/dlrm_semantic_ids.py            # about a minute on 2 idle CPU cores
"""
from __future__ import annotations

import numpy as np
import torch
from torchmetrics.classification import BinaryAUROC
from torchrec import EmbeddingBagCollection, KeyedJaggedTensor
from torchrec.models.dlrm import DLRM

from semid.embeddings import HashConfig, SemanticIdCollection, SpmConfig
from semid.rqvae import RqvaeConfig, fit_quantizer
from toy_logs import ToyLogs, make_logs

TRAIN_DAYS, EVAL_DAY = slice(0, 4), slice(4, 5)


def batches(rows: dict[str, np.ndarray], content: np.ndarray, size: int):
    """KJT of the candidate and the user's recent clicks, the dense features, the candidates' content, the labels."""
    for s in range(0, len(rows["click"]), size):
        b = {k: v[s:s + size] for k, v in rows.items()}
        hist_len = (b["history"] >= 0).sum(1)
        kjt = KeyedJaggedTensor.from_lengths_sync(
            ["item", "history"],
            torch.from_numpy(np.concatenate([b["item_id"], b["history"][b["history"] >= 0]])),
            torch.from_numpy(np.concatenate([np.ones(len(hist_len), np.int64), hist_len])))
        yield kjt, torch.from_numpy(b["dense"]), {"item": torch.from_numpy(content[b["item_row"]])}, \
            torch.from_numpy(b["click"])


def build_model(sid: SemanticIdCollection) -> DLRM:
    """TorchRec's DLRM over the tables the SID module asks for (one feature each for candidate and history)."""
    return DLRM(embedding_bag_collection=EmbeddingBagCollection(tables=sid.embedding_bag_configs(dim=16)),
                dense_in_features=4, dense_arch_layer_sizes=[32, 16], over_arch_layer_sizes=[64, 32, 1])


def train(sid: SemanticIdCollection, logs: ToyLogs, seed: int = 0) -> DLRM:
    torch.manual_seed(seed)
    model = build_model(sid)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for kjt, dense, content, click in batches(logs.day(TRAIN_DAYS), logs.content, 512):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(dense, sid(kjt, content)).squeeze(1), click)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def evaluate(model: DLRM, sid: SemanticIdCollection, logs: ToyLogs) -> tuple[float, float]:
    held_out = logs.day(EVAL_DAY)
    new = logs.new[held_out["item_row"]]
    aucs = []
    for rows in (held_out, {k: v[new] for k, v in held_out.items()}):  # every impression, then new items only
        auc = BinaryAUROC()
        with torch.no_grad():
            for kjt, dense, content, click in batches(rows, logs.content, 4096):
                auc.update(model(dense, sid(kjt, content)).squeeze(1), click.long())
        aucs.append(float(auc.compute()))
    return aucs[0], aucs[1]


def main() -> None:
    logs = make_logs()
    known = ~logs.new  # what the training days have seen: the mappings hold these items only
    impressions = np.bincount(logs.day(TRAIN_DAYS)["item_row"], minlength=len(logs.item_id))[known]

    hashed = SemanticIdCollection.from_sids(HashConfig(rows=4096), logs.item_id[known], features=["item", "history"])

    quantizer = fit_quantizer(logs.content[known], RqvaeConfig(levels=3, codebook_size=32, steps=400, holdout_items=0),
                              weights=impressions)
    semantic = SemanticIdCollection.from_sids(SpmConfig(vocab_size=1024), logs.item_id[known],
                                              quantizer.encode(logs.content[known]), 32, impressions,
                                              features=["item", "history"], quantizer=quantizer)

    for name, sid in (("hash 4K rows", hashed), ("SPM-SID 1K rows", semantic)):
        overall, new = evaluate(train(sid, logs), sid, logs)
        print(f"{name:>16}: held-out day AUC {overall:.3f}, new items {new:.3f} "
              f"({int(sid.stats()['content'])} new-item lookups got their SIDs from content)")


if __name__ == "__main__":
    main()
