"""Writers of small files in the exact CIFAR-10 python format, for the tests (no download)."""
import os
import pickle
import struct

import numpy as np


def py2_batch_bytes(data: np.ndarray, labels, batch_label="training batch 1 of 5") -> bytes:
    """A batch pickled the way the official files are: Python 2's cPickle, protocol 2.

    Python 3 cannot write Python 2 `str` opcodes, so the opcodes are laid out by hand: a dict of
    SHORT_BINSTRING keys, a numpy array rebuilt by numpy.core.multiarray._reconstruct with its raw
    bytes as a BINSTRING, and the labels as a list of ints.
    """
    def s(text: str) -> bytes:                     # SHORT_BINSTRING
        b = text.encode("latin1")
        return b"U" + bytes([len(b)]) + b

    def i(v: int) -> bytes:                        # BININT (4-byte signed)
        return b"J" + struct.pack("<i", v)

    n = data.shape[0]
    raw = data.astype(np.uint8).tobytes()
    array = (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n"
             + b"K\x00\x85" + s("b") + b"\x87R"
             + b"(K\x01" + i(n) + i(3072) + b"\x86"
             + b"cnumpy\ndtype\n" + s("u1") + b"K\x00K\x01\x87R"
             + b"(K\x03" + s("|") + b"NNN" + i(-1) + i(-1) + b"K\x00tb"
             + b"\x89" + b"T" + struct.pack("<I", len(raw)) + raw + b"tb")
    label_list = b"](" + b"".join(b"K" + bytes([int(v)]) for v in labels) + b"e"
    return (b"\x80\x02}(" + s("batch_label") + s(batch_label) + s("labels") + label_list
            + s("data") + array + b"u.")


def write_cifar_folder(root, n_per_batch=4, keys="py2", seed=0):
    """Write root/cifar-10-batches-py with 5 training batches and a test batch of n images each.

    keys: "py2" (hand-made Python 2 pickle), "bytes" or "str" (Python 3 pickles with such keys).
    Returns (train_data (5n, 3072), train_labels, test_data, test_labels) as numpy arrays.
    """
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    written = {}
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n_per_batch)]
        written[name] = (data, labels)
        write_batch(os.path.join(folder, name), data, labels, keys)
    train = [written[f"data_batch_{k}"] for k in range(1, 6)]
    return (np.concatenate([d for d, _ in train]), np.array(sum([l for _, l in train], [])),
            written["test_batch"][0], np.array(written["test_batch"][1]))


def write_batch(path, data, labels, keys="py2", protocol=2):
    if keys == "py2":
        blob = py2_batch_bytes(data, labels)
    else:
        k = (lambda t: t.encode()) if keys == "bytes" else (lambda t: t)
        blob = pickle.dumps({k("batch_label"): "testing batch 1 of 1", k("labels"): list(labels),
                             k("data"): data, k("filenames"): [f"img{i}.png" for i in range(len(labels))]},
                            protocol=protocol)
    with open(path, "wb") as f:
        f.write(blob)
