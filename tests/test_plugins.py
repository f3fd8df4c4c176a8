"""A user's own model, plugged in from a file, trains through the CLI and the registry."""
import subprocess
import sys
import textwrap

PLUGIN = textwrap.dedent('''
    from dataclasses import dataclass
    import torch
    from torch import nn
    from seqgap.models import register_model, SequenceModel, StateSize
    from seqgap.models.embeddings import TokenEmbedding

    @dataclass
    class GRUConfig:
        d_model: int = 32
        n_layers: int = 1
        frozen_embeddings: bool = False

    @register_model("my-gru", config=GRUConfig, sizes={"tiny": dict(d_model=16)})
    class MyGRU(SequenceModel):
        def __init__(self, config, vocab_size, max_len):
            super().__init__()
            self.config, self.vocab_size = config, vocab_size
            self.emb = TokenEmbedding(vocab_size, config.d_model, config.frozen_embeddings)
            self.gru = nn.GRU(config.d_model, config.d_model, config.n_layers, batch_first=True)
        def features(self, x):
            return self.gru(x)[0]
        def init_state(self, batch_size, device=None):
            return torch.zeros(self.config.n_layers, batch_size, self.config.d_model)
        def features_step(self, x, h):
            y, h = self.gru(x[:, None], h)
            return y[:, 0], h
        def state_size(self):
            return StateSize(self.config.d_model * self.config.n_layers)
''')


def test_plugin_file_model_trains_from_cli(tmp_path):
    path = tmp_path / "my_gru.py"
    path.write_text(PLUGIN)
    base = [sys.executable, "-m", "seqgap"]
    p = subprocess.run(base + ["models", "--plugin", str(path)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "my-gru" in p.stdout
    p = subprocess.run(base + ["train", "--plugin", str(path), "--model", "my-gru", "--size", "tiny", "--task", "parity",
                               "-L", "4", "--format", "acot", "--n-train", "10", "--steps", "20", "--eval-every", "10",
                               "--store", str(tmp_path / "s.sqlite"), "--no-progress"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "my-gru on parity" in p.stdout


def test_broken_plugin_is_a_one_line_error(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('oops')\n")
    p = subprocess.run([sys.executable, "-m", "seqgap", "models", "--plugin", str(path)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "cannot load model plugin" in p.stderr and len(p.stderr.strip().splitlines()) == 1
