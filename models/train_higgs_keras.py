#!/usr/bin/env python3
"""train_higgs_keras.py: train the shipped ATLAS Higgs MLP with real Keras 3.

The same network, data split, preprocessing, hyper-parameters and early
stopping as train_higgs.py (whose data and reference code it imports), but the
training is Keras's own: Dense/Dropout layers, AdamW, model.fit, and Keras
writes the files, so what sigflow serves is what a Keras user would have.

  models/higgs_mlp.keras         Keras 3's default format (zip)
  models/higgs_mlp.h5            the same weights, Keras 3's legacy HDF5 writer
  models/higgs_variables.json    unchanged rules: offset/scale/fill, labels
  models/higgs_reference.csv     float64 probabilities for 1,000 held-out events,
                                 from the SAVED .h5 weights (parity test)

Run in a virtual environment with the pinned versions (outside the repository):

    python3 -m venv /work/venv-keras
    /work/venv-keras/bin/pip install -r tests/fixtures/requirements-keras.txt
    /work/venv-keras/bin/python models/train_higgs_keras.py [--out DIR]

Seeded (keras.utils.set_random_seed) with TensorFlow's deterministic ops, so a
rerun on the same machine and thread count gives the same weights.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import hashlib
import json
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_higgs as th  # noqa: E402  data, split, preprocessing, metrics

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402


def build(n_in):
    L = keras.layers
    model = keras.Sequential(name="higgs_mlp")
    model.add(keras.Input((n_in,)))
    for i, units in enumerate(th.HIDDEN):
        model.add(L.Dense(units, activation="relu"))
        if i < 2:
            model.add(L.Dropout(th.DROPOUT))
    model.add(L.Dense(len(th.LABELS), activation="softmax"))
    return model


class KeepBest(keras.callbacks.Callback):
    """Restores the epoch with the lowest loss on the early-stopping rows."""

    def __init__(self):
        super().__init__()
        self.best = (np.inf, -1, None)

    def on_epoch_end(self, epoch, logs=None):
        loss = logs["val_loss"]
        print("epoch %2d  train loss %.4f  stop-split loss %.4f acc %.4f"
              % (epoch + 1, logs["loss"], loss, logs["val_accuracy"]), flush=True)
        if loss < self.best[0]:
            self.best = (loss, epoch + 1, self.model.get_weights())

    def on_train_end(self, logs=None):
        self.model.set_weights(self.best[2])


def convert(h5_path, out):
    """Saves the weights of an existing higgs_mlp.h5 through Keras 3 as .keras."""
    Ws, bs, acts = th.read_keras_h5(h5_path)
    model = build(Ws[0].shape[0])
    weights = []
    for W, b in zip(Ws, bs):
        weights += [W.astype(np.float32), b.astype(np.float32)]
    model.set_weights(weights)
    path = os.path.join(out, "higgs_mlp.keras")
    model.save(path)
    # Keras's own forward pass on the held-out rows against float64 from the .h5.
    names, ids, x_raw, y, _ = th.load_csv(th.DATA)
    with open(os.path.join(th.HERE, "higgs_variables.json")) as f:
        variables = json.load(f)["inputs"]
    held = th.is_heldout(ids)
    pk = model.predict(th.normalize(x_raw[held], variables, np.float32), verbose=0)
    p64 = th.forward64(Ws, bs, acts, th.normalize(x_raw[held], variables, np.float64))
    print("wrote %s (keras %s): held-out max |Keras - float64 from %s| = %.3g, "
          "accuracy %.4f AUC %.4f" % (path, keras.__version__, h5_path, np.abs(pk - p64).max(),
                                      np.mean(pk.argmax(1) == y[held]),
                                      th.auc(pk[:, 1].astype(np.float64), y[held])))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=th.DATA)
    ap.add_argument("--out", default=th.HERE, help="directory for the output files")
    ap.add_argument("--epochs", type=int, default=th.EPOCHS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--from-h5", metavar="H5",
                    help="train nothing: write DIR/higgs_mlp.keras holding the weights of H5 "
                         "(the shipped model as Keras 3 saves it)")
    hp = ap.parse_args()
    if hp.from_h5:
        convert(hp.from_h5, hp.out)
        return
    t0 = time.time()
    tf.config.threading.set_intra_op_parallelism_threads(hp.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(th.SEED)
    tf.config.experimental.enable_op_determinism()

    names, ids, x_raw, y, raw_text = th.load_csv(hp.data)
    held = th.is_heldout(ids)
    stop = th.is_stopping(ids) & ~held
    fit = ~held & ~stop
    mean, std = th.fit_normalization(x_raw[~held])
    variables = [{"name": n, "offset": -float(m), "scale": float(1.0 / s), "fill": float(m)}
                 for n, m, s in zip(names, mean, std)]
    x32 = th.normalize(x_raw, variables, np.float32)
    print("events %d: fit %d, early-stopping %d, held-out %d (EventId %% 10 == 9)"
          % (len(ids), fit.sum(), stop.sum(), held.sum()))

    model = build(x32.shape[1])
    opt = keras.optimizers.AdamW(learning_rate=th.LEARNING_RATE, weight_decay=th.WEIGHT_DECAY,
                                 beta_1=th.ADAM_B1, beta_2=th.ADAM_B2, epsilon=th.ADAM_EPS)
    opt.exclude_from_weight_decay(var_names=["bias"])  # kernels only, as train_higgs.py
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    keep = KeepBest()
    t_fit = time.time()
    model.fit(x32[fit], y[fit], batch_size=th.BATCH, epochs=hp.epochs, shuffle=True,
              validation_data=(x32[stop], y[stop]), callbacks=[keep], verbose=0)
    t_fit = time.time() - t_fit
    print("kept epoch %d (lowest early-stopping loss %.4f); fit took %.0f s on %d threads"
          % (keep.best[1], keep.best[0], t_fit, hp.threads))
    print("parameters: %d" % model.count_params())

    os.makedirs(hp.out, exist_ok=True)
    vars_path = os.path.join(hp.out, "higgs_variables.json")
    with open(vars_path, "w") as f:
        json.dump({"inputs": variables, "class_labels": th.LABELS, "missing_value": th.MISSING},
                  f, indent=1)
        f.write("\n")
    keras_path = os.path.join(hp.out, "higgs_mlp.keras")
    h5_path = os.path.join(hp.out, "higgs_mlp.h5")
    model.save(keras_path)
    model.save(h5_path)

    # From the files just written: the .h5 weights in float64, the JSON normalization.
    Ws, bs, acts = th.read_keras_h5(h5_path)
    with open(vars_path) as f:
        vdoc = json.load(f)
    x64 = th.normalize(x_raw, vdoc["inputs"], np.float64)
    p64 = th.forward64(Ws, bs, acts, x64)
    pk = model.predict(x32, verbose=0, batch_size=2048)
    print("max |Keras predict - float64 from the .h5| = %.3g" % np.abs(pk - p64).max())
    for label, sel in (("train (fit rows)", fit), ("early-stopping", stop), ("held-out", held)):
        acc = np.mean(p64[sel].argmax(axis=1) == y[sel])
        print("%-17s accuracy %.4f  ROC AUC %.4f  (%d events)"
              % (label, acc, th.auc(p64[sel, 1], y[sel]), sel.sum()))

    with open(h5_path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    ref_rows = np.flatnonzero(held)[:th.N_REFERENCE]
    ref_path = os.path.join(hp.out, "higgs_reference.csv")
    with open(ref_path, "w") as f:
        f.write("# float64 reference probabilities for the first %d held-out events "
                "(EventId %% 10 == 9)\n" % len(ref_rows))
        f.write("# computed by models/train_higgs_keras.py (keras %s, tensorflow %s) from the "
                "float32 weights in higgs_mlp.h5 (sha256 %s)\n"
                % (keras.__version__, tf.__version__, sha))
        f.write(",".join(["EventId"] + names + ["p_b", "p_s"]) + "\n")
        for r in ref_rows:
            f.write(",".join([str(ids[r])] + raw_text[r] +
                             ["%.17g" % p64[r, 0], "%.17g" % p64[r, 1]]) + "\n")
    print("wrote %s, %s, %s, %s in %.0f s" % (keras_path, h5_path, vars_path, ref_path,
                                               time.time() - t0))


if __name__ == "__main__":
    main()
