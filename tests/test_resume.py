"""A fit stopped and resumed from its checkpoint ends bit for bit where an uninterrupted one does.

Every rule and schedule (TP's alternating schedule stopped inside a phase, by whole epochs and by
steps), a population of several members with one pruned and dropped, stops inside an epoch (the
preemption path) and at an epoch end (a worker killed after its last checkpoint). Compared: every
member's curve (loss, train, validation and test error per epoch) and the rule's whole state
after the last epoch (net, rule state, Adam moments and steps, counters, noise streams).
"""

from __future__ import annotations

import pytest
import torch

from bioscale import resume, rules
from bioscale.errors import Diverged
from bioscale.history import EpochResult
from bioscale.resume import Checkpointing, FitState, Preempted
from bioscale.run_config import RunConfig
from bioscale.train import build, fit

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARCH, BATCH, EPOCHS, DATA_SEED = "2*fc:12", 64, 4, 7


def labels() -> list[tuple[str, str | None]]:
    out = []
    for name in rules.names():
        for schedule in rules.get(name).schedules or (None,):
            out.append((name, schedule))
    return out


class StopAfter:
    """Calls resume.request_stop() after `steps` minibatch updates (what the preemption signal handler does)."""

    def __init__(self, rule: rules.Rule, steps: int) -> None:
        self.rule, self.steps, self.done = rule, steps, 0
        self.inner = rule.step
        rule.step = self

    def __call__(self, x, y):
        out = self.inner(x, y)
        self.done += 1
        if self.done == self.steps:
            resume.request_stop()
        return out


class Killed(Exception):
    """A worker that died after the checkpoint of an epoch end."""


def make(name: str, settings: dict, seeds=(0,)):
    return build(RunConfig(rule=name, settings=settings, arch=ARCH, seeds=seeds, device="cpu"))


def config(epochs: int) -> RunConfig:
    """What `fit` reads: the epochs, the batch size, the data seed, no chance patience."""
    return RunConfig(rule="bp", epochs=epochs, batch_size=BATCH, data_seed=DATA_SEED, chance_patience=0)


def curve(results):
    return [[(r.epoch, r.loss, r.train_error, r.val_error, r.test_error) for r in m.history] for m in results]


def assert_same_state(a: rules.Rule, b: rules.Rule) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        if isinstance(sa[key], torch.Tensor):
            assert torch.equal(sa[key], sb[key]), key
        elif key.endswith("_extra_state") and "noise" in sa[key]:
            assert sa[key]["counters"] == sb[key]["counters"], key
            assert all(torch.equal(x, y) for x, y in zip(sa[key]["noise"], sb[key]["noise"], strict=True)), key
        else:
            assert sa[key] == sb[key], key


def settings_of(name: str, schedule: str | None, period: int = 0) -> dict:
    out = {}
    if schedule:
        out["schedule"] = schedule
        if schedule == "alternating":
            out["alternation_period"] = period
    return out


@pytest.fixture(autouse=True)
def no_stop_request():
    resume.clear_stop()
    yield
    resume.clear_stop()


