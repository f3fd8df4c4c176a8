"""A sweep file: a plain Python list of configs (zoology style).

    seqgap sweep examples/sweep_parity.py                       # local cores
    seqgap sweep examples/sweep_parity.py --backend ray          # a local Ray instance
    seqgap sweep examples/sweep_parity.py --backend ray --address auto   # a running Ray cluster
"""
from seqgap.config import RunConfig, TrainConfig

base = RunConfig(task="parity", task_params={"format": "acot"}, max_length=8, n_train=200, n_val=50,
                 model="lstm", model_size="tiny", train=TrainConfig(steps=300, eval_every=50, success_loss=1e-2))
configs = [base.replace(lr=lr, seed=seed) for lr in (1e-2, 3e-3) for seed in (0, 1)]
