"""Raw <-> JSON conversion (decode(encode(s)) == s), seeding, merge and prune."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
from fakearch import FAKE

from fuzz import corpus
from fuzz.decode import RAW, decode
from fuzz.encode import EncodeError, _canonical, encode
from harness.kernel.constants import VM_MAYREAD, VM_READ
from harness.kernel.mm import FileBacking, Pte
from harness.scenario import Scenario, TaskSpec, VmaSpec, validate_layout


def registered():
    from arches import arch_names, get_arch
    return [get_arch(n) for n in arch_names()]


CORPUS = sorted(Path(__file__).resolve().parent.parent.glob("corpus/*/*/*.json"))  # seeds, crashes


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}/{p.name}")
def test_every_seed_and_crash_reproducer_round_trips(path):
    from arches import get_arch
    s = Scenario.loads(path.read_text())  # a crash file's "comment" is not part of the Scenario
    arch = get_arch(s.arch)
    assert decode(encode(s, arch), arch) == _canonical(s)


def test_the_corpus_is_there():
    kinds = {p.parent.parent.name for p in CORPUS}
    assert {"seeds", "crashes"} <= kinds and len(CORPUS) > 100


def _random_inputs(seed: str, n: int):
    """Random byte strings, half of them rich in escape bytes so explicit values get exercised."""
    rnd = random.Random(seed)
    for i in range(n):
        size = rnd.randrange(160)
        if i % 2:
            yield rnd.randbytes(size)
        else:
            yield bytes(rnd.choice((rnd.randrange(256), rnd.randrange(0xF0, 256), 0, 1, RAW))
                        for _ in range(size))


@pytest.mark.parametrize("arch", [FAKE, *registered()], ids=lambda a: a.name)
def test_decode_encode_decode_is_a_fixed_point(arch):
    for data in _random_inputs(f"fixed-point:{arch.name}", 2500):
        s = decode(data, arch)
        assert decode(encode(s, arch), arch) == s, data.hex()


@pytest.mark.parametrize("arch", [FAKE, *registered()], ids=lambda a: a.name)
def test_decoding_always_gives_a_valid_scenario(arch):
    from harness.diff import check_scenario
    for data in _random_inputs(f"valid:{arch.name}", 2500):
        s = decode(data, arch)  # never raises
        check_scenario(s, arch)
        validate_layout(s)
        assert Scenario.loads(s.dumps()) == s, data.hex()  # findings store scenarios as JSON


def test_pte_order_does_not_matter_but_meaning_does():
    s = decode(bytes(range(7, 90)), FAKE)
    assert len(s.ptes) > 1
    assert decode(encode(replace(s, ptes=s.ptes[::-1]), FAKE), FAKE) == s


def test_explicit_values_are_expressed_exactly():
    # Everything v1 could not express: far and unaligned placement, raw flags, partial cpu,
    # explicit VM_FAULT words with hwpoison index bits, kernel addresses, any stack_rlimit.
    s = Scenario("fake64", "user", "ld1", 0xFFFF_8000_0000_1233, 0x1, (
        VmaSpec(0x0, 0x1000, VM_READ | VM_MAYREAD, FileBacking(0x123, "absent"), 0x77),
        VmaSpec(0x7000_0000_0000, 0x7000_0010_0000, 0),
    ), ((0x5000, Pte("swap", rsvd=True)), (0x3000, Pte("hwpoison")), (0xDEAD_0000_0000_0000, Pte())),
        TaskSpec(stack_rlimit=12345, extable=True), (("smap", False),), (0x5012, None, 1 << 63))
    data = encode(s, FAKE)
    assert decode(data, FAKE) == replace(s, ptes=tuple(sorted(s.ptes, key=lambda p: p[0])))
    assert decode(encode(replace(s, cpu=()), FAKE), FAKE).cpu == ()  # absent is not false


@pytest.mark.parametrize("change, why", [
    (lambda s: replace(s, vmas=tuple(VmaSpec(0x10000000 + 2 * i * 4096, 0x10001000 + 2 * i * 4096, VM_READ)
                                     for i in range(256))), "at most 255"),
    (lambda s: replace(s, inject=(None,) * 256), "at most 255"),
    (lambda s: replace(s, ptes=tuple((0x20000000 + i * 4096, Pte()) for i in range(256))), "at most 255"),
    (lambda s: replace(s, task=TaskSpec(stack_rlimit=1 << 64)), "stack_rlimit"),
    (lambda s: replace(s, inject=(-1,)), "inject"),
    (lambda s: replace(s, cpu=(("nx", True), ("nx", False))), "twice"),
    (lambda s: replace(s, ptes=((0x20000000, Pte("bogus")),)), "state"),
    (lambda s: replace(s, vmas=(VmaSpec(0x10000000, 0x10002000, VM_READ),
                                VmaSpec(0x10001000, 0x10003000, 0))), "not a valid scenario"),
])
def test_inexpressible_scenarios_are_refused_with_a_reason(change, why):
    s = decode(b"", FAKE)
    with pytest.raises(EncodeError, match=why) as e:
        encode(change(s), FAKE)
    assert "\n" not in str(e.value)


def test_cli_to_raw_says_what_cannot_be_expressed(tmp_path, capsys):
    from fuzz.cli import main
    from arches import arch_names, get_arch
    arch = get_arch(arch_names()[0])
    s = decode(b"\x05\x01", arch)
    f = tmp_path / "s.json"
    f.write_text(replace(s, inject=(None,) * 256).dumps())
    assert main(["corpus", "to-raw", str(f), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "cannot be expressed by the decoder" in err and len(err.strip().splitlines()) == 1
    good = tmp_path / "g.json"
    good.write_text(s.dumps())
    assert main(["corpus", "to-raw", str(good), "-o", str(tmp_path / "o")]) == 0
    [raw] = list((tmp_path / "o").iterdir())
    assert main(["corpus", "to-json", str(raw), "--arch", arch.name, "-o", str(tmp_path / "j")]) == 0
    assert Scenario.loads((tmp_path / "j" / (raw.name + ".json")).read_text()) == s


def test_seed_corpus_writes_expressible_seeds_once(tmp_path, monkeypatch):
    from arches import arch_names, get_arch
    arch = get_arch(arch_names()[0])
    seeds = tmp_path / "seeds" / arch.name
    seeds.mkdir(parents=True)
    (seeds / "a.json").write_text(decode(b"\x07\x02\x03", arch).dumps())
    (seeds / "bad.json").write_text("{}")
    out = tmp_path / "corpus"
    out.mkdir()
    n, skipped = corpus.seed_corpus(arch.name, out, tmp_path / "seeds")
    assert n == 1 and len(skipped) == 1 and skipped[0].startswith("bad.json")
    assert corpus.seed_corpus(arch.name, out, tmp_path / "seeds")[0] == 0  # already there


def test_prune_failure_leaves_the_corpus_as_it_was(tmp_path, monkeypatch):
    d = tmp_path / "c"
    d.mkdir()
    (d / "x").write_bytes(b"123")

    def broken(*a, **k):
        raise corpus.CorpusError("libFuzzer merge failed")

    monkeypatch.setattr(corpus, "merge", broken)
    with pytest.raises(corpus.CorpusError):
        corpus.prune(d, "x86_64")
    assert [p.name for p in tmp_path.iterdir()] == ["c"] and (d / "x").read_bytes() == b"123"


def test_merge_and_prune_through_libfuzzer(tmp_path):
    pytest.importorskip("atheris")
    arches = [a for a in registered() if a.name == "x86_64"]
    if not arches:
        pytest.skip("x86_64 not loadable")
    src = tmp_path / "in"
    src.mkdir()
    rnd = random.Random(2)
    for i in range(30):
        (src / f"i{i}").write_bytes(bytes(rnd.randrange(256) for _ in range(60)))
    r = corpus.merge(tmp_path / "out", [src], "x86_64")
    assert r.offered == 30 and 0 < r.after <= 30
    p = corpus.prune(src, "x86_64")
    assert 0 < p.after <= 30 and len(list(src.iterdir())) == p.after
    assert sorted(q.name for q in tmp_path.iterdir()) == ["in", "out"]
