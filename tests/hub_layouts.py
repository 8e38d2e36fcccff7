"""Write one BERT's weights in each layout `--bert-dir` reads, for the tests and the loading benchmark.

The Hugging Face layouts are written as `save_pretrained` writes them: config.json, vocab.txt and
model.safetensors or pytorch_model.bin, either maybe in shards with their index (a .bin in torch's
zip or legacy format: by torch when it is installed, else by `torch_pickles`, which writes the
same bytes). `write_tokenizer_json` turns such a folder into one that ships tokenizer.json instead
of vocab.txt, as many Hub repos do.
"""
import json
import os
import shutil

import numpy as np

from bert_checkpoint import CHECKPOINT_NAME, google_variable_shapes, hub_names, save_google_checkpoint
from tokenizer import DEFAULT_VOCAB_PATH

HUB_LAYOUTS = ("safetensors", "sharded-safetensors", "bin", "bin-legacy", "sharded-bin")


def hub_tensors_from_google(bert_dir):
    """{transformers' BertModel name: array} of a Google checkpoint (its pre-training heads left out)."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(os.path.join(bert_dir, CHECKPOINT_NAME))
    tensors = {}
    for google_name in reader.get_variable_to_shape_map():
        if google_name.startswith("bert/"):
            names, transposed = hub_names(google_name)
            value = reader.get_tensor(google_name)
            tensors[names[0]] = value.T if transposed else value
    return tensors


def write_google_folder(folder, config, tensors, vocab_path=DEFAULT_VOCAB_PATH):
    """The same weights as Google's zip has them: bert_config.json, vocab.txt, a TF1 checkpoint."""
    variables = {}
    for google_name in google_variable_shapes(config):
        if not google_name.startswith("cls/"):
            names, transposed = hub_names(google_name)
            variables[google_name] = tensors[names[0]].T if transposed else tensors[names[0]]
    google_config = {key: value for key, value in config.items() if key not in ("architectures", "model_type")}
    save_google_checkpoint(folder, google_config, variables, vocab_path)
    return folder


def write_hub_folder(folder, config, tensors, layout="safetensors", prefix="", layer_norm_names="weight",
                     vocab_path=DEFAULT_VOCAB_PATH):
    """A folder as `save_pretrained` leaves it. prefix "bert." is BertForPreTraining's naming (its
    heads are added too); layer_norm_names "gamma" is the LayerNorm naming of 2019 uploads."""
    os.makedirs(folder, exist_ok=True)
    named = {}
    for name, value in tensors.items():
        if layer_norm_names == "gamma" and ".LayerNorm." in name:
            name = name.replace(".LayerNorm.weight", ".LayerNorm.gamma").replace(".LayerNorm.bias", ".LayerNorm.beta")
        named[prefix + name] = np.ascontiguousarray(value)
    if prefix:  # BertForPreTraining's heads, which fine-tuning does not use
        hidden = config["hidden_size"]
        named.update({
            "cls.predictions.bias": np.zeros(config["vocab_size"], np.float32),
            "cls.predictions.transform.dense.weight": np.zeros((hidden, hidden), np.float32),
            "cls.seq_relationship.weight": np.zeros((2, hidden), np.float32),
        })
    if layout == "safetensors":
        from safetensors.numpy import save_file

        save_file(named, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    elif layout in ("sharded-safetensors", "sharded-bin"):
        from safetensors.numpy import save_file

        from torch_pickles import save_state_dict

        stem, extension = ("model", ".safetensors") if layout == "sharded-safetensors" else ("pytorch_model", ".bin")
        names = list(named)
        shards = {"%s-00001-of-00002%s" % (stem, extension): names[:len(names) // 2],
                  "%s-00002-of-00002%s" % (stem, extension): names[len(names) // 2:]}
        for shard, shard_names in shards.items():
            tensors = {name: named[name] for name in shard_names}
            if extension == ".safetensors":
                save_file(tensors, os.path.join(folder, shard), metadata={"format": "pt"})
            else:
                save_state_dict(tensors, os.path.join(folder, shard))
        index = {"metadata": {"total_size": sum(value.nbytes for value in named.values())},
                 "weight_map": {name: shard for shard, shard_names in shards.items() for name in shard_names}}
        with open(os.path.join(folder, stem + extension + ".index.json"), "w", encoding="utf-8") as writer:
            json.dump(index, writer, indent=2)
    elif layout in ("bin", "bin-legacy"):
        from torch_pickles import save_state_dict

        save_state_dict(named, os.path.join(folder, "pytorch_model.bin"), zip_format=layout == "bin")
    else:
        raise ValueError("unknown layout %r" % layout)
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as writer:
        json.dump(dict(config, model_type="bert"), writer, indent=2)
    shutil.copyfile(vocab_path, os.path.join(folder, "vocab.txt"))
    return folder


def write_tokenizer_json(folder, vocab_path=DEFAULT_VOCAB_PATH, model_type="WordPiece", drop_vocab_txt=True):
    """tokenizer.json as the tokenizers library saves BERT's fast tokenizer (its model part in full, the
    rest abridged), with the vocab in reverse id order so that only the ids give the order."""
    from tokenizer import load_vocab

    vocab = load_vocab(vocab_path)
    model = {"type": model_type, "unk_token": "[UNK]", "continuing_subword_prefix": "##",
             "max_input_chars_per_word": 100, "vocab": dict(sorted(vocab.items(), key=lambda item: -item[1]))}
    if model_type == "BPE":
        model = {"type": "BPE", "dropout": None, "unk_token": None, "vocab": model["vocab"], "merges": []}
    tokenizer_json = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
                      "normalizer": {"type": "BertNormalizer", "lowercase": True},
                      "pre_tokenizer": {"type": "BertPreTokenizer"}, "post_processor": None,
                      "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True}, "model": model}
    path = os.path.join(folder, "tokenizer.json")
    with open(path, "w", encoding="utf-8") as writer:
        json.dump(tokenizer_json, writer, ensure_ascii=False)
    if drop_vocab_txt:
        os.remove(os.path.join(folder, "vocab.txt"))
    return path
