"""subject_extraction.py's model against plain_loop.py's, step by step: same batches, same dropout, a chosen head start.

Both sides start from the same checkpoint, see the same training batches (the script's windows and
make_batch, in one order fixed by --seed) with dropout on as in training (off on both with
--no-dropout), and take Adam steps at a constant --lr. Both pointer heads start from the script's draw (`--head keras`: Keras' after
`keras.utils.set_random_seed(--head-seed)`, as the script draws it with `--seed`) or from PyTorch's
`nn.Linear` draw (`--head torch`: torch seeded with --head-seed before the Linear is made).
Every --eval-every steps both are scored without dropout on the first --eval-rows dev questions (each
text cut at 128 characters): exact-match accuracy with the script's best_span, and the mean loss of
the gold start and end. The same head start on both sides says whether the model, its dropout and
the optimizer learn alike; `--side loop` with different starts says how much the start alone moves
the first epoch (benchmarks/README.md, "Where the first epoch's 0.09 goes").

torch and transformers are needed (`pip install torch transformers`); the checkpoint's weights are read
as plain_loop.py reads them, without running a pickle.

    python benchmarks/subject_parity.py --bert-dir $M --ccks-dir ../shared/data/ccks2019 --steps 118
"""
import argparse
import sys
import tempfile

import numpy as np

from plain_loop import PROJECT_DIR, load_bert, sequence_output, subject_files, subject_logits, subject_loss

sys.path.insert(0, PROJECT_DIR)

import subject_extraction  # noqa: E402
from bert_checkpoint import find_checkpoint  # noqa: E402
from fine_tuning import pad, set_up_devices  # noqa: E402
from tensorflow import keras  # noqa: E402  (after subject_extraction, which selects Keras 2)
from tokenizer import OurTokenizer, load_vocab  # noqa: E402

MAXLEN = 128


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bert-dir", required=True, help="a Hugging Face BERT folder, as plain_loop.py's")
    parser.add_argument("--ccks-dir", required=True, help="the folder of CCKS 2019's event_type_entity_extract_train.csv")
    parser.add_argument("--dev-rows", type=int, default=1000, help="dev rows of the split, as plain_loop.py's (default: %(default)s)")
    parser.add_argument("--train-rows", type=int, default=3760, help="default: %(default)s")
    parser.add_argument("--steps", type=int, default=118, help="Adam steps on each side (default: %(default)s, about an epoch)")
    parser.add_argument("--lr", type=float, default=1e-4, help="default: %(default)s")
    parser.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=0, help="the batches' order and torch's generator (default: %(default)s)")
    parser.add_argument("--side", choices=["both", "loop"], default="both", help="train both sides, or the loop only")
    parser.add_argument("--head", choices=["keras", "torch"], default="keras",
                        help="both heads' start: the script's Keras draw, or nn.Linear's (default: %(default)s)")
    parser.add_argument("--head-seed", type=int, default=None,
                        help="the seed of the head's draw (default: --seed; for torch, the generator as it is "
                        "after the BERT is built)")
    parser.add_argument("--head-scale", type=float, default=1.0, help="multiply the Keras start by this (default: %(default)s)")
    parser.add_argument("--no-dropout", action="store_true",
                        help="train both sides without dropout (their steps should then agree from one start)")
    parser.add_argument("--dropout-effect", action="store_true",
                        help="instead of training: how far each side's dropout moves BERT's output")
    parser.add_argument("--eval-every", type=int, default=40, help="default: %(default)s")
    parser.add_argument("--eval-rows", type=int, default=320, help="dev questions scored (default: %(default)s)")
    return parser


def read_questions(path, cut=None):
    return [example._replace(text=example.text[:cut]) for example in subject_extraction.read_labelled(path)]


def scores(side, model, bert, head, token_ids, segment_ids):
    """The start and end logits of a batch, without dropout."""
    import torch

    if side == "script":
        return [logits.numpy() for logits in model([token_ids, segment_ids], training=False)]
    with torch.no_grad():
        return [logits.numpy() for logits in subject_logits(bert, head, token_ids)]


def evaluate(side, model, bert, head, windows, questions, batch_size):
    """(exact-match accuracy, mean loss of the gold start and end where the entity is in the text)."""
    right, losses = 0, []
    for first in range(0, len(windows), batch_size):
        part = windows[first:first + batch_size]
        start_logits, end_logits = scores(side, model, bert, head, pad([w.token_ids for w in part]),
                                          pad([w.segment_ids for w in part]))
        for row, window in enumerate(part):
            question = questions[window.question]
            start, end, _ = subject_extraction.best_span(start_logits[row], end_logits[row], window.text_start,
                                                         window.text_start + len(question.text), subject_extraction.MAX_SPAN)
            right += question.text[start - window.text_start:end - window.text_start + 1] == question.entity
            found = question.text.find(question.entity) if question.entity else -1
            if found >= 0:
                gold_start = window.text_start + found
                losses.append(np.logaddexp.reduce(start_logits[row]) - start_logits[row][gold_start]
                              + np.logaddexp.reduce(end_logits[row])
                              - end_logits[row][gold_start + len(question.entity) - 1])
    return right / len(questions), float(np.mean(losses))


def switch_off_dropout(model, bert, keep=()):
    """Every dropout rate of both sides to 0 but those named in keep (Keras layers, torch modules)."""
    import torch

    keras_bert_model = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    for layer in keras_bert_model.layers:
        if isinstance(layer, keras.layers.Dropout) and layer.name not in keep:
            layer.rate = 0.0
    for name, module in bert.named_modules():
        if isinstance(module, torch.nn.Dropout) and name not in keep:
            module.p = 0.0


