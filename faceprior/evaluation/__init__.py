"""Evaluation: synthetic test sets (``testset``), the metric runner over baselines and models
(``runner``), result tables and comparison sheets (``report``), the ablation study (``ablation``).

The submodules are imported explicitly (``from faceprior.evaluation.runner import evaluate``);
``ablation`` pulls in the training stack, so nothing is imported here.
"""
