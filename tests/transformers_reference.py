"""What transformers' own BertModel computes for a small random BERT: tests/data/transformers_reference.json.

tests/test_hub_checkpoints.py loads the same weights through `--bert-dir` in every Hugging Face
layout and compares keras-bert's output with these numbers. Making them needs torch and
transformers, which the tests do not (numpy makes the same weights from the same seed):

    pip install torch transformers safetensors && python tests/transformers_reference.py
"""
import json
import os

import numpy as np

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REFERENCE_PATH = os.path.join(TESTS_DIR, "data", "transformers_reference.json")
VOCAB_PATH = os.path.join(os.path.dirname(TESTS_DIR), "data", "vocab.txt")

# A BERT with the real vocabulary and small sizes; "gelu" as every Chinese BERT on the Hub says.
SMALL_CONFIG = {
    "architectures": ["BertModel"],
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 32,
    "initializer_range": 0.02,
    "intermediate_size": 64,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 64,
    "model_type": "bert",
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "pad_token_id": 0,
    "type_vocab_size": 2,
    "vocab_size": 21128,
}
# A sentence pair, so that segment embeddings count too.
FIRST_TEXT, SECOND_TEXT = "今天天气不错", "我们去公园散步吧！"


def small_bert_tensors(config=SMALL_CONFIG, seed=0):
    """{name in transformers' BertModel: float32 array}, random with a fixed seed. Weights are
    larger than BERT's initialisation so that any mix-up (a matrix not transposed, two tensors
    swapped, another GELU) moves the output well beyond float32 rounding."""
    rng = np.random.default_rng(seed)
    hidden, inner = config["hidden_size"], config["intermediate_size"]

    def normal(*shape, scale=0.2, mean=0.0):
        return (mean + scale * rng.standard_normal(shape)).astype(np.float32)

    def linear(name, n_in, n_out):
        return {name + ".weight": normal(n_out, n_in), name + ".bias": normal(n_out, scale=0.1)}

    def layer_norm(name):
        return {name + ".weight": normal(hidden, mean=1.0, scale=0.1), name + ".bias": normal(hidden, scale=0.1)}

    tensors = {
        "embeddings.word_embeddings.weight": normal(config["vocab_size"], hidden, scale=0.5),
        "embeddings.position_embeddings.weight": normal(config["max_position_embeddings"], hidden, scale=0.5),
        "embeddings.token_type_embeddings.weight": normal(config["type_vocab_size"], hidden, scale=0.5),
        **layer_norm("embeddings.LayerNorm"),
    }
    for i in range(config["num_hidden_layers"]):
        layer = "encoder.layer.%d." % i
        for part in ("query", "key", "value"):
            tensors.update(linear(layer + "attention.self." + part, hidden, hidden))
        tensors.update(linear(layer + "attention.output.dense", hidden, hidden))
        tensors.update(layer_norm(layer + "attention.output.LayerNorm"))
        tensors.update(linear(layer + "intermediate.dense", hidden, inner))
        tensors.update(linear(layer + "output.dense", inner, hidden))
        tensors.update(layer_norm(layer + "output.LayerNorm"))
    tensors.update(linear("pooler.dense", hidden, hidden))
    return tensors


def reference_inputs():
    """[CLS] first [SEP] second [SEP], one token a character, as tokenizer.py makes them."""
    with open(VOCAB_PATH, encoding="utf-8") as reader:
        vocab = {line.rstrip("\n"): index for index, line in enumerate(reader)}
    first = ["[CLS]", *FIRST_TEXT, "[SEP]"]
    second = [*SECOND_TEXT, "[SEP]"]
    return [vocab[token] for token in first + second], [0] * len(first) + [1] * len(second)


def main():
    import torch
    from transformers import BertConfig, BertModel

    token_ids, segment_ids = reference_inputs()
    tensors = small_bert_tensors()
    reference = {"token_ids": token_ids, "segment_ids": segment_ids}
    for hidden_act in ("gelu_new", "gelu"):  # tanh form (keras-bert's, Google's) and erf form
        model = BertModel(BertConfig(**dict(SMALL_CONFIG, hidden_act=hidden_act)), add_pooling_layer=True).eval()
        missing, unexpected = model.load_state_dict({name: torch.from_numpy(value) for name, value in tensors.items()},
                                                    strict=False)
        assert not unexpected and set(missing) <= {"embeddings.position_ids"}, (missing, unexpected)
        with torch.no_grad():
            output = model(input_ids=torch.tensor([token_ids]), token_type_ids=torch.tensor([segment_ids]))
        reference[hidden_act] = np.round(output.last_hidden_state[0].numpy().astype(float), 6).tolist()
    reference["made_with"] = "torch %s, transformers %s" % (torch.__version__, __import__("transformers").__version__)
    with open(REFERENCE_PATH, "w", encoding="utf-8") as writer:
        json.dump(reference, writer)
    print("wrote %s (%s)" % (REFERENCE_PATH, reference["made_with"]))


if __name__ == "__main__":
    main()
