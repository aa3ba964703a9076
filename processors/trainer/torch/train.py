#!/usr/bin/env python3
"""eyeflow's PyTorch training engine: full fine-tuning of a torchvision
classifier on the 224x224 PNGs the resize stage wrote, exported to ONNX for
eyeflow's classifier.

The Go trainer stage (processors/trainer/torch.go) runs this program as a
child process, one per training request; it can also be run by hand.

Input: one JSON job on stdin (or --job FILE):

    {"name": "...", "version": "...",
     "classes": ["amd", "cataract", ...],          # labels.json order (sorted)
     "data_dir": "/work/data",                     # files are relative to it
     "train":  [{"image_id": "...", "class": "...", "bucket": "...",
                 "key": "...", "file": "train/amd/x.png"}, ...],
     "select": [...],                              # holdout_1: model selection
     "out": "/work/out",
     "arch": "densenet121", "epochs": 10, "batch_size": 32, "lr": 0.001,
     "seed": 1, "init_weights": "", "device": "auto", "workers": -1,
     "nproc": 1}

Command-line flags override the job's fields (--arch, --epochs, ...).
Nothing is ever downloaded: --init-weights names a torchvision state dict the
user already has; without it the network starts from random weights.

Output, in "out": model.onnx (opset 17, input "input" [N,3,224,224] float32
normalised with ImageNet mean/std, output "output" logits, dynamic batch),
labels.json, model.json (eyeflow's model card with a "training" section) and
parity.json (the trained model's own float32 logits for a few holdout_1
images, so the caller can check the ONNX file against PyTorch).

stdout carries one JSON object per line and nothing else: {"event": "start"},
one {"event": "epoch"} per epoch, then {"event": "done"} or
{"event": "refused", "reason": ...}. Everything else goes to stderr.

Exit status: 0 done; 2 bad job or settings; 3 refused (non-finite loss, one
class: the same job would fail the same way); anything else is a crash.

Devices: CUDA when available (bf16 autocast, channels-last, pinned-memory
loader with workers), else the CPU with one thread per core. --nproc N
re-runs this program under torchrun (python -m torch.distributed.run) with
DistributedDataParallel: NCCL on GPUs, gloo on the CPU; rank 0 evaluates,
prints progress and writes the outputs.

Works with PyTorch 1.13 (Debian 12's python3-torch) and 2.x.

Test hook: EYEFLOW_TORCH_FAULT=crash|hang|nan|bad-onnx|parity makes the run
raise, sleep forever, get a NaN loss, write a corrupt model.onnx, or write
parity logits the ONNX model does not reproduce, so that the Go side's
handling of each failure is tested against this very program.
"""

import argparse
import contextlib
import inspect
import json
import math
import os
import platform
import re
import sys
import time

EXIT_BAD_JOB = 2
EXIT_REFUSED = 3
EXIT_NO_TORCH = 4

# OpenMP threads that busy-wait between ops collapse when the cores are
# shared (eyeflow's stages, other jobs): measured on 2 shared cores, 40-70
# against 160-200 images/s. Like the classifier's ONNX Runtime sessions,
# train without spinning unless told otherwise. Read when torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    import torch
    import torch.distributed as dist
    import torch.nn as nn
    import torch.nn.functional as F
    import torchvision
except ImportError as e:
    sys.stderr.write("train.py: %s: this program needs PyTorch and torchvision "
                     "(Debian: apt-get install python3-torch python3-torchvision)\n" % e)
    sys.exit(EXIT_NO_TORCH)

IMAGE_SIZE = 224
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
PARITY_IMAGES = 8

TORCHVISION_ARCHS = (
    "densenet121", "densenet169", "resnet18", "resnet34", "resnet50",
    "efficientnet_b0", "mobilenet_v3_small", "mobilenet_v3_large",
)
ARCHS = TORCHVISION_ARCHS + ("smallcnn",)

DEFAULTS = {
    "arch": "densenet121", "epochs": 10, "batch_size": 32, "lr": 1e-3,
    "seed": 1, "init_weights": "", "device": "auto", "workers": -1, "nproc": 1,
}


