"""relation_extraction.py's model and loss against plain_loop.py's, step by step: same weights, same batches.

Both sides start from the same checkpoint and the same head weights (the script's, copied into the
loop's Linear layers), see the same training batches (relation_extraction.make_batch) with dropout off,
and take Adam steps at a constant --lr. Printed: the first batch's loss and a few gradient norms on
both sides, then each step's loss. Equal columns mean that the model, the loss and the optimizer are
the same, and that what makes one side learn faster lies elsewhere (where the heads start, the
schedule; benchmarks/README.md, "Relation extraction: the heads' start").

torch and transformers are needed (`pip install torch transformers`); the checkpoint's weights are read
as plain_loop.py reads them, without running a pickle.

    python benchmarks/relation_parity.py --bert-dir $M --steps 25
"""
import argparse
import sys
import tempfile

import numpy as np

from plain_loop import PROJECT_DIR, load_bert, relation_files, relation_loss, relation_probabilities, sequence_output

sys.path.insert(0, PROJECT_DIR)

import relation_extraction  # noqa: E402
import tensorflow as tf  # noqa: E402  (after relation_extraction, which selects Keras 2)
from bert_checkpoint import find_checkpoint  # noqa: E402
from tensorflow import keras  # noqa: E402
from tokenizer import OurTokenizer, load_vocab  # noqa: E402


def copy_heads(train_model, head, torch):
    """The script's four Dense heads into the loop's two Linear layers ([starts, ends] along the outputs)."""
    weights = {name: train_model.get_layer(name).get_weights()
               for name in ("subject_start", "subject_end", "object_start", "object_end")}
    with torch.no_grad():
        for linear, start, end in ((head["subject"], "subject_start", "subject_end"),
                                   (head["object"], "object_start", "object_end")):
            linear.weight.copy_(torch.tensor(np.concatenate([weights[start][0], weights[end][0]], 1).T))
            linear.bias.copy_(torch.tensor(np.concatenate([weights[start][1], weights[end][1]])))


def loop_loss(bert, head, batch, num_predicates, torch):
    """plain_loop.relation_loop's model and loss, on a batch in the script's layout."""
    token_ids, _, subject_starts, subject_ends, k1, k2, object_starts, object_ends = batch
    hidden, mask = sequence_output(bert, token_ids)
    subject, objects = relation_probabilities(head, hidden, torch.tensor(k1[:, 0]), torch.tensor(k2[:, 0]), num_predicates)
    return relation_loss(subject, objects, torch.tensor(np.stack([subject_starts, subject_ends], -1)),
                         torch.tensor(np.stack([object_starts, object_ends], 2)), mask)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bert-dir", required=True, help="a Hugging Face BERT folder, as plain_loop.py's")
    parser.add_argument("--steps", type=int, default=25, help="Adam steps on each side (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=1e-4, help="default: %(default)s")
    parser.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    args = parser.parse_args()
    import torch

    checkpoint = find_checkpoint(args.bert_dir)
    tokenizer = OurTokenizer(load_vocab(checkpoint.vocab_path))
    with tempfile.TemporaryDirectory(prefix="relation_parity_") as folder:
        paths = relation_files(folder, argparse.Namespace(train_rows=2000))
        schemas, data = relation_extraction.load_data(paths, maxlen=160)
    predicate_ids = {predicate: i for i, predicate in enumerate(schemas)}
    encoded = [relation_extraction.encode_example(tokenizer, example, predicate_ids)
               for example in data["train"] if example["triples"]]
    order = np.random.default_rng(0).permutation(len(encoded))
    batches = [relation_extraction.make_batch(encoded, order[first:first + args.batch_size], len(schemas),
                                              np.random.default_rng(first))[0]
               for first in range(0, args.batch_size * args.steps, args.batch_size)]

    keras.utils.set_random_seed(0)  # the heads' start
    _, _, train_model = relation_extraction.build_models(checkpoint, len(schemas))
    bert = load_bert(args.bert_dir).eval()  # eval: no dropout, as training=False on the Keras side
    head = torch.nn.ModuleDict({"subject": torch.nn.Linear(bert.config.hidden_size, 2),
                                "object": torch.nn.Linear(bert.config.hidden_size, 2 * len(schemas))})
    copy_heads(train_model, head, torch)

    def script_loss(batch):
        train_model([tf.constant(part) for part in batch], training=False)
        return tf.add_n(train_model.losses)

    with tf.GradientTape() as tape:
        loss = script_loss(batches[0])
    gradients = {variable.name: tf.convert_to_tensor(gradient).numpy()
                 for variable, gradient in zip(train_model.trainable_variables,
                                               tape.gradient(loss, train_model.trainable_variables))}
    torch_loss = loop_loss(bert, head, batches[0], len(schemas), torch)
    torch_loss.backward()
    print("first batch: loss %.4f (script) %.4f (loop)" % (float(loss), torch_loss.item()))
    token_embeddings = next(name for name in gradients if name.startswith("Embedding-Token"))
    for name, script_gradient, loop_gradient in (
            ("subject-start kernel", gradients["subject_start/kernel:0"], head["subject"].weight.grad[0]),
            ("object-start kernels", gradients["object_start/kernel:0"], head["object"].weight.grad[:len(schemas)]),
            ("token embeddings", gradients[token_embeddings], bert.embeddings.word_embeddings.weight.grad)):
        print("gradient norm, %s: %.4f %.4f" % (name, np.linalg.norm(script_gradient), float(loop_gradient.norm())))

    script_optimizer = keras.optimizers.Adam(args.lr)
    loop_optimizer = torch.optim.Adam(list(bert.parameters()) + list(head.parameters()), lr=args.lr)
    for step, batch in enumerate(batches, 1):
        with tf.GradientTape() as tape:
            loss = script_loss(batch)
        variables = train_model.trainable_variables
        script_optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        loop_optimizer.zero_grad()
        torch_loss = loop_loss(bert, head, batch, len(schemas), torch)
        torch_loss.backward()
        loop_optimizer.step()
        print("step %d: loss %.4f (script) %.4f (loop)" % (step, float(loss), torch_loss.item()), flush=True)


if __name__ == "__main__":
    main()
