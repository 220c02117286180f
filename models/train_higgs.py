#!/usr/bin/python3
"""train_higgs.py: train the bundled ATLAS Higgs MLP so sigflow ships a real model.

The dist-keras Kafka example this project replaces served a randomly initialised
network, so its "signal" selection meant nothing. This script trains the same
architecture on the bundled ATLAS events with nothing but numpy (the build machine
has no Keras/TensorFlow/torch), and writes what the C pipeline needs:

  models/higgs_mlp.h5            the network, in the Keras 2 whole-model HDF5 layout
  models/higgs_variables.json    lwtnn-style inputs (offset/scale/fill), labels
  models/higgs_reference.csv     float64 probabilities for 1,000 held-out events,
                                 computed from the SAVED float32 weights (parity test)

Usage (from the repository root; about 70 s on one core):

    /usr/bin/python3 models/train_higgs.py

Everything is seeded and BLAS is pinned to one thread, so a rerun on the same
machine reproduces the files. Rules (see models/README.md for the why):
  - held-out validation: EventId % 10 == 9, never used for training or selection;
  - early stopping: EventId % 10 == 8, carved from the training rows;
  - normalization statistics: all non-held-out rows, defined values only.
"""

import os

# Before numpy loads BLAS: one thread keeps the box usable for others and makes
# the float32 GEMM sums (hence the trained weights) reproducible.
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse
import csv
import gzip
import hashlib
import json
import sys
import time

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(ROOT, "producer", "data", "atlas-higgs-challenge-2014-v2-sample.csv.gz")

SEED = 20140512
MISSING = -999.0
LABELS = ["b", "s"]          # output index 0 background, 1 signal
HIDDEN = [500, 1000, 500]
DROPOUT = 0.4                # after the first two hidden layers, as in dist-keras
N_REFERENCE = 1000
KERAS_VERSION = "2.13.1"

# Hyper-parameters, chosen with --cv on folds of the training rows (never on held-out).
LEARNING_RATE = 2e-4
BATCH = 256
EPOCHS = 40
WEIGHT_DECAY = 0.5           # decoupled (AdamW): W -= lr * WEIGHT_DECAY * W, kernels only
COSINE = False               # cosine-decay the learning rate to 10% over the epochs
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-7


def is_heldout(event_id):
    return event_id % 10 == 9


def is_stopping(event_id):
    return event_id % 10 == 8


