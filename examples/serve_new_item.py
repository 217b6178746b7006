"""Serving a new item: it arrives with only its content embedding, gets its Semantic ID from the frozen quantizer
and its pieces from the tokenizer at request time, and is scored by the trained model.

The training side saves three files (the quantizer, the SID module, the model's weights); the serving side
loads them, as a separate process would, and scores a request whose candidate no training day has seen.

    python examples/serve_new_item.py
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torchrec import KeyedJaggedTensor

from dlrm_semantic_ids import TRAIN_DAYS, build_model, train
from semid.embeddings import SemanticIdCollection, SpmConfig
from semid.rqvae import Quantizer, RqvaeConfig, fit_quantizer
from toy_logs import make_logs


def training_side(out: Path) -> None:
    logs = make_logs()
    known = ~logs.new
    impressions = np.bincount(logs.day(TRAIN_DAYS)["item_row"], minlength=len(logs.item_id))[known]
    quantizer = fit_quantizer(logs.content[known], RqvaeConfig(levels=3, codebook_size=32, steps=400,
                                                               holdout_items=0), weights=impressions)
    sid = SemanticIdCollection.from_sids(SpmConfig(vocab_size=1024), logs.item_id[known],
                                         quantizer.encode(logs.content[known]), 32, impressions,
                                         features=["item", "history"], quantizer=quantizer)
    model = train(sid, logs)
    quantizer.save(out / "quantizer.pt")
    sid.save(out / "sid.pt")
    torch.save(model.state_dict(), out / "model.pt")


def serving_side(out: Path, item_id: int, content: np.ndarray, history: list[int]) -> float:
    quantizer = Quantizer.load(out / "quantizer.pt")
    sid = SemanticIdCollection.load(out / "sid.pt", quantizer=quantizer)
    model = build_model(sid)
    model.load_state_dict(torch.load(out / "model.pt"))
    model.eval()
    print(f"item {item_id}: SID {quantizer.encode(content[None])[0].tolist()}, "
          f"pieces {sid.rows_of([item_id], content=content[None])}")
    kjt = KeyedJaggedTensor.from_lengths_sync(["item", "history"], torch.tensor([item_id, *history]),
                                              torch.tensor([1, len(history)]))
    with torch.no_grad():
        logit = model(torch.zeros(1, 4), sid(kjt, {"item": torch.from_numpy(content[None])}))
    return float(torch.sigmoid(logit))


def main() -> None:
    logs = make_logs()
    new_row = int(np.flatnonzero(logs.new)[0])  # an item introduced after training: no id row was ever trained
    same_topic = np.flatnonzero(~logs.new & (logs.content @ logs.content[new_row] > 0.8))[:5]
    other_topic = np.flatnonzero(~logs.new & (logs.content @ logs.content[new_row] < 0.0))[:5]
    with tempfile.TemporaryDirectory() as tmp:
        training_side(Path(tmp))
        for name, rows in (("a user who clicked similar items", same_topic), ("a user who clicked others", other_topic)):
            p = serving_side(Path(tmp), int(logs.item_id[new_row]), logs.content[new_row],
                             logs.item_id[rows].tolist())
            print(f"new item for {name}: click probability {p:.3f}")


if __name__ == "__main__":
    main()
