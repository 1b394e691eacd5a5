import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_salt(tmp_path_factory, monkeypatch):
    """Tests never touch the user's salt file: each session gets its own config home."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.getbasetemp() / "config"))
    monkeypatch.delenv("KSPACIFY_SALT", raising=False)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def one_torch_thread():
    """Tiny networks run faster on one thread, and the suite must fit 2 cores; the count is restored."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