def load_csv(path):
    """Returns (feature names, EventIds, float64 features, labels 0/1, raw feature text)."""
    with gzip.open(path, "rt", newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    excluded = {"EventId", "Weight", "Label", "KaggleSet", "KaggleWeight"}
    feat_idx = [i for i, h in enumerate(header) if h not in excluded]
    names = [header[i] for i in feat_idx]
    id_col, label_col = header.index("EventId"), header.index("Label")
    body = rows[1:]
    ids = np.array([int(r[id_col]) for r in body], dtype=np.int64)
    raw = [[r[i] for i in feat_idx] for r in body]
    x = np.array(raw, dtype=np.float64)
    y = np.array([1 if r[label_col] == "s" else 0 for r in body], dtype=np.int64)
    if set(r[label_col] for r in body) - {"s", "b"}:
        sys.exit("unexpected labels in %s" % path)
    return names, ids, x, y, raw


def fit_normalization(x):
    """Per feature: mean and std over the defined (non -999) values."""
    mean = np.empty(x.shape[1])
    std = np.empty(x.shape[1])
    for j in range(x.shape[1]):
        col = x[:, j]
        col = col[col != MISSING]
        mean[j] = col.mean()
        s = col.std()
        std[j] = s if s > 0 else 1.0
    return mean, std


def normalize(x, variables, dtype):
    """Applies the variables file exactly as the C pipeline does: a missing value
    takes the fill (the default in older files), then (x + offset) * scale."""
    out = np.array(x, dtype=np.float64)
    for j, v in enumerate(variables):
        col = out[:, j]
        col[col == MISSING] = v["fill"] if "fill" in v else v["default"]
        out[:, j] = (col + v["offset"]) * v["scale"]
    return out.astype(dtype)


def auc(score, y):
    """ROC AUC as the Mann-Whitney statistic, ties counted half."""
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    return (ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


class MLP:
    """Dense(500) relu, Dropout, Dense(1000) relu, Dropout, Dense(500) relu,
    Dense(2) softmax, in float32 with hand-written backprop and Adam."""

    def __init__(self, n_in, rng, weight_decay):
        self.weight_decay = weight_decay
        sizes = [n_in] + HIDDEN + [len(LABELS)]
        self.W, self.b = [], []
        for a, c in zip(sizes[:-1], sizes[1:]):
            lim = np.sqrt(6.0 / (a + c))            # Keras GlorotUniform
            self.W.append(rng.uniform(-lim, lim, size=(a, c)).astype(np.float32))
            self.b.append(np.zeros(c, dtype=np.float32))
        self.params = self.W + self.b
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.t = 0

    def forward(self, x, rng=None):
        """Returns softmax probabilities; with rng, applies inverted dropout and
        keeps what backward needs."""
        cache = []
        h = x
        for i in range(3):
            z = h @ self.W[i] + self.b[i]
            a = np.maximum(z, 0, out=z)
            mask = None
            if rng is not None and i < 2:
                keep = 1.0 - DROPOUT
                mask = (rng.random(a.shape, dtype=np.float32) < keep).astype(np.float32)
                mask *= np.float32(1.0 / keep)
                a = a * mask
            cache.append((h, a, mask))
            h = a
        logits = h @ self.W[3] + self.b[3]
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        cache.append((h, None, None))
        return p, cache

    def step(self, x, y, rng, lr):
        p, cache = self.forward(x, rng)
        n = x.shape[0]
        loss = -np.mean(np.log(np.maximum(p[np.arange(n), y], 1e-12)))
        g = p.copy()
        g[np.arange(n), y] -= 1.0
        g /= np.float32(n)
        gW, gb = [None] * 4, [None] * 4
        h_in = cache[3][0]
        gW[3] = h_in.T @ g
        gb[3] = g.sum(axis=0)
        g = g @ self.W[3].T
        for i in (2, 1, 0):
            h_in, a, mask = cache[i]
            # a is relu output times mask; its zeros mark both relu and dropout kills
            g = g * (a > 0)
            if mask is not None:
                g *= mask
            gW[i] = h_in.T @ g
            gb[i] = g.sum(axis=0)
            if i > 0:
                g = g @ self.W[i].T
        self._adam(gW + gb, lr)
        return float(loss)

    def _adam(self, grads, lr):
        self.t += 1
        c1 = 1.0 - ADAM_B1 ** self.t
        c2 = 1.0 - ADAM_B2 ** self.t
        step = np.float32(lr * np.sqrt(c2) / c1)
        for k, (p, g) in enumerate(zip(self.params, grads)):
            m, v = self.m[k], self.v[k]
            m *= np.float32(ADAM_B1)
            m += np.float32(1 - ADAM_B1) * g
            v *= np.float32(ADAM_B2)
            v += np.float32(1 - ADAM_B2) * (g * g)
            if k < 4 and self.weight_decay > 0:
                p -= np.float32(lr * self.weight_decay) * p
            p -= step * m / (np.sqrt(v) + np.float32(ADAM_EPS))

    def predict(self, x, batch=2048):
        return np.concatenate([self.forward(x[i:i + batch])[0]
                               for i in range(0, len(x), batch)])

    def snapshot(self):
        return [p.copy() for p in self.params]

    def restore(self, snap):
        for p, s in zip(self.params, snap):
            p[...] = s


# ---------------------------------------------------------------- Keras HDF5 output

LAYERS = [  # (name, class, units or rate, activation)
    ("dense", "Dense", 500, "relu"),
    ("dropout", "Dropout", DROPOUT, None),
    ("dense_1", "Dense", 1000, "relu"),
    ("dropout_1", "Dropout", DROPOUT, None),
    ("dense_2", "Dense", 500, "relu"),
    ("dense_3", "Dense", 2, "softmax"),
]


def keras_model_config(n_in):
    """The model_config JSON Keras 2.13 writes for this Sequential model."""
    def obj(module, cls, config, extra=None):
        d = {"module": module, "class_name": cls, "config": config, "registered_name": None}
        if extra:
            d.update(extra)
        return d

    layers = [obj("keras.layers", "InputLayer", {
        "batch_input_shape": [None, n_in], "dtype": "float32", "sparse": False,
        "ragged": False, "name": "dense_input"})]
    width = n_in
    for i, (name, cls, arg, act) in enumerate(LAYERS):
        if cls == "Dense":
            cfg = {"name": name, "trainable": True, "dtype": "float32"}
            if i == 0:
                cfg["batch_input_shape"] = [None, n_in]
            cfg.update({
                "units": arg, "activation": act, "use_bias": True,
                "kernel_initializer": obj("keras.initializers", "GlorotUniform", {"seed": None}),
                "bias_initializer": obj("keras.initializers", "Zeros", {}),
                "kernel_regularizer": None, "bias_regularizer": None,
                "activity_regularizer": None, "kernel_constraint": None,
                "bias_constraint": None})
            layers.append(obj("keras.layers", cls, cfg,
                              {"build_config": {"input_shape": [None, width]}}))
            width = arg
        else:
            layers.append(obj("keras.layers", cls, {
                "name": name, "trainable": True, "dtype": "float32", "rate": arg,
                "noise_shape": None, "seed": None},
                {"build_config": {"input_shape": [None, width]}}))
    return {"class_name": "Sequential", "config": {"name": "sequential", "layers": layers}}


def keras_training_config(hp):
    return {
        "loss": "categorical_crossentropy",
        "metrics": [[{"module": "keras.metrics", "class_name": "MeanMetricWrapper",
                      "config": {"name": "accuracy", "dtype": "float32",
                                 "fn": "categorical_accuracy"}, "registered_name": None}]],
        "weighted_metrics": None, "loss_weights": None,
        "optimizer_config": {"module": "keras.optimizers", "class_name": "Adam", "config": {
            "name": "Adam", "weight_decay": hp.weight_decay, "clipnorm": None, "global_clipnorm": None,
            "clipvalue": None, "use_ema": False, "ema_momentum": 0.99,
            "ema_overwrite_frequency": None, "jit_compile": False,
            "is_legacy_optimizer": False, "learning_rate": hp.lr,
            "beta_1": ADAM_B1, "beta_2": ADAM_B2, "epsilon": ADAM_EPS, "amsgrad": False},
            "registered_name": None},
    }


def write_keras_h5(path, model, n_in, hp):
    """Mirrors keras/saving/legacy/hdf5_format.py (Keras 2.13): JSON configs as
    fixed-length byte attributes, version strings, layer_names as byte strings,
    weight_names per layer (np.asarray([]) -> an empty float64 array when the layer
    has none), datasets at model_weights/<layer>/<layer>/kernel:0."""
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["keras_version"] = KERAS_VERSION
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps(keras_model_config(n_in)).encode("utf8")
        f.attrs["training_config"] = json.dumps(keras_training_config(hp)).encode("utf8")
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = np.asarray([n.encode("utf8") for n, _, _, _ in LAYERS])
        g.attrs["backend"] = b"tensorflow"
        g.attrs["keras_version"] = KERAS_VERSION.encode("utf8")
        dense_index = {l[0]: k for k, l in enumerate(l for l in LAYERS if l[1] == "Dense")}
        for name, cls, _, _ in sorted(LAYERS, key=lambda l: l[0]):
            lg = g.create_group(name)
            if cls != "Dense":
                lg.attrs["weight_names"] = np.asarray([])
                continue
            k = dense_index[name]
            wn = [("%s/kernel:0" % name).encode("utf8"), ("%s/bias:0" % name).encode("utf8")]
            lg.attrs["weight_names"] = np.asarray(wn)
            for wname, val in zip(wn, (model.W[k], model.b[k])):
                d = lg.create_dataset(wname.decode(), val.shape, dtype=np.float32)
                d[...] = val
    os.replace(tmp, path)


def read_keras_h5(path):
    """Reads the Dense weights back by layer name (float64 copies of the float32 data)."""
    with h5py.File(path, "r") as f:
        g = f["model_weights"]
        Ws, bs, acts = [], [], []
        cfg = json.loads(f.attrs["model_config"])
        for layer in cfg["config"]["layers"]:
            if layer["class_name"] != "Dense":
                continue
            name = layer["config"]["name"]
            names = [n.decode() if isinstance(n, bytes) else n for n in g[name].attrs["weight_names"]]
            Ws.append(np.asarray(g[name][names[0]], dtype=np.float64))
            bs.append(np.asarray(g[name][names[1]], dtype=np.float64))
            acts.append(layer["config"]["activation"])
        return Ws, bs, acts


def forward64(Ws, bs, acts, x):
    h = x
    for W, b, act in zip(Ws, bs, acts):
        h = h @ W + b
        if act == "relu":
            h = np.maximum(h, 0.0)
        elif act == "softmax":
            h = h - h.max(axis=1, keepdims=True)
            h = np.exp(h)
            h /= h.sum(axis=1, keepdims=True)
        else:
            raise ValueError(act)
    return h


def train(xf, yf, xs, ys, hp, rng):
    """Fits on (xf, yf) for hp.epochs; returns the model restored to the epoch with
    the lowest loss on the early-stopping rows (xs, ys), and (loss, epoch, weights,
    (accuracy, auc)) of that epoch."""
    model = MLP(xf.shape[1], rng, hp.weight_decay)
    best = (np.inf, -1, None, None)
    for epoch in range(1, hp.epochs + 1):
        te = time.time()
        lr = hp.lr
        if hp.cosine:
            lr = hp.lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * (epoch - 1) / hp.epochs)))
        perm = rng.permutation(len(xf))
        losses = []
        for i in range(0, len(perm), hp.batch):
            idx = perm[i:i + hp.batch]
            losses.append(model.step(xf[idx], yf[idx], rng, lr) * len(idx))
        ps = model.predict(xs)
        s_loss = -np.mean(np.log(np.maximum(ps[np.arange(len(ys)), ys], 1e-12)))
        s_acc = np.mean(ps.argmax(axis=1) == ys)
        s_auc = auc(ps[:, 1].astype(np.float64), ys)
        print("epoch %2d  train loss %.4f  stop-split loss %.4f acc %.4f auc %.4f  (%.1fs)"
              % (epoch, sum(losses) / len(perm), s_loss, s_acc, s_auc, time.time() - te),
              flush=True)
        if s_loss < best[0]:
            best = (s_loss, epoch, model.snapshot(), (s_acc, s_auc))
    model.restore(best[2])
    print("kept epoch %d (lowest early-stopping loss %.4f, acc %.4f, auc %.4f)"
          % (best[1], best[0], best[3][0], best[3][1]))
    return model, best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--out", default=HERE, help="directory for the output files")
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--lr", type=float, default=LEARNING_RATE)
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--weight-decay", type=float, default=WEIGHT_DECAY)
    ap.add_argument("--cosine", type=int, default=int(COSINE))
    ap.add_argument("--cv", metavar="FOLDS", default=None,
                    help="tuning mode: for each EventId %% 10 digit in FOLDS (e.g. 678) "
                         "use it as the early-stopping split, report its metrics, and "
                         "write nothing; the held-out rows are not touched")
    hp = ap.parse_args()
    t0 = time.time()

    names, ids, x_raw, y, raw_text = load_csv(hp.data)
    held = is_heldout(ids)
    mean, std = fit_normalization(x_raw[~held])
    variables = [{"name": n, "offset": -float(m), "scale": float(1.0 / s), "fill": float(m)}
                 for n, m, s in zip(names, mean, std)]
    x32 = normalize(x_raw, variables, np.float32)

    if hp.cv:
        scores = []
        for digit in hp.cv:
            stop = (ids % 10 == int(digit)) & ~held
            fit = ~held & ~stop
            rng = np.random.default_rng(SEED)
            _, best = train(x32[fit], y[fit], x32[stop], y[stop], hp, rng)
            scores.append((best[0],) + best[3] + (best[1],))
        s = np.array(scores)
        print("cv %s lr %g batch %d wd %g cosine %d epochs %d: loss %.4f acc %.4f auc %.4f "
              "best epochs %s" % (hp.cv, hp.lr, hp.batch, hp.weight_decay, hp.cosine,
                                   hp.epochs, s[:, 0].mean(), s[:, 1].mean(), s[:, 2].mean(),
                                   s[:, 3].astype(int).tolist()))
        return

    stop = is_stopping(ids) & ~held
    fit = ~held & ~stop
    print("events %d: fit %d, early-stopping %d, held-out %d (EventId %% 10 == 9)"
          % (len(ids), fit.sum(), stop.sum(), held.sum()))
    vars_doc = {"inputs": variables, "class_labels": LABELS, "missing_value": MISSING}
    vars_path = os.path.join(hp.out, "higgs_variables.json")
    with open(vars_path, "w") as f:
        json.dump(vars_doc, f, indent=1)
        f.write("\n")

    rng = np.random.default_rng(SEED)
    model, best = train(x32[fit], y[fit], x32[stop], y[stop], hp, rng)
    print("parameters: %d" % sum(p.size for p in model.params))

    h5_path = os.path.join(hp.out, "higgs_mlp.h5")
    write_keras_h5(h5_path, model, x32.shape[1], hp)

    # Everything below uses only the files just written: weights re-read from the
    # .h5 (float32 values, float64 arithmetic), normalization from the JSON.
    Ws, bs, acts = read_keras_h5(h5_path)
    with open(vars_path) as f:
        vdoc = json.load(f)
    x64 = normalize(x_raw, vdoc["inputs"], np.float64)
    p64 = forward64(Ws, bs, acts, x64)
    for label, sel in (("train (fit rows)", fit), ("early-stopping", stop), ("held-out", held)):
        acc = np.mean(p64[sel].argmax(axis=1) == y[sel])
        print("%-17s accuracy %.4f  ROC AUC %.4f  (%d events)"
              % (label, acc, auc(p64[sel, 1], y[sel]), sel.sum()))

    with open(h5_path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    ref_rows = np.flatnonzero(held)[:N_REFERENCE]
    ref_path = os.path.join(hp.out, "higgs_reference.csv")
    with open(ref_path, "w") as f:
        f.write("# float64 reference probabilities for the first %d held-out events "
                "(EventId %% 10 == 9)\n" % len(ref_rows))
        f.write("# computed by models/train_higgs.py from the float32 weights in "
                "higgs_mlp.h5 (sha256 %s)\n" % sha)
        f.write(",".join(["EventId"] + names + ["p_b", "p_s"]) + "\n")
        for r in ref_rows:
            f.write(",".join([str(ids[r])] + raw_text[r] +
                             ["%.17g" % p64[r, 0], "%.17g" % p64[r, 1]]) + "\n")
    print("wrote %s, %s, %s in %.0fs" % (h5_path, vars_path, ref_path, time.time() - t0))


if __name__ == "__main__":
    main()
