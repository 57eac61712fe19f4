#!/usr/bin/python3
"""What users would otherwise run: the same two-layer CNN trained by PyTorch for a wall budget.

Usage:
  tools/bench/pytorch_baseline.py [--data DIR] [--optimizer adam|sgd] [--lr LR] [--budget SECONDS]
                                  [--width M] [--arch relu|gated] [--weight-decay WD]
                                  [--per-class K] [--test-per-class K] [--seed S] [--threads N]

Network: conv 3x3 stride 1 padding 1 (M filters, PyTorch's default bias), ReLU (or gated
ReLU with fixed Gaussian gate filters), average pooling to a 7x7 grid, linear layer to the
10 classes: conv3x3s1p1-relu-pool7, cvxcnn's `relu` preset. Cross-entropy, weight decay
(coupled, PyTorch's `weight_decay`), batch 128, SGD with momentum 0.9 or Adam.

Data: the Fashion-MNIST IDX files in --data (train-images-idx3-ubyte.gz, ...), read with
the standard library (Debian has no python3-torchvision or PIL here, so the PNG folders are
not decoded). `cvxcnn import` names each PNG by its IDX index, so --per-class K takes the
same images as the benchmark driver's --subset (the first K files of each class folder),
and --test-per-class K those of its --test-subset.
10% of them are held out for validation (seeded), normalization from the rest.

Trains until --budget seconds of training have passed (checked after every step), then
prints one JSON object on stdout: test accuracy, validation accuracy, per-epoch history
(time_s, val_accuracy, objective), epochs, time. Needs python3-torch (Debian's 1.13).
"""

import argparse
import gzip
import json
import struct
import sys
import time
from pathlib import Path


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        sys.stderr.write(f"pytorch_baseline.py: {message} (see --help)\n")
        sys.exit(1)


def read_idx(path):
    with gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return shape, data[4 + 4 * dims:]


def load(folder, split, torch):
    stem = "train" if split == "train" else "t10k"
    candidates = [Path(folder) / f"{stem}-{kind}-idx{n}-ubyte{ext}" for kind, n in (("images", 3), ("labels", 1))
                  for ext in (".gz", "")]
    images = next((p for p in candidates[:2] if p.exists()), None)
    labels = next((p for p in candidates[2:] if p.exists()), None)
    if images is None or labels is None:
        raise FileNotFoundError(f"{folder}: no {stem}-images-idx3-ubyte(.gz) / {stem}-labels-idx1-ubyte(.gz)")
    shape, pixels = read_idx(images)
    (n,), label_bytes = read_idx(labels)
    x = torch.frombuffer(bytearray(pixels), dtype=torch.uint8).reshape(shape[0], 1, shape[1], shape[2])
    y = torch.frombuffer(bytearray(label_bytes), dtype=torch.uint8).long()
    return x.float() / 255.0, y


def main():
    parser = ArgumentParser(description=__doc__.split("\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/work/shared/data/fashion-mnist", help="folder of the IDX files")
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--budget", type=float, default=540.0, help="training seconds (default 540)")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--arch", choices=["relu", "gated"], default="relu")
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--per-class", type=int, default=0, help="first K training images of each class; 0 = all")
    parser.add_argument("--test-per-class", type=int, default=0, help="first K test images of each class; 0 = all")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    for name in ("lr", "budget", "width", "batch_size", "threads"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}: must be positive")
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        sys.stderr.write("pytorch_baseline.py: torch is not importable (apt-get install python3-torch)\n")
        sys.exit(1)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    start = time.monotonic()
    try:
        x, y = load(args.data, "train", torch)
        x_test, y_test = load(args.data, "test", torch)
    except (OSError, ValueError, struct.error) as e:
        sys.stderr.write(f"pytorch_baseline.py: {e}\n")
        sys.exit(1)
    if args.per_class:
        keep = torch.cat([torch.nonzero(y == c).flatten()[:args.per_class] for c in range(10)]).sort().values
        x, y = x[keep], y[keep]
    if args.test_per_class:
        keep = torch.cat([torch.nonzero(y_test == c).flatten()[:args.test_per_class] for c in range(10)]).sort().values
        x_test, y_test = x_test[keep], y_test[keep]
    generator = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(y), generator=generator)
    n_val = len(y) // 10
    val_idx, train_idx = order[:n_val], order[n_val:]
    x_train, y_train, x_val, y_val = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
    mean, std = x_train.mean().item(), x_train.std().item()
    x_train, x_val, x_test = [(t - mean) / std for t in (x_train, x_val, x_test)]

    m = args.width
    conv = torch.nn.Conv2d(1, m, 3, stride=1, padding=1)
    gate = torch.nn.Conv2d(1, m, 3, stride=1, padding=1, bias=False) if args.arch == "gated" else None
    if gate is not None:
        with torch.no_grad():
            gate.weight.normal_(generator=generator)
        gate.weight.requires_grad_(False)
    fc = torch.nn.Linear(m * 49, 10)
    params = list(conv.parameters()) + list(fc.parameters())

    def forward(batch):
        z = conv(batch)
        a = z * (gate(batch) >= 0).float() if gate is not None else F.relu(z)
        return fc(torch.flatten(F.adaptive_avg_pool2d(a, 7), 1))

    def accuracy(xs, ys):
        with torch.no_grad():
            correct = sum((forward(xs[i:i + 1000]).argmax(1) == ys[i:i + 1000]).sum().item()
                          for i in range(0, len(ys), 1000))
        return correct / max(1, len(ys))

    if args.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    load_s = time.monotonic() - start
    train_start = time.monotonic()
    history, epoch, status = [], 0, "completed"
    stop = False
    while not stop:
        epoch += 1
        perm = torch.randperm(len(y_train), generator=generator)
        loss_sum, seen = 0.0, 0
        for i in range(0, len(perm), args.batch_size):
            idx = perm[i:i + args.batch_size]
            loss = F.cross_entropy(forward(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if not torch.isfinite(loss):
                status, stop = "diverged", True
                break
            loss_sum += loss.item() * len(idx)
            seen += len(idx)
            if time.monotonic() - train_start >= args.budget:
                status, stop = "time-limit-reached", True
                break
        val = accuracy(x_val, y_val)
        history.append({"epoch": epoch, "objective": loss_sum / max(1, seen), "val_accuracy": val,
                        "time_s": time.monotonic() - train_start})
        sys.stderr.write(f"epoch {epoch}  loss {loss_sum / max(1, seen):.4f}  val {100 * val:.2f}%  "
                         f"{time.monotonic() - train_start:.0f}s\n")
    train_s = time.monotonic() - train_start
    result = {"framework": f"torch {torch.__version__}", "optimizer": args.optimizer, "lr": args.lr,
              "arch": f"conv3x3s1p1-{args.arch}-pool7", "width": m, "filters": m, "weight_decay": args.weight_decay,
              "status": status, "epochs_done": epoch - 1 if status != "completed" else epoch,
              "train_samples": len(y_train), "val_samples": len(y_val),
              "objective": history[-1]["objective"] if history else None,
              "train_accuracy": accuracy(x_train, y_train), "val_accuracy": accuracy(x_val, y_val),
              "test_accuracy": accuracy(x_test, y_test), "load_s": load_s,
              "time_s": train_s, "eval_s": time.monotonic() - train_start - train_s, "threads": args.threads, "history": history}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