def emit(obj):
    """One JSON line on stdout: the only thing stdout carries."""
    sys.stdout.write(json.dumps(obj, allow_nan=False) + "\n")
    sys.stdout.flush()


def log(msg):
    sys.stderr.write("train.py: " + msg + "\n")
    sys.stderr.flush()


class BadJob(Exception):
    """The job or the settings are invalid (exit 2)."""


class Refused(Exception):
    """The run cannot produce a model from this data (exit 3)."""


def parse_args(argv):
    p = argparse.ArgumentParser(description="eyeflow PyTorch training engine (job JSON on stdin)")
    p.add_argument("--job", help="read the job from this file instead of stdin")
    p.add_argument("--arch", choices=ARCHS)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--out")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--workers", type=int, help="data loader workers; -1: 8 per GPU process, 0 on the CPU")
    p.add_argument("--init-weights", dest="init_weights", metavar="FILE",
                   help="torchvision state dict to start from (nothing is downloaded)")
    p.add_argument("--nproc", type=int, help="processes (DistributedDataParallel under torchrun)")
    p.add_argument("--probe", action="store_true",
                   help="print the Python/PyTorch environment as JSON and exit (checks --arch, --device, --init-weights)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # set when started by torchrun
    return p.parse_args(argv)


def overrides(args):
    return {k: v for k, v in vars(args).items()
            if k in DEFAULTS or k == "out"
            if v is not None}


# ----------------------------------------------------------------- probe


def environment():
    env = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "gpus": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "distributed": torch.distributed.is_available(),
        "cores": cores(),
        "archs": list(ARCHS),
    }
    if env["gpus"]:
        env["gpu_names"] = [torch.cuda.get_device_name(i) for i in range(env["gpus"])]
    return env


def probe(args):
    env = environment()
    if args.device and args.device != "auto":
        pick_device(args.device, 0)
    if args.init_weights and not os.path.isfile(args.init_weights):
        raise BadJob("init weights %s: no such file" % args.init_weights)
    if (args.nproc or 1) > 1 and not env["distributed"]:
        raise BadJob("--nproc %d: this PyTorch has no torch.distributed" % args.nproc)
    emit(env)


def cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ------------------------------------------------------------------ job


def read_job(args):
    if args.job:
        with open(args.job) as f:
            job = json.load(f)
    else:
        job = json.load(sys.stdin)
    if not isinstance(job, dict):
        raise BadJob("the job is not a JSON object")
    for k, v in DEFAULTS.items():
        if job.get(k) is None:
            job[k] = v
    job.update(overrides(args))
    return job


def check_job(job):
    classes = job.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
        raise BadJob("classes: want a non-empty list of class names")
    if classes != sorted(set(classes)):
        raise BadJob("classes must be sorted and unique (labels.json, ImageFolder order)")
    if not job.get("out"):
        raise BadJob("out: the output folder is required")
    if job["arch"] not in ARCHS:
        raise BadJob("arch %r: want one of %s" % (job["arch"], ", ".join(ARCHS)))
    for k in ("epochs", "batch_size", "nproc"):
        if not isinstance(job[k], int) or job[k] < 1:
            raise BadJob("%s %r: want a positive integer" % (k, job[k]))
    if not isinstance(job["lr"], (int, float)) or not (job["lr"] > 0 and math.isfinite(job["lr"])):
        raise BadJob("lr %r: want a positive number" % (job["lr"],))
    if not isinstance(job["seed"], int) or job["seed"] < 0:
        raise BadJob("seed %r: want a non-negative integer" % (job["seed"],))
    if job["init_weights"] and not os.path.isfile(job["init_weights"]):
        raise BadJob("init weights %s: no such file" % job["init_weights"])
    index = {c: i for i, c in enumerate(classes)}
    for split in ("train", "select"):
        exs = job.get(split) or []
        job[split] = exs
        for ex in exs:
            if ex.get("class") not in index:
                raise BadJob("%s image %s: class %r is not in classes" % (split, ex.get("image_id"), ex.get("class")))
            if not ex.get("file"):
                raise BadJob("%s image %s: no file" % (split, ex.get("image_id")))
    present = sorted({ex["class"] for ex in job["train"]})
    if len(present) < 2:
        raise Refused("the train split has images of %d class(es) %s: a classifier needs at least 2"
                      % (len(present), present))
    return index