@pytest.mark.parametrize("name,schedule", labels(), ids=lambda v: str(v))
def test_a_fit_preempted_inside_an_epoch_resumes_bit_for_bit(name, schedule, tmp_path):
    settings = settings_of(name, schedule)
    data, rule = make(name, settings)
    steps = -(-len(data.train_x) // BATCH)
    reference = fit(rule, data, config(EPOCHS))

    ckpt = Checkpointing(tmp_path / "c.pt", every=1, meta={"rule": name})
    data, first = make(name, settings)
    StopAfter(first, steps + steps // 2)  # inside epoch 2: the forward phase of whole-epoch alternation
    with pytest.raises(Preempted) as stopped:
        fit(first, data, config(EPOCHS), checkpoint=ckpt)
    assert (stopped.value.epoch, stopped.value.step) == (1, steps // 2)
    resume.clear_stop()
    seen = []
    again = Checkpointing(tmp_path / "c.pt", every=1, meta={"rule": name}, on_resume=lambda e, h: seen.append((e, curve(h))))
    data, second = make(name, settings)
    resumed = fit(second, data, config(EPOCHS), checkpoint=again)
    assert again.resumed_from == 1 and seen == [(1, [curve(reference)[0][:1]])]
    assert curve(resumed) == curve(reference)
    _, alone = make(name, settings)
    fit(alone, data, config(EPOCHS))
    assert_same_state(second, alone)


@pytest.mark.parametrize("name", [n for n, s in labels() if s == "alternating"])
def test_alternation_by_steps_stopped_mid_phase_resumes_bit_for_bit(name, tmp_path):
    settings = settings_of(name, "alternating", period=4)
    data, rule = make(name, settings)
    reference = fit(rule, data, config(3))
    data, first = make(name, settings)
    StopAfter(first, 25)  # steps 24..27 are one phase: stopped after its second step
    with pytest.raises(Preempted):
        fit(first, data, config(3), checkpoint=Checkpointing(tmp_path / "c.pt"))
    assert first.steps == 25 and first.phase == "inverse"  # turn 6 is steps 24..27: stopped inside it
    resume.clear_stop()
    data, second = make(name, settings)
    resumed = fit(second, data, config(3), checkpoint=Checkpointing(tmp_path / "c.pt"))
    assert curve(resumed) == curve(reference)


@pytest.mark.parametrize("name,schedule", [("bp", None), ("dtp", "alternating"), ("wm", None), ("sign-symmetry-brsf", None)])
def test_a_population_killed_after_an_epoch_checkpoint_resumes_bit_for_bit(name, schedule, tmp_path):
    """Three members with their own learning rates; member 1 is pruned after epoch 1 and dropped; killed in epoch 4."""
    seeds = (0, 5, 9)
    settings = {**settings_of(name, schedule), "forward_lr": [1e-3, 3e-3, 5e-4]}
    prune = lambda member, record: not (member == 1 and record.epoch == 1)  # noqa: E731
    data, rule = make(name, settings, seeds)
    reference = fit(rule, data, config(5), callback=prune, drop_stopped=True)
    assert reference[1].pruned_at == 1 and len(reference[0].history) == 5

    def killed_in_epoch_4(member, record):
        if record.epoch == 4:
            raise Killed
        return prune(member, record)

    ckpt = Checkpointing(tmp_path / "p.pt", every=1, meta={"seeds": list(seeds)})
    data, first = make(name, settings, seeds)
    with pytest.raises(Killed):
        fit(first, data, config(5), callback=killed_in_epoch_4,
            drop_stopped=True, checkpoint=ckpt)
    data, second = make(name, settings, seeds)
    ckpt = Checkpointing(tmp_path / "p.pt", every=1, meta={"seeds": list(seeds)})
    resumed = fit(second, data, config(5), callback=prune,
                  drop_stopped=True, checkpoint=ckpt)
    assert ckpt.resumed_from == 3 and second.members == 2
    assert curve(resumed) == curve(reference) and resumed[1].pruned_at == 1
    assert_same_state(second, rule)


def test_every_n_epochs_and_a_checkpoint_of_another_configuration(tmp_path, capsys):
    data, rule = make("fa", {})
    ckpt = Checkpointing(tmp_path / "c.pt", every=2, meta={"a": 1})

    def kill(member, record):
        if record.epoch == 4:
            raise Killed

    with pytest.raises(Killed):
        fit(rule, data, config(5), callback=kill, checkpoint=ckpt)
    data, rule = make("fa", {})
    other = Checkpointing(tmp_path / "c.pt", meta={"a": 2})
    fit(rule, data, config(1), checkpoint=other)
    assert other.resumed_from is None and "belongs to another configuration" in capsys.readouterr().err
    data, rule = make("fa", {})
    same = Checkpointing(tmp_path / "c.pt", every=2, meta={"a": 1})
    fit(rule, data, config(5), checkpoint=same)
    assert same.resumed_from == 2  # saved at 2 (and not at 3): every 2 epochs


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_corrupt_checkpoint_is_refused_in_one_line_and_the_fit_starts_afresh(damage, tmp_path, capsys):
    data, rule = make("bp", {})
    path = tmp_path / "c.pt"
    with pytest.raises(Killed):
        fit(rule, data, config(3), checkpoint=Checkpointing(path),
            callback=lambda m, r: (_ for _ in ()).throw(Killed) if r.epoch == 2 else None)
    whole = path.read_bytes()
    path.write_bytes({"truncated": whole[: len(whole) // 2], "garbage": b"\x00not a checkpoint" * 10, "empty": b""}[damage])
    data, rule = make("bp", {})
    ckpt = Checkpointing(path)
    results = fit(rule, data, config(3), checkpoint=ckpt)
    err = capsys.readouterr().err.strip().splitlines()
    assert ckpt.resumed_from is None and len(results[0].history) == 3
    assert len(err) == 1 and "is unreadable" in err[0] and "starts afresh" in err[0]
    data, rule = make("bp", {})
    assert curve(results) == curve(fit(rule, data, config(3)))


def test_a_save_is_atomic_and_leaves_no_temporary_file(tmp_path):
    resume.save(tmp_path / "x.pt", {"meta": {}, "value": torch.arange(3)})
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]
    assert torch.equal(resume.load(tmp_path / "x.pt", {})["value"], torch.arange(3))
    resume.remove(tmp_path / "x.pt")
    assert not list(tmp_path.iterdir())


def test_the_fit_state_reads_back_whole_from_its_checkpoint(tmp_path):
    data, rule = make("dtp", settings_of("dtp", "alternating"), seeds=(0, 1))
    state = FitState.start(rule.members, seed=DATA_SEED)
    current = state.open_epoch(rule.forward_steps, len(data.train_x), data.device)
    for i in range(3):
        state.add_loss(rule.step(data.train_x[current.order[i * BATCH:(i + 1) * BATCH]],
                                 data.train_y[current.order[i * BATCH:(i + 1) * BATCH]]))
    state.results[1].history.append(EpochResult(1, 0.5, 0.1, 0.2, 0.3, 1.0))
    state.results[0].diverged = Diverged("loss became nan in epoch 1", 1)
    state.running, state.bound = [1], [10.0, 20.0]
    resume.save(tmp_path / "s.pt", state.payload(rule, {"a": 1}))
    back = FitState.from_payload(resume.load(tmp_path / "s.pt", {"a": 1}), data.device)
    assert (back.epoch, back.step, back.slots, back.running, back.bound, back.at_chance) == (0, 3, [0, 1], [1], [10.0, 20.0], [0, 0])
    assert [r.to_record() for r in back.results] == [r.to_record() for r in state.results]
    assert torch.equal(back.first_loss, state.first_loss)
    assert torch.equal(back.current.order, current.order) and torch.equal(back.current.loss_sum, current.loss_sum)
    assert back.current.forward_steps == current.forward_steps and back.seconds > 0
    assert torch.equal(torch.randperm(9, generator=back.generator), torch.randperm(9, generator=state.generator))
    assert back.close_epoch(1e3, 2.3) == state.close_epoch(1e3, 2.3) and back.epoch == 1 and back.current is None
