"""The Python peers of the kiln comparison: PyTorch eager, torch.compile,
ONNX Runtime (the torch model exported to ONNX) and JAX, on the weights,
input and output kiln wrote for one workload.

Training workloads check the first step's loss and updated weights instead
of an output. Usage: peers.py DIR WORKLOAD THREADS WARMUP RUNS (set the thread count of
JAX's XLA through XLA_FLAGS before starting, as run.sh does). Checks every
peer's output against kiln's (max |peer - kiln| / max(1, max |kiln|) at most
1e-4) and prints one JSON line: for each peer, the median wall and process
CPU seconds per call, or the error that stopped it.
"""

import json
import os
import sys
import time
import traceback

import numpy as np
from safetensors.numpy import load_file

TOLERANCE = 1e-4


def timed(fn, warmup, runs):
    """Median wall and process-CPU seconds of `fn()` after `warmup` calls."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(max(runs, 1)):
        t, c = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - t)
    return float(np.median(wall)), float(np.median(cpu))


def error_of(got, want):
    got = np.asarray(got, dtype=np.float32).reshape(want.shape)
    return float(np.max(np.abs(got - want)) / max(1.0, float(np.max(np.abs(want)))))


# ---- PyTorch models, their parameter names those kiln saves ------------------


def torch_models():
    import torch
    from torch import nn

    class LeNet5(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv2d0 = nn.Conv2d(1, 6, 5)
            self.conv2d1 = nn.Conv2d(6, 16, 5)
            self.conv2d2 = nn.Conv2d(16, 120, 5)
            self.linear0 = nn.Linear(120, 84)
            self.linear1 = nn.Linear(84, 10)

        def forward(self, x):
            f = torch.nn.functional
            x = f.max_pool2d(f.relu(self.conv2d0(x)), 2)
            x = f.max_pool2d(f.relu(self.conv2d1(x)), 2)
            x = f.relu(self.conv2d2(x)).flatten(1)
            return self.linear1(f.relu(self.linear0(x)))

    class Basic(nn.Module):
        def __init__(self, cin, c, stride):
            super().__init__()
            self.conv2d0 = nn.Conv2d(cin, c, 3, stride, 1, bias=False)
            self.batch_norm0 = nn.BatchNorm2d(c)
            self.conv2d1 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
            self.batch_norm1 = nn.BatchNorm2d(c)
            self.project = stride != 1 or cin != c
            if self.project:
                self.conv2d2 = nn.Conv2d(cin, c, 1, stride, bias=False)
                self.batch_norm2 = nn.BatchNorm2d(c)

        def forward(self, x):
            f = torch.nn.functional
            y = self.batch_norm1(self.conv2d1(f.relu(self.batch_norm0(self.conv2d0(x)))))
            short = self.batch_norm2(self.conv2d2(x)) if self.project else x
            return f.relu(y + short)

    class Stage(nn.Module):
        def __init__(self, cin, c, n, stride):
            super().__init__()
            for i in range(n):
                setattr(self, f"basic{i}", Basic(cin if i == 0 else c, c, stride if i == 0 else 1))
            self.n = n

        def forward(self, x):
            for i in range(self.n):
                x = getattr(self, f"basic{i}")(x)
            return x

    class ResNet(nn.Module):
        """A basic-block ResNet: the stem (`k`×`k` convolution at stride `s`,
        an optional 3×3 max-pool), one stage per width, global average
        pooling and a linear head, named as kiln names the zoo's layers."""

        def __init__(self, k, s, pool, widths, blocks, classes):
            super().__init__()
            self.conv2d0 = nn.Conv2d(3, widths[0], k, s, k // 2, bias=False)
            self.batch_norm0 = nn.BatchNorm2d(widths[0])
            self.pool = pool
            cin = widths[0]
            for i, c in enumerate(widths):
                setattr(self, f"stage{i}", Stage(cin, c, blocks, 1 if i == 0 else 2))
                cin = c
            self.stages = len(widths)
            self.linear0 = nn.Linear(cin, classes)

        def forward(self, x):
            f = torch.nn.functional
            x = f.relu(self.batch_norm0(self.conv2d0(x)))
            if self.pool:
                x = f.max_pool2d(x, 3, 2, 1)
            for i in range(self.stages):
                x = getattr(self, f"stage{i}")(x)
            return self.linear0(x.mean((2, 3)))

    def resnet18():
        return ResNet(7, 2, True, [64, 128, 256, 512], 2, 1000)

    def resnet18_cifar():
        return ResNet(3, 1, False, [64, 128, 256, 512], 2, 10)

    def resnet20():
        return ResNet(3, 1, False, [16, 32, 64], 3, 10)

    return {"lenet5": LeNet5, "resnet18": resnet18, "resnet18_cifar": resnet18_cifar, "resnet20": resnet20}


def load_torch(model, weights):
    import torch

    net = torch_models()[model]()
    state = {k: torch.from_numpy(v) for k, v in load_file(weights).items()}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise RuntimeError(f"{weights}: missing {missing}, unexpected {unexpected}")
    return net.eval()


# ---- JAX, the same networks as functions of the kiln parameters -------------


def jax_forward(model, params):
    """The jitted forward pass of `model` with `params` (numpy arrays)."""
    import jax
    import jax.numpy as jnp

    return jax.jit(jax_forward_raw(model, {k: jnp.asarray(v) for k, v in params.items()}))


def jax_forward_raw(model, p, train=False):
    """The forward pass of `model` as a function of the input, closing over
    the parameters `p` (JAX arrays or tracers); with `train`, batch norm
    normalizes with the batch statistics (biased variance), as in training."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    def conv(x, w, stride=1, pad=0):
        return lax.conv_general_dilated(
            x, w, (stride, stride), [(pad, pad), (pad, pad)],
            dimension_numbers=("NCHW", "OIHW", "NCHW"))

    def bn(x, name):
        if train:
            mean = jnp.mean(x, axis=(0, 2, 3))
            var = jnp.mean(jnp.square(x - mean[None, :, None, None]), axis=(0, 2, 3))
        else:
            mean, var = p[name + ".running_mean"], p[name + ".running_var"]
        scale = p[name + ".weight"] / jnp.sqrt(var + 1e-5)
        shift = p[name + ".bias"] - mean * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]

    def maxpool(x, k, s, pad=0):
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, k, k), (1, 1, s, s),
                                 [(0, 0), (0, 0), (pad, pad), (pad, pad)])

    relu = jax.nn.relu

    def lenet(x):
        for i in range(3):
            x = relu(conv(x, p[f"conv2d{i}.weight"]) + p[f"conv2d{i}.bias"][None, :, None, None])
            if i < 2:
                x = maxpool(x, 2, 2)
        x = x.reshape(x.shape[0], -1)
        x = relu(x @ p["linear0.weight"].T + p["linear0.bias"])
        return x @ p["linear1.weight"].T + p["linear1.bias"]

    def basic(x, pre, stride):
        y = relu(bn(conv(x, p[pre + "conv2d0.weight"], stride, 1), pre + "batch_norm0"))
        y = bn(conv(y, p[pre + "conv2d1.weight"], 1, 1), pre + "batch_norm1")
        if pre + "conv2d2.weight" in p:
            x = bn(conv(x, p[pre + "conv2d2.weight"], stride), pre + "batch_norm2")
        return relu(y + x)

    def resnet(stem_stride, stem_pad, pool, stages, blocks):
        def f(x):
            x = relu(bn(conv(x, p["conv2d0.weight"], stem_stride, stem_pad), "batch_norm0"))
            if pool:
                x = maxpool(x, 3, 2, 1)
            for s in range(stages):
                for b in range(blocks):
                    x = basic(x, f"stage{s}.basic{b}.", 2 if s > 0 and b == 0 else 1)
            return x.mean((2, 3)) @ p["linear0.weight"].T + p["linear0.bias"]
        return f

    return {
        "lenet5": lenet,
        "resnet18": resnet(2, 3, True, 4, 2),
        "resnet18_cifar": resnet(1, 1, False, 4, 2),
        "resnet20": resnet(1, 1, False, 3, 3),
    }[model]


# ---- the peers ---------------------------------------------------------------


def run_peer(name, make, want, warmup, runs):
    """`make()` returns a zero-argument callable giving the output."""
    try:
        fn = make()
        err = error_of(fn(), want)
        out = {"max_rel_error": err, "agrees": err <= TOLERANCE}
        out["wall_seconds"], out["cpu_seconds"] = timed(fn, warmup, runs)
        return out
    except Exception as e:  # A peer that fails is reported, not fatal.
        traceback.print_exc(file=sys.stderr)
        return {"error": f"{type(e).__name__}: {e}".splitlines()[0][:300]}


def run_train_peers(directory, workload, model, threads, warmup, runs, meta):
    """`model`'s training step (SGD momentum 0.9, cross-entropy, labels
    `i % 10`, batch norm on batch statistics) on kiln's initial weights: the
    first step's loss and updated weights (and, for PyTorch, batch norm's
    running statistics) are checked against kiln's, then steps are timed."""
    import torch

    torch.set_num_threads(threads)
    lr = meta["lr"]
    x = np.fromfile(os.path.join(directory, workload + ".x.f32"), dtype="<f4").reshape(meta["input_shape"])
    y = (np.arange(x.shape[0]) % 10).astype(np.int64)
    init = load_file(os.path.join(directory, model + "_train.safetensors"))
    after = load_file(os.path.join(directory, model + "_train_step1.safetensors"))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def is_buffer(name):
        return name.endswith(".running_mean") or name.endswith(".running_var")

    def step_error(loss, params):
        """The worst error of the loss and of every tensor in `params`
        against kiln's after its first step."""
        err = abs(float(loss) - meta["loss"]) / max(1.0, abs(meta["loss"]))
        for k, v in params.items():
            err = max(err, error_of(v, after[k]))
        return err

    def torch_peer(compile_it):
        def make():
            net = load_torch(model, os.path.join(directory, model + "_train.safetensors")).train()
            model = torch.compile(net) if compile_it else net
            opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)

            def step():
                opt.zero_grad(set_to_none=True)
                loss = torch.nn.functional.cross_entropy(model(xt), yt)
                loss.backward()
                opt.step()
                return loss.item()
            loss = step()
            named = {k: v.detach().numpy() for k, v in net.named_parameters()}
            named.update({k: v.numpy() for k, v in net.named_buffers() if is_buffer(k)})
            return step_error(loss, named), step
        return make

    def jax_peer():
        import jax
        import jax.numpy as jnp

        def loss_fn(params, xb, yb):
            logits = jax_forward_raw(model, {**params, **buffers}, train=True)(xb)
            logp = jax.nn.log_softmax(logits)
            return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))

        @jax.jit
        def train(params, vel, xb, yb):
            loss, g = jax.value_and_grad(loss_fn)(params, xb, yb)
            vel = jax.tree_util.tree_map(lambda v, gi: 0.9 * v + gi, vel, g)
            params = jax.tree_util.tree_map(lambda p, v: p - lr * v, params, vel)
            return params, vel, loss

        # Running statistics are not learned: they stay out of the gradient
        # (JAX's functional batch norm does not update them, so they are not
        # checked).
        buffers = {k: jnp.asarray(v) for k, v in init.items() if is_buffer(k)}
        state = {"p": {k: jnp.asarray(v) for k, v in init.items() if not is_buffer(k)}}
        state["v"] = jax.tree_util.tree_map(jnp.zeros_like, state["p"])
        xb, yb = jnp.asarray(x), jnp.asarray(y.astype(np.int32))

        def step():
            state["p"], state["v"], loss = train(state["p"], state["v"], xb, yb)
            return float(jax.block_until_ready(loss))
        loss = step()
        return step_error(loss, {k: np.asarray(v) for k, v in state["p"].items()}), step

    result = {"workload": workload, "threads": threads}
    for name, make in [("torch", torch_peer(False)), ("jax", jax_peer), ("torch_compile", torch_peer(True))]:
        try:
            err, step = make()
            out = {"max_rel_error": err, "agrees": err <= TOLERANCE}
            out["wall_seconds"], out["cpu_seconds"] = timed(step, warmup, runs)
            result[name] = out
        except Exception as e:  # A peer that fails is reported, not fatal.
            traceback.print_exc(file=sys.stderr)
            result[name] = {"error": f"{type(e).__name__}: {e}".splitlines()[0][:300]}
    print(json.dumps(result))


