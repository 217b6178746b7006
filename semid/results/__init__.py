"""The results: the report, the paper's findings, paired item-clustered statistics, Stage-1 analysis, the quantizer table and the W&B summary."""
