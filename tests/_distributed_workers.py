"""Workers for tests/test_distributed.py: run in processes started by ``torch.multiprocessing.spawn``, joined
by a gloo process group through ``MASTER_ADDR``/``MASTER_PORT`` (the variables torchrun would set)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch

from robustprune.models import build_model
from robustprune.train.batches import FeatureTransform, TrainData
from robustprune.train.engine import TrainConfig
from robustprune.train.learners import build_learner
from robustprune.train.recorders import DynamicsRecorder

K, D, N = 4, 12, 100
#: rows of the subset trained on: N=100 minus 4, so the global batches of 16 leave a last batch of 4 (two
#: per rank), which neither world size merges into the previous one
SUBSET = list(range(2, N - 2))
# exact comparisons: no random augmentation (rc=0: no strong view) and no batch-level non-linearity (rb=0)
EXACT = {"sop": {"rc": 0.0, "rb": 0.0, "lr_u": 1.0, "lr_v": 10.0}, "elr": {}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tabular(seed: int = 0) -> TrainData:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(K, D, generator=g) * 2
    y = torch.arange(N) % K
    x = centers[y] + torch.randn(N, D, generator=g)
    noisy = torch.where(torch.rand(N, generator=g) < 0.3, torch.randint(0, K, (N,), generator=g), y)
    mean, std = x.mean(0).tolist(), x.std(0).tolist()
    return TrainData(x, noisy, K, FeatureTransform(mean, std), FeatureTransform(mean, std, noise_std=0.1),
                     FeatureTransform(mean, std))  # fmt: skip


def learner(name: str, batch_size: int, epochs: int = 2, *, batch_norm: bool = False, **options):
    def model_fn():
        return build_model("mlp", K, in_channels=D, image_size=1, hidden=(16,), batch_norm=batch_norm)

    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=0.05, min_lr=1e-3, device="cpu")
    return build_learner(name, model_fn, K, N, cfg, **options)


def train(name: str, batch_size: int, options: dict, epochs: int = 2, **kw) -> dict:
    """Fit a learner on SUBSET with a recorder; its per-sample state, parameters and record, on the CPU."""
    lr = learner(name, batch_size, epochs, **options)
    rec = DynamicsRecorder(probs=True)
    res = lr.fit(tabular(), SUBSET, callbacks=[rec], **kw)
    out = {f"state/{k}": v.detach().cpu().clone() for k, v in lr.sample_state().items()}
    out.update({f"param/{k}": v.detach().cpu().clone() for k, v in lr.model.state_dict().items()})
    out.update({f"rec/{k}": torch.as_tensor(v) for k, v in rec.arrays().items()})
    out["history"] = res.history
    out["resumed_from"] = res.resumed_from
    return out


def _join(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world), OMP_NUM_THREADS="1")  # fmt: skip
    torch.set_num_threads(1)
    from robustprune import distributed as dist

    dist.init("cpu")


def _refuse() -> None:
    raise ValueError("refused on rank 0")


def engine_worker(rank: int, world: int, port: int, out_dir: str, batch_size: int) -> None:
    """SOP+ and ELR (exact settings), DivideMix, a sharded prediction and a checkpoint, on every rank."""
    import torch.distributed as tdist

    from robustprune import distributed as dist
    from robustprune.train.inference import predict

    _join(rank, world, port)
    results = {name: train(name, batch_size, opts) for name, opts in EXACT.items()}
    # DivideMix with BatchNorm and its GMM split: every rank must end with the same split and parameters
    results["dividemix"] = train("dividemix", batch_size, {"warmup_epochs": 1, "batch_norm": True}, epochs=3)
    # sharded prediction, gathered in example order on every rank
    lr = learner("ce", batch_size)
    data = tabular()
    probs, feats = lr.predict(data.x, transform=data.clean)
    local, _ = predict(lr.model, data.x, transform=data.clean, shard=False)
    results["predict"] = {"sharded": probs, "local": local, "features": feats}
    # a checkpoint after one of two epochs, written by rank 0 alone, resumed later by one process
    ckpt = Path(out_dir) / "sop.ckpt"
    one = learner("sop", batch_size, 2, **EXACT["sop"])
    one.fit(tabular(), SUBSET, epochs=1, checkpoint=ckpt)
    results["world"] = (dist.world().rank, dist.world().size)
    # the collectives themselves: ragged and empty gathers, rank-0 work and its errors
    results["ragged"] = dist.all_gather_cat(torch.full((rank + 1, 2), float(rank)))
    results["empty"] = tuple(dist.all_gather_cat(torch.zeros(0, 3)).shape)
    results["flags"] = dist.all_gather_cat(torch.tensor([rank == 0, True]))
    results["to_main"] = dist.gather_cat(torch.full((2 - rank, 2), float(rank)))
    results["main_only"] = dist.main_only(lambda: "main")
    try:
        dist.on_main(_refuse)
    except ValueError as exc:
        results["error"] = str(exc)
    results.update(shared_graph_work())
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    tdist.barrier()
    tdist.destroy_process_group()


def graph_inputs():
    """Clustered embeddings and confident-ish probabilities: 3,000 x 16, several 512-row tiles."""
    g = torch.Generator().manual_seed(3)
    centers = torch.randn(30, 16, generator=g)
    x = centers[torch.randint(0, 30, (3000,), generator=g)] + 0.35 * torch.randn(3000, 16, generator=g)
    probs = torch.softmax(3 * torch.randn(3000, K, generator=g), 1)
    labels = torch.randint(0, K, (3000,), generator=g)
    return x.numpy(), probs.numpy(), labels.numpy()


def shared_graph_work() -> dict:
    """The τ-graph built by both ranks with a SharedBuild (rank 0 returns it, rank 1 hands off), a Prune4ReL
    selection run the same way, an edge budget overrun seen alike on both ranks, and a second build with the
    same SharedBuild (rank 0's alone: the other rank has left)."""
    import robustprune as rp
    from robustprune.selection.core.graph import BuildHandedOff, SharedBuild, rescaled_cosine_graph

    x, probs, labels = graph_inputs()
    out: dict = {}
    shared = SharedBuild()
    try:
        g = rescaled_cosine_graph(x, 0.95, device="cpu", block_size=512, shared=shared)
        out["shared_graph"] = (g.indptr, g.indices, g.weights, g.backend)
        # the build is spent: a second one is rank 0's alone (a collective here would wait for rank 1 forever)
        out["second_build"] = rescaled_cosine_graph(x, 0.95, device="cpu", block_size=512, shared=shared).backend
    except BuildHandedOff:
        out["shared_graph"] = "handed off"
    try:
        sel = rp.select("prune4rel", probs=probs, features=x, labels=labels, budget=600, tau=0.95, gain="exact",
                        block_size=512, device="cpu", shared_build=SharedBuild())  # fmt: skip
        out["shared_select"] = (sel.indices, sel.params["graph_backend"])
    except BuildHandedOff:
        out["shared_select"] = "handed off"
    try:
        rescaled_cosine_graph(x, 0.5, device="cpu", block_size=512, max_edges=1000, shared=SharedBuild())
    except ValueError as exc:
        out["shared_overflow"] = str(exc)
    return out


def peer_loss_worker(rank: int, world: int, port: int, out_dir: str, case: str) -> None:
    """Rank 0 waits in a collective for rank 1, which does not come: it sleeps past the 2-second timeout
    ("timeout"), ends without a word ("crash": ``os._exit``, as a SIGKILL would) or leaves on an error with
    its note ("error"). Rank 0 records the PeerFailure it gets, and what the next collective does."""
    import json
    import time

    os.environ["ROBUSTPRUNE_DIST_TIMEOUT"] = "2"
    _join(rank, world, port)
    from robustprune import distributed as dist

    out = Path(out_dir)
    if rank == 1:
        (out / "rank1.pid").write_text(str(os.getpid()))
        if case == "timeout":
            time.sleep(3)
            dist.leave("done")
        elif case == "crash":
            os._exit(0)
        else:
            dist.leave("error")
        return
    res: dict = {}
    for attempt in ("first", "again"):
        t0 = time.monotonic()
        try:
            dist.all_reduce(torch.ones(1))
            res[attempt] = None
        except dist.PeerFailure as exc:
            res[attempt] = {"message": str(exc), "ranks": list(exc.ranks), "seconds": time.monotonic() - t0}
    res["lost"] = dist.lost_peer()
    (out / "rank0.json").write_text(json.dumps(res))
    dist.leave("done")  # as the command line does: a broken group left alive may abort the exit
