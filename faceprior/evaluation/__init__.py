"""Evaluation: synthetic test sets and the evaluation runner.

- ``testset``: degrade a folder of ground-truth faces with a fixed seed (CelebA-Test protocol);
- ``pairs``: the LQ faces of a folder and their ground truth;
- ``methods``: the rows (baselines, restoration models) and their cached outputs;
- ``scores``: the metrics as adapters with one interface;
- ``cache``: content hashes and JSON files the caches are keyed by and stored in;
- ``report``: result tables and comparison sheets;
- ``runner``: ``evaluate``, which runs all of the above;
- ``ablation``: train the paper's ablation variants and evaluate them.

The submodules are imported explicitly (``from faceprior.evaluation.runner import evaluate``).
"""