def main():
    directory, workload, threads, warmup, runs = sys.argv[1:6]
    threads, warmup, runs = int(threads), int(warmup), int(runs)
    model = workload.split("_train")[0].split("_infer")[0].replace("lenet", "lenet5")
    weights = os.path.join(directory, model + ".safetensors")
    meta = json.load(open(os.path.join(directory, workload + ".json")))
    if "train" in workload:
        return run_train_peers(directory, workload, model, threads, warmup, runs, meta)
    x = np.fromfile(os.path.join(directory, workload + ".x.f32"), dtype="<f4").reshape(meta["input_shape"])
    want = np.fromfile(os.path.join(directory, workload + ".y.f32"), dtype="<f4").reshape(meta["output_shape"])

    import torch

    torch.set_num_threads(threads)
    xt = torch.from_numpy(x)
    result = {"workload": workload, "threads": threads}

    def eager():
        net = load_torch(model, weights)

        def f():
            with torch.inference_mode():
                return net(xt).numpy()
        return f

    def compiled():
        net = torch.compile(load_torch(model, weights))

        def f():
            with torch.inference_mode():
                return net(xt).numpy()
        return f

    def ort():
        import onnxruntime as rt

        net = load_torch(model, weights)
        path = os.path.join(directory, f"{model}_b{x.shape[0]}.onnx")
        torch.onnx.export(net, (xt,), path, input_names=["x"], output_names=["y"], dynamo=False)
        opts = rt.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = rt.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        return lambda: sess.run(None, {"x": x})[0]

    def jax_peer():
        import jax

        f = jax_forward(model, load_file(weights))
        return lambda: np.asarray(jax.block_until_ready(f(x)))

    for name, make in [("torch", eager), ("ort", ort), ("jax", jax_peer), ("torch_compile", compiled)]:
        result[name] = run_peer(name, make, want, warmup, runs)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
