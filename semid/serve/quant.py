"""Int8 row-wise tables through TorchRec's inference module (``torchrec.quant.EmbeddingBagCollection``).

Each row is stored as ``dim`` uint8 codes plus an fp16 scale and bias (FBGEMM's fused 8-bit row-wise format,
padded to 16-byte rows) and pooled by FBGEMM's ``IntNBitTableBatchedEmbeddingBagsCodegen``, which runs on CPU.
``quantize`` is what ``torchrec.inference.modules.quantize_embeddings`` does for one collection (a ``QuantConfig``
on the float module, then ``from_float``), without importing torchrec.inference's sharding stack.
"""
from __future__ import annotations

import dataclasses

import torch
from torch.ao.quantization import PlaceholderObserver
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig
from torchrec.modules.embedding_configs import DataType, QuantConfig
from torchrec.quant.embedding_modules import EmbeddingBagCollection as QuantEmbeddingBagCollection

INT8 = "int8"
FP32 = "fp32"
QUANTIZATIONS = (FP32, INT8)


def quantize(ebc: EmbeddingBagCollection) -> QuantEmbeddingBagCollection:
    """The int8 row-wise copy of a float collection (pooled outputs stay float32)."""
    ebc.qconfig = QuantConfig(activation=PlaceholderObserver.with_args(dtype=torch.float),  # type: ignore[assignment]
                              weight=PlaceholderObserver.with_args(dtype=torch.qint8))
    return QuantEmbeddingBagCollection.from_float(ebc)


def empty_int8(tables: list[EmbeddingBagConfig]) -> QuantEmbeddingBagCollection:
    """An int8 collection of these tables to ``load_state_dict`` an exported one into (its buffers are views of
    the FBGEMM kernel's weights, so loading copies into them)."""
    tables = [dataclasses.replace(t, data_type=DataType.INT8) for t in tables]
    return QuantEmbeddingBagCollection(tables, is_weighted=False, device=torch.device("cpu"), output_dtype=torch.float)