# ---------------------------------------------------------------- model


def build_model(arch, classes):

    if arch == "smallcnn":
        return SmallCNN(classes)
    return getattr(torchvision.models, arch)(weights=None, num_classes=classes)


class SmallCNN(nn.Module):
    """A few strided convolutions: fast enough on two CPU cores to train in
    seconds, for tests. Not a model to deploy."""

    def __init__(self, classes):
        super().__init__()

        def block(i, o):
            return [nn.Conv2d(i, o, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(*block(3, 16), nn.MaxPool2d(2), *block(16, 32), *block(32, 64), *block(64, 64))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(64, classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


# Old-style torchvision DenseNet keys ("norm.1.weight") as torchvision's own
# loader renames them ("norm1.weight").
DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")


def load_init_weights(model, path, arch):
    """Loads a state dict the user has (ImageNet weights, an earlier run) into
    model, keeping every tensor whose name and shape match: the classifier
    head of a 1000-class ImageNet file does not match and stays random."""

    kwargs = {"map_location": "cpu"}
    if "weights_only" in inspect.signature(torch.load).parameters:
        kwargs["weights_only"] = True
    try:
        state = torch.load(path, **kwargs)
    except Exception as e:
        raise BadJob("init weights %s: not a PyTorch state dict: %s" % (path, e))
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BadJob("init weights %s: want a state dict, got %s" % (path, type(state).__name__))
    own = model.state_dict()
    keep, skipped = {}, []
    for k, v in state.items():
        k = k[len("module."):] if k.startswith("module.") else k
        if arch.startswith("densenet"):
            m = DENSENET_KEY.match(k)
            if m:
                k = m.group(1) + m.group(2)
        if k in own and hasattr(v, "shape") and tuple(v.shape) == tuple(own[k].shape):
            keep[k] = v
        else:
            skipped.append(k)
    if not keep:
        raise BadJob("init weights %s: none of its %d tensors fits %s" % (path, len(state), arch))
    model.load_state_dict(keep, strict=False)
    log("init weights %s: %d tensors loaded, %d skipped (%s)" % (path, len(keep), len(skipped), ", ".join(skipped[:4])))
    return {"file": os.path.basename(path), "loaded": len(keep), "skipped": len(skipped)}


# ----------------------------------------------------------------- data


def dataset(exs, data_dir, index):
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    class PNGs(torch.utils.data.Dataset):
        """The images as uint8 CHW tensors: normalisation and augmentation
        run on the training device, a whole batch at once."""

        def __init__(self):
            self.files = [os.path.join(data_dir, ex["file"]) for ex in exs]
            self.labels = [index[ex["class"]] for ex in exs]

        def __len__(self):
            return len(self.files)

        def __getitem__(self, i):
            with Image.open(self.files[i]) as im:
                im = im.convert("RGB")
                if im.size != (IMAGE_SIZE, IMAGE_SIZE):
                    # The old stack's Resize((224, 224)); the resize stage's
                    # PNGs already have this size.
                    im = im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
                return pil_to_tensor(im), self.labels[i]

    return PNGs()


class Prep:
    """The old stack's transform (ToTensor, then Normalize with ImageNet
    mean/std) on uint8 batches, with random flips and mild colour jitter
    (brightness, contrast, saturation +-10%) for training."""

    def __init__(self, device, channels_last, seed):
        self.device = device
        self.channels_last = channels_last
        self.mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(seed % (1 << 64))

    def __call__(self, x, train):
        x = x.to(self.device, non_blocking=True).float().div_(255)
        if train:
            x = self.augment(x)
        x = (x - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def rand(self, n):
        return torch.rand((n, 1, 1, 1), generator=self.gen, device=self.device)

    def augment(self, x):
        n = x.shape[0]
        x = torch.where(self.rand(n) < 0.5, x.flip(3), x)
        x = torch.where(self.rand(n) < 0.5, x.flip(2), x)

        def factor():
            return 1 + (self.rand(n) * 2 - 1) * 0.1

        def gray(t):
            return 0.299 * t[:, 0:1] + 0.587 * t[:, 1:2] + 0.114 * t[:, 2:3]

        x = (x * factor()).clamp_(0, 1)
        m = gray(x).mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - m) * factor() + m).clamp_(0, 1)
        g = gray(x)
        return ((x - g) * factor() + g).clamp_(0, 1)


# -------------------------------------------------------------- devices


def pick_device(pref, local_rank):
    pref = (pref or "auto").lower()
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref == "cpu":
        return torch.device("cpu")
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BadJob("device %s: torch.cuda.is_available() is false (PyTorch %s, CUDA %s)"
                         % (pref, torch.__version__, torch.version.cuda))
        base = int(pref.split(":", 1)[1]) if ":" in pref else 0
        ordinal = base + local_rank
        if ordinal >= torch.cuda.device_count():
            raise BadJob("device %s: GPU %d of %d" % (pref, ordinal, torch.cuda.device_count()))
        return torch.device("cuda", ordinal)
    raise BadJob("device %r: want auto, cpu, cuda or cuda:N" % pref)


# --------------------------------------------------------------- metrics


def evaluate(model, loader, prep, autocast, classes):
    """Accuracy and macro-F1 (mean per-class F1 over the classes present in
    the split, as eyeflow's evaluator computes it)."""
    model.eval()
    conf = torch.zeros((classes, classes), dtype=torch.long)
    with torch.no_grad(), autocast():
        for x, y in loader:
            pred = model(prep(x, False)).float().argmax(1).cpu()
            conf.index_put_((y, pred), torch.ones_like(y), accumulate=True)
    total = int(conf.sum())
    if total == 0:
        return None, None
    acc = float(conf.diag().sum()) / total
    f1s = []
    for c in range(classes):
        support = int(conf[c].sum())
        if support == 0:
            continue
        tp = int(conf[c, c])
        predicted = int(conf[:, c].sum())
        f1s.append(2.0 * tp / (support + predicted))
    return acc, sum(f1s) / len(f1s)


# ----------------------------------------------------------------- train


def train(job, index, rank, world, local_rank):
    fault = os.environ.get("EYEFLOW_TORCH_FAULT", "")
    distributed = world > 1
    device = pick_device(job["device"], local_rank)
    cuda = device.type == "cuda"
    n_cores = cores()
    threads = max(1, n_cores // world)
    torch.set_num_threads(threads)
    backend = None
    if distributed:
        backend = "nccl" if cuda else "gloo"
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        device_desc = "cuda:%d (%s)" % (device.index, torch.cuda.get_device_name(device))
    else:
        device_desc = "cpu (%d threads)" % threads
    if distributed:
        device_desc += " x%d processes (DDP, %s)" % (world, backend)
    classes = len(job["classes"])
    seed = job["seed"]
    torch.manual_seed(seed % (1 << 64))

    if rank == 0:
        emit({"event": "start", "device": device_desc, "torch": torch.__version__,
              "torchvision": torchvision.__version__, "cuda": torch.version.cuda,
              "processes": world, "train_images": len(job["train"]), "select_images": len(job["select"])})
        log("training %s on %s: %d train, %d holdout_1 images, %d classes"
            % (job["arch"], device_desc, len(job["train"]), len(job["select"]), classes))

    if fault == "crash":
        raise RuntimeError("EYEFLOW_TORCH_FAULT=crash: simulated crash")
    if fault == "hang":
        with open(os.path.join(job["out"], "hang.%d.pid" % rank), "w") as f:
            f.write(str(os.getpid()))
        while True:
            time.sleep(3600)

    model = build_model(job["arch"], classes)
    init = None
    if job["init_weights"]:
        init = load_init_weights(model, job["init_weights"], job["arch"])
    channels_last = cuda
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel
        net = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)

    workers = job["workers"]
    if workers < 0:
        workers = min(8, max(1, n_cores // world)) if cuda else 0
    per_rank_batch = max(1, job["batch_size"] // world)
    loader_kw = {"num_workers": workers, "pin_memory": cuda}
    if workers > 0:
        loader_kw.update(persistent_workers=True, prefetch_factor=4)
    train_set = dataset(job["train"], job["data_dir"], index)
    gen = torch.Generator()
    gen.manual_seed(seed % (1 << 64))
    if distributed:
        from torch.utils.data.distributed import DistributedSampler
        sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=seed % (1 << 63))
        train_loader = torch.utils.data.DataLoader(train_set, batch_size=per_rank_batch, sampler=sampler, **loader_kw)
    else:
        sampler = None
        train_loader = torch.utils.data.DataLoader(train_set, batch_size=per_rank_batch, shuffle=True,
                                                   generator=gen, **loader_kw)
    select_loader = None
    if rank == 0 and job["select"]:
        select_loader = torch.utils.data.DataLoader(dataset(job["select"], job["data_dir"], index),
                                                    batch_size=max(per_rank_batch, 64), shuffle=False, **loader_kw)

    prep = Prep(device, channels_last, seed + 7919 * (rank + 1))
    # bf16 needs no loss scaling; GPUs before Ampere have no bf16 and
    # train in float32.
    amp = cuda and torch.cuda.is_bf16_supported()
    if amp:
        def autocast():
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    else:
        autocast = contextlib.nullcontext

    opt_kw = {}
    if cuda and "fused" in inspect.signature(torch.optim.AdamW).parameters:
        opt_kw["fused"] = True  # one kernel for all parameters (PyTorch 2.x)
    opt = torch.optim.AdamW(net.parameters(), lr=job["lr"], weight_decay=1e-4, **opt_kw)
    steps_per_epoch = len(train_loader)
    total_steps = max(1, job["epochs"] * steps_per_epoch)
    warmup = max(1, min(steps_per_epoch, total_steps // 10))

    def lr_at(step):
        # Linear warm-up over (at most) the first epoch, then cosine to 0.
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)

    epochs = []
    best = None  # (macro_f1, epoch, state)
    train_seconds = 0.0
    train_images = 0
    for epoch in range(1, job["epochs"] + 1):
        if sampler is not None:
            sampler.set_epoch(epoch)
        net.train()
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        seen = 0
        for x, y in train_loader:
            x = prep(x, True)
            y = y.to(device, non_blocking=True)
            with autocast():
                logits = net(x)
            loss = F.cross_entropy(logits.float(), y)
            if fault == "nan":
                loss = loss * float("nan")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach().double() * y.shape[0]
            seen += y.shape[0]
        if cuda:
            torch.cuda.synchronize(device)
        secs = time.perf_counter() - t0
        totals = torch.tensor([float(loss_sum), float(seen), secs], dtype=torch.float64)
        if distributed:
            secs_max = torch.tensor([secs], dtype=torch.float64)
            if backend == "nccl":
                totals, secs_max = totals.to(device), secs_max.to(device)
            dist.all_reduce(totals)
            dist.all_reduce(secs_max, op=dist.ReduceOp.MAX)
            totals, secs = totals.cpu(), float(secs_max)
        loss_mean = float(totals[0]) / max(1.0, float(totals[1]))
        seen_all = int(totals[1])
        train_seconds += secs
        train_images += seen_all
        if not math.isfinite(loss_mean):
            raise Refused("the training loss of epoch %d is %s: lower the learning rate (%g)" % (epoch, loss_mean, job["lr"]))
        if rank == 0:
            t1 = time.perf_counter()
            acc, f1 = (None, None)
            if select_loader is not None:
                acc, f1 = evaluate(model, select_loader, prep, autocast, classes)
            rec = {"epoch": epoch, "epochs": job["epochs"], "loss": loss_mean,
                   "select_accuracy": acc, "select_macro_f1": f1,
                   "images_per_sec": seen_all / secs if secs > 0 else 0.0,
                   "seconds": secs, "eval_seconds": time.perf_counter() - t1}
            epochs.append(rec)
            score = f1 if f1 is not None else -1.0
            if best is None or score > best[0] or f1 is None:
                # Ties keep the earlier epoch; without holdout_1 the last
                # epoch is kept.
                best = (score, epoch, {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})
            emit(dict(rec, event="epoch"))
            log("epoch %d/%d loss %.4f holdout_1 accuracy %s macro-F1 %s, %.1f images/s"
                % (epoch, job["epochs"], loss_mean, fmt(acc), fmt(f1), rec["images_per_sec"]))
        if distributed:
            dist.barrier()

    if rank == 0:
        info = {"device": device_desc, "backend": backend, "threads": threads, "workers": workers,
                "cuda": cuda, "channels_last": channels_last, "init": init, "fused": bool(opt_kw), "amp": amp,
                "train_seconds": train_seconds, "train_images": train_images}
        write_outputs(job, index, best, epochs, info, fault)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()


def fmt(v):
    return "-" if v is None else "%.4f" % v


# --------------------------------------------------------------- outputs


def export_kwargs():
    kw = {"input_names": ["input"], "output_names": ["output"],
          "dynamic_axes": {"input": {0: "N"}, "output": {0: "N"}},
          "opset_version": 17, "do_constant_folding": True}
    # PyTorch 2.9 made the dynamo exporter the default; the classic one is
    # what eyeflow's parity is measured with.
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kw["dynamo"] = False
    return kw


def write_outputs(job, index, best, epochs, info, fault):

    out = job["out"]
    classes = len(job["classes"])
    _, best_epoch, state = best
    # Export the selected epoch from a fresh float32 CPU copy in eval mode:
    # no autocast, no channels-last, no DDP wrapper.
    model = build_model(job["arch"], classes)
    model.load_state_dict(state)
    model.eval()

    t0 = time.perf_counter()
    dummy = torch.zeros((2, 3, IMAGE_SIZE, IMAGE_SIZE))
    onnx_path = os.path.join(out, "model.onnx")
    with torch.no_grad():
        torch.onnx.export(model, dummy, onnx_path, **export_kwargs())
    export_seconds = time.perf_counter() - t0
    if fault == "bad-onnx":
        with open(onnx_path, "wb") as f:
            f.write(b"EYEFLOW_TORCH_FAULT=bad-onnx: not an ONNX model")

    # The trained model's own logits for a few holdout_1 images.
    exs = (job["select"] or job["train"])[:PARITY_IMAGES]
    ds = dataset(exs, job["data_dir"], index)
    x = torch.stack([ds[i][0] for i in range(len(ds))]).float().div(255)
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = model(x)
    if fault == "parity":
        logits[:, 0] += 1.0
    with open(os.path.join(out, "parity.json"), "w") as f:
        json.dump({"files": [ex["file"] for ex in exs], "logits": logits.tolist()}, f)

    with open(os.path.join(out, "labels.json"), "w") as f:
        json.dump(job["classes"], f)

    best_rec = next(e for e in epochs if e["epoch"] == best_epoch)
    secs = info["train_seconds"]
    settings = {k: job[k] for k in ("arch", "epochs", "batch_size", "lr", "seed")}
    if job["init_weights"]:
        settings["init_weights"] = os.path.basename(job["init_weights"])
    card = {
        "name": job.get("name") or "eyeflow-torch",
        "version": job.get("version") or "0.0.0",
        "arch": job["arch"],
        "input": {"name": "input", "shape": [-1, 3, IMAGE_SIZE, IMAGE_SIZE], "dtype": "float32"},
        "output": {"name": "output", "kind": "logits"},
        "mean": MEAN,
        "std": STD,
        "labels": classes,
        "label_order": "imagefolder",
        "description": "%s trained by eyeflow's PyTorch engine: epoch %d of %d (best holdout_1 macro-F1)"
                       % (job["arch"], best_epoch, job["epochs"]),
        "training": {
            "engine": "torch",
            "train_images": len(job["train"]),
            "select_images": len(job["select"]),
            "settings": settings,
            "device": info["device"],
            "seconds": secs,
            "images_per_sec": info["train_images"] / secs if secs > 0 else 0.0,
            "epochs": epochs,
            "extra": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "torchvision": torchvision.__version__,
                "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version() if info["cuda"] else None,
                "processes": int(os.environ.get("WORLD_SIZE", "1")),
                "backend": info["backend"],
                "threads_per_process": info["threads"],
                "loader_workers": info["workers"],
                "amp": "bf16" if info["amp"] else None,
                "channels_last": info["channels_last"],
                "optimizer": "AdamW(weight_decay=1e-4%s), warm-up then cosine" % (", fused" if info["fused"] else ""),
                "augmentation": "random horizontal and vertical flips, brightness/contrast/saturation +-10%",
                "init_weights": info["init"],
                "best_epoch": best_epoch,
                "best_select_accuracy": best_rec["select_accuracy"],
                "best_select_macro_f1": best_rec["select_macro_f1"],
                "export_seconds": export_seconds,
                "onnx_opset": 17,
            },
        },
    }
    with open(os.path.join(out, "model.json"), "w") as f:
        json.dump(card, f, indent=2)
    emit({"event": "done", "best_epoch": best_epoch, "seconds": secs,
          "images_per_sec": card["training"]["images_per_sec"]})


# ------------------------------------------------------------------ main


def relaunch(job, nproc):
    """Re-runs this program under torchrun with nproc processes. The job goes
    through a file: only one process can read stdin."""
    os.makedirs(job["out"], exist_ok=True)
    path = os.path.join(job["out"], "job.json")
    with open(path, "w") as f:
        json.dump(job, f)
    # Each process sets its own thread count; this only quiets torchrun's
    # warning about OMP_NUM_THREADS.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores() // nproc)))
    # One machine: gloo talks over loopback rather than whatever address
    # the host name resolves to (often none in a container).
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    argv = [sys.executable, os.path.abspath(__file__), "--torchrun",
            "--standalone", "--nnodes", "1", "--nproc_per_node", str(nproc),
            os.path.abspath(__file__), "--worker", "--job", path]
    log("running %d processes under torchrun: %s" % (nproc, " ".join(argv)))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


def torchrun(argv):
    """python -m torch.distributed.run, with one fix: PyTorch 1.13's
    Std.from_str (torchrun's --redirects/--tee parser) finds no member for
    "0" on Python 3.11, whose IntFlag iteration skips zero and aliases, so
    Debian 12's torchrun fails before starting any process."""
    import torch.distributed.run as run
    from torch.distributed.elastic.multiprocessing import api

    if api.Std.from_str("0") is None:
        def from_str(cls, vm):
            if re.fullmatch(r"[0-3]", vm):
                return cls(int(vm))
            return {int(i): cls(int(v)) for i, v in (m.split(":") for m in vm.split(","))}

        api.Std.from_str = classmethod(from_str)
    run.main(argv)
    return 0


def main(argv):
    if argv[:1] == ["--torchrun"]:
        return torchrun(argv[1:])
    args = parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    try:
        if args.probe:
            probe(args)
            return 0
        job = read_job(args)
        index = check_job(job)
        os.makedirs(job["out"], exist_ok=True)
        job.setdefault("data_dir", "")
        if args.worker:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            return train(job, index, rank, world, int(os.environ.get("LOCAL_RANK", "0"))) or 0
        if job["nproc"] > 1:
            relaunch(job, job["nproc"])
        return train(job, index, 0, 1, 0) or 0
    except BadJob as e:
        log("bad job: %s" % e)
        if rank == 0:
            emit({"event": "error", "reason": str(e)})
        return EXIT_BAD_JOB
    except Refused as e:
        log("refused: %s" % e)
        if rank == 0:
            emit({"event": "refused", "reason": str(e)})
        return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