def dropout_effect(model, bert, token_ids, segment_ids, only_embeddings, draws=6):
    """How far dropout moves BERT's last hidden states on each side: |dropped - not| / |not| over real tokens.

    With only_embeddings the dropout after the embeddings' LayerNorm is the only one left on (both
    sides have it there: bert_checkpoint.bert_model), and the others stay off afterwards.
    """
    import torch

    keras_bert_model = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    if only_embeddings:
        switch_off_dropout(model, bert, keep=("Embedding-Dropout", "embeddings.dropout"))
    real = token_ids > 0

    def change(dropped, kept):
        return np.linalg.norm((dropped - kept)[real]) / np.linalg.norm(kept[real])

    def torch_output():
        with torch.no_grad():
            return sequence_output(bert, token_ids)[0].numpy()

    keras_kept = keras_bert_model([token_ids, segment_ids], training=False).numpy()
    bert.eval()
    torch_kept = torch_output()
    bert.train()
    keras_change = np.mean([change(keras_bert_model([token_ids, segment_ids], training=True).numpy(), keras_kept)
                            for _ in range(draws)])
    torch_change = np.mean([change(torch_output(), torch_kept) for _ in range(draws)])
    return keras_change, torch_change


def main():
    args = build_parser().parse_args()
    import torch

    torch.manual_seed(args.seed)
    checkpoint = find_checkpoint(args.bert_dir)
    tokenizer = OurTokenizer(load_vocab(checkpoint.vocab_path))
    with tempfile.TemporaryDirectory(prefix="subject_parity_") as folder:
        files = subject_files(folder, args)
        train = read_questions(files["train"])
        dev = read_questions(files["dev"], cut=MAXLEN)[:args.eval_rows]
    windows = subject_extraction.encode_questions(tokenizer, train, MAXLEN, MAXLEN // 2, "train")
    positions = subject_extraction.answer_positions(windows, train, MAXLEN, "train")
    if args.steps * args.batch_size > len(positions):
        sys.exit("error: --steps %d of --batch-size %d need more than the %d training windows (one pass at most)"
                 % (args.steps, args.batch_size, len(positions)))
    order = np.random.default_rng(args.seed).permutation(len(positions))
    batches = [subject_extraction.make_batch(windows, [positions[i] for i in order[first:first + args.batch_size]])[0]
               for first in range(0, args.batch_size * args.steps, args.batch_size)]
    dev_windows = subject_extraction.encode_questions(tokenizer, dev, MAXLEN, MAXLEN // 2, "dev")

    head_seed = args.seed if args.head_seed is None else args.head_seed
    keras.utils.set_random_seed(head_seed if args.head == "keras" else args.seed)  # the script's head draw
    set_up_devices(argparse.Namespace(mixed_precision=None, strategy="one-device"))
    model, train_model = subject_extraction.build_model(checkpoint)
    train_model.compile(optimizer=keras.optimizers.Adam(args.lr))
    bert = load_bert(args.bert_dir).train()
    if args.head == "torch" and args.head_seed is not None:
        torch.manual_seed(args.head_seed)
    head = torch.nn.Linear(bert.config.hidden_size, 2)
    if args.head == "keras":
        with torch.no_grad():
            kernels = [model.get_layer(name).get_weights()[0] for name in ("start_pointer", "end_pointer")]
            head.weight.copy_(torch.tensor(np.concatenate(kernels, 1).T * args.head_scale))
            head.bias.zero_()  # the script's pointers have none (a bias moves every position alike)
    else:  # the script's pointers start from the loop's draw
        for row, name in enumerate(("start_pointer", "end_pointer")):
            model.get_layer(name).set_weights([head.weight.detach().numpy()[row][:, None]])
    print("the heads: %s start, standard deviation %.4f" % (args.head, float(head.weight.detach().std())))
    if args.dropout_effect:  # at the checkpoint's weights, on the first batch; no training
        token_ids, segment_ids = batches[0][:2]
        for only_embeddings, what in ((False, "every dropout"), (True, "the embeddings' dropout alone")):
            print("%s moves the last hidden states by %.4f (keras-bert) %.4f (transformers), relative to no dropout"
                  % ((what,) + dropout_effect(model, bert, token_ids, segment_ids, only_embeddings)))
        return
    if args.no_dropout:
        switch_off_dropout(model, bert)
    optimizer = torch.optim.Adam(list(bert.parameters()) + list(head.parameters()), lr=args.lr)

    sides = ["script", "loop"] if args.side == "both" else ["loop"]
    losses = {side: [] for side in sides}
    for step, batch in enumerate(batches, 1):
        if "script" in losses:
            losses["script"].append(float(train_model.train_on_batch(batch)))
        optimizer.zero_grad()
        token_ids, _, start, end = batch  # the script's one-hot rows; the loop takes positions
        loss = subject_loss(*subject_logits(bert, head, token_ids), start.argmax(1), end.argmax(1))
        loss.backward()
        optimizer.step()
        losses["loop"].append(loss.item())
        print("step %d: loss %s" % (step, " ".join("%.4f (%s)" % (losses[side][-1], side) for side in sides)), flush=True)
        if step % args.eval_every == 0 or step == args.steps:
            bert.eval()
            print("after step %d, on %d dev questions: %s" % (step, len(dev), "; ".join(
                "%s accuracy %.4f, loss %.4f" % ((side,) + evaluate(side, model, bert, head, dev_windows, dev,
                                                                    args.batch_size)) for side in sides)), flush=True)
            bert.train()
    print("mean training loss over the %d steps: %s" % (args.steps, " ".join(
        "%.4f (%s)" % (np.mean(losses[side]), side) for side in sides)))


if __name__ == "__main__":
    main()
