import os
import sys

import pytest

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [PROJECT_DIR, os.path.join(PROJECT_DIR, "data")]
os.environ["TF_USE_LEGACY_KERAS"] = "1"  # before any test imports TensorFlow
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")


@pytest.fixture(scope="session")
def tiny_checkpoint():
    """The tiny Google-format checkpoint the scripts fall back to (made once, cached in .cache/)."""
    import bert_checkpoint

    return bert_checkpoint.make_tiny_checkpoint()


@pytest.fixture(autouse=True)
def no_real_checkpoint(monkeypatch):
    """Tests always run on the tiny checkpoint, whatever the developer has in $BERT_DIR."""
    monkeypatch.delenv("BERT_DIR", raising=False)
