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


@pytest.fixture(scope="session")
def vocab():
    """The bundled vocab.txt as {token: id}."""
    from tokenizer import load_vocab

    return load_vocab()


@pytest.fixture(scope="session")
def tokenizer(vocab):
    """The blog's char-level tokenizer over the bundled vocabulary."""
    from tokenizer import OurTokenizer

    return OurTokenizer(vocab)


@pytest.fixture(autouse=True)
def no_real_checkpoint(monkeypatch):
    """Tests always run on the tiny checkpoint, whatever the developer has in $BERT_DIR."""
    monkeypatch.delenv("BERT_DIR", raising=False)


# Loads an export with TensorFlow only: importing keras-bert, Keras or this project's modules fails.
STANDALONE_SERVING = """
import json, sys
for name in ("keras_bert", "keras_self_attention", "tf_keras", "keras",
             "tokenizer", "bert_checkpoint", "fine_tuning", "serving"):
    sys.modules[name] = None
import tensorflow as tf
request = json.load(sys.stdin)
serve = tf.saved_model.load(request["export_dir"]).signatures["serving_default"]
outputs = serve(**{name: tf.constant(values, tf.string) for name, values in request["inputs"].items()})
print(json.dumps({name: {"dtype": tensor.dtype.name, "values": [
    value.decode("utf-8") if isinstance(value, bytes) else value for value in tensor.numpy().tolist()]}
    for name, tensor in outputs.items()}))
"""


@pytest.fixture(scope="session")
def serve_standalone():
    """serve(export_dir, **inputs) -> {output: (dtype, values)}, in a fresh process (-I: no project on its path)."""
    import json
    import subprocess

    def serve(export_dir, **inputs):
        result = subprocess.run([sys.executable, "-I", "-c", STANDALONE_SERVING], cwd=os.path.dirname(str(export_dir)),
                                input=json.dumps({"export_dir": str(export_dir), "inputs": inputs}),
                                capture_output=True, text=True, encoding="utf-8")
        assert result.returncode == 0, result.stderr[-3000:]
        outputs = json.loads(result.stdout.strip().splitlines()[-1])
        return {name: (output["dtype"], output["values"]) for name, output in outputs.items()}

    return serve
