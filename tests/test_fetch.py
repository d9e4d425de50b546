"""Multi-board fetch over real TCP on loopback: bit-exact, resume after cut links, kill and rerun, a
dead board, a board restart, NOT_SERVING, checksum mismatch, skipping complete files."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import zmq
from netfixtures import CutProxy, FakeBoard, free_port, make_store
from waiting import wait_for

from camctl.board.config import PublishConfig
from camctl.board.publish import Publisher
from camctl.common import protocol as p
from camctl.exc import FetchError, RemoteError
from camctl.ground import Client, download, fetch

CFG = PublishConfig(bind="tcp://127.0.0.1:*", events="tcp://127.0.0.1:*", chunk_kb=64,
                    thumbs_every=4)


def _serve(name: str, root: Path, cfg: PublishConfig = CFG, **kw) -> Publisher:
    pub = Publisher(FakeBoard(name, root, **kw), cfg)
    pub.start()
    return pub


def _same_tree(src: Path, dst: Path) -> int:
    """Every stored file arrived bit-exact; returns how many."""
    n = 0
    for f in src.rglob("*"):
        if f.is_file():
            got = dst / f.relative_to(src)
            assert got.read_bytes() == f.read_bytes(), got
            n += 1
    assert not list(dst.rglob("*.part"))
    return n


def test_two_boards_two_flights_bit_exact_then_skip(tmp_path: Path) -> None:
    roots = [tmp_path / "a", tmp_path / "b"]
    make_store(roots[0], flights=("f1", "f2"), seed=1)
    make_store(roots[1], flights=("f7",), cameras=("side",), segments=3, seed=2)
    pubs = [_serve("rig-a", roots[0]), _serve("rig-b", roots[1])]
    try:
        out = tmp_path / "out"
        urls = [x.router_endpoint for x in pubs]
        # default: each board's newest flight
        latest = fetch(urls, out, progress=False, give_up_after_s=20)
        assert latest.ok and latest.board("rig-a").fetched == 6, latest.summary()
        assert (out / "rig-a" / "f2").is_dir() and not (out / "rig-a" / "f1").exists()
        assert latest.board("rig-b").fetched == 5
        missing = fetch(urls[:1], out, progress=False, give_up_after_s=20, flight="f9")
        assert not missing.ok and "no flight 'f9' (it has: f1, f2)" in missing.summary()
        report = fetch(urls, out, progress=False, give_up_after_s=20, flight="all")
        assert report.ok, report.summary()
        assert report.board("rig-a").fetched == 6 and report.board("rig-a").skipped == 6
        assert _same_tree(roots[0], out / "rig-a") == 12
        assert _same_tree(roots[1], out / "rig-b") == report.board("rig-b").skipped == 5
        thumbs = sorted((out / "rig-a" / "f1" / "thumbs" / "down").glob("*.jpg"))
        assert [t.name for t in thumbs] == ["000000.jpg", "000004.jpg", "000008.jpg", "000012.jpg",
                                            "000016.jpg", "000020.jpg"]
        assert thumbs[0].read_bytes()[:2] == b"\xff\xd8"
        # what each preview was (sensor time, phase, segment), for labels before the full download
        infos = json.loads((out / "rig-a" / "f1" / "thumbs" / "index.json").read_text())
        assert sorted(k for k in infos if k.startswith("down/")) == [
            f"down/{t.stem}" for t in thumbs]
        first = infos["down/000000"]
        assert first["seq"] == 0 and isinstance(first["timestamp_ns"], int) and first["phase"]
        assert first["segment"].startswith("f1/down/")
        again = fetch(urls, out, progress=False, give_up_after_s=20, flight="all")
        assert again.ok and again.board("rig-a").skipped == 12 and again.board("rig-a").fetched == 0
        assert again.board("rig-a").bytes == 0  # nothing re-sent
    finally:
        for x in pubs:
            x.close()


def test_order_values_first(tmp_path: Path) -> None:
    root = tmp_path / "s"
    make_store(root, segments=4, frames=4)
    pub = _serve("rig-o", root)
    seen: list[str] = []
    orig = Client.start_file  # every download starts here (fetch_file and the pipelined board loop)

    def spy(self, seg, dest, **kw):
        seen.append(seg.path)
        return orig(self, seg, dest, **kw)

    try:
        Client.start_file = spy  # type: ignore[method-assign]
        report = fetch([pub.router_endpoint], tmp_path / "out", progress=False)
    finally:
        Client.start_file = orig  # type: ignore[method-assign]
        pub.close()
    assert report.ok
    listing = {s.path: s for s in _listing(root)}
    kinds = [listing[x].kind for x in seen]
    assert sorted(kinds[:2]) == ["events", "meta"] and set(kinds[2:]) == {"segment"}
    values = [listing[x].value for x in seen if listing[x].kind == "segment"]
    assert values == sorted(values, reverse=True) and values[0] == 4


def _listing(root: Path) -> list[p.SegmentInfo]:
    from camctl.board.publish import Catalog
    return Catalog(root).listing(None, set())


@pytest.mark.parametrize("seed", [1, 2])
def test_resume_after_cut_links(tmp_path: Path, seed: int) -> None:
    root = tmp_path / "s"
    files = make_store(root, segments=2, frames=8, pad_kb=96, seed=seed)
    total = sum(f.stat().st_size for f in files)
    pub = _serve("rig-c", root)
    port = int(pub.router_endpoint.rsplit(":", 1)[1])
    proxy = CutProxy(port, cuts=6, seed=seed, lo=50_000, hi=900_000)
    try:
        window, chunk_kb = 4, 64
        report = fetch([proxy.url], tmp_path / "out", progress=False, give_up_after_s=20,
                       window=window, chunk_kb=chunk_kb)
        assert report.ok, report.summary()
        assert proxy.cuts_done >= 3
        _same_tree(root, tmp_path / "out" / "rig-c")
        # no re-sending of what arrived: at most the in-flight window is lost per cut
        assert report.board("rig-c").bytes <= total + proxy.cuts_done * window * chunk_kb * 1024
    finally:
        proxy.close()
        pub.close()


def test_kill_fetch_process_and_rerun(tmp_path: Path) -> None:
    root = tmp_path / "s"
    files = make_store(root, cameras=("down",), segments=2, frames=10, pad_kb=200)
    pub = _serve("rig-k", root)
    port = int(pub.router_endpoint.rsplit(":", 1)[1])
    proxy = CutProxy(port, hold_after=1_200_000)  # the link stalls after ~1.2 MB until released
    out = tmp_path / "out"
    code = (f"from pathlib import Path; from camctl.ground import fetch; "
            f"fetch([{proxy.url!r}], Path({str(out)!r}), progress=False, "
            "give_up_after_s=60, chunk_kb=64)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent.parent),
                                                       os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        wait_for(lambda: proc.poll() is not None or any(f.stat().st_size > 0
                                                         for f in out.rglob("*.part")),
                 "the fetch process to write into a .part")
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        parts = {f: f.stat().st_size for f in out.rglob("*.part")}
        assert parts and all(s > 0 for s in parts.values())
        proxy.release()
        report = fetch([pub.router_endpoint], out, progress=False, give_up_after_s=20, chunk_kb=64)
        assert report.ok, report.summary()
        _same_tree(root, out / "rig-k")
        total = sum(f.stat().st_size for f in files)
        assert report.board("rig-k").bytes <= total - sum(parts.values()) + 64 * 1024
    finally:
        if proc.poll() is None:
            proc.kill()
        proxy.release()
        proxy.close()
        pub.close()


def test_dead_board_named_live_board_complete(tmp_path: Path) -> None:
    root = tmp_path / "s"
    make_store(root, segments=1)
    pub = _serve("rig-live", root)
    dead = f"tcp://127.0.0.1:{free_port()}"
    try:
        report = fetch([pub.router_endpoint, dead], tmp_path / "out", progress=False,
                       give_up_after_s=2)
    finally:
        pub.close()
    assert not report.ok
    assert report.board("rig-live").ok
    bad = report.board(dead)
    assert bad.unreachable and not bad.ok and bad.errors
    assert dead in report.summary() and "UNREACHABLE" in report.summary()
    _same_tree(root, tmp_path / "out" / "rig-live")


def test_board_restarts_mid_fetch(tmp_path: Path) -> None:
    root = tmp_path / "s"
    make_store(root, cameras=("down",), segments=2, frames=8, pad_kb=128)
    port = free_port()
    cfg = PublishConfig(bind=f"tcp://127.0.0.1:{port}", events="tcp://127.0.0.1:*", chunk_kb=64)
    pub = _serve("rig-r", root, cfg)
    restarted: list[Publisher] = []
    orig = download.receive
    calls = {"n": 0}

    def restart() -> bool:
        try:
            restarted.append(_serve("rig-r", root, cfg))
        except zmq.ZMQError:  # the closed board's socket still holds the port
            return False
        return True

    def crash_once(client, seg, part, **kw):
        calls["n"] += 1
        # a segment: the board process dies and a new one comes up on the same port
        if calls["n"] == 3:
            pub.close()
            wait_for(restart, "the port to come free for the restarted board", interval_s=0.05)
        return orig(client, seg, part, **kw)

    try:
        download.receive = crash_once
        report = fetch([f"tcp://127.0.0.1:{port}"], tmp_path / "out", progress=False,
                       give_up_after_s=20)
    finally:
        download.receive = orig
        pub.close()
        for x in restarted:
            x.close()
    assert restarted and report.ok, report.summary()
    _same_tree(root, tmp_path / "out" / "rig-r")


def test_not_serving(tmp_path: Path) -> None:
    root = tmp_path / "s"
    make_store(root, segments=1)
    pub = _serve("rig-n", root, serving=False)
    try:
        with Client(pub.router_endpoint, timeout_s=10) as c:
            assert c.hello().serving is False
            for call in (c.list, lambda: c.thumbs("f1"),
                         lambda: c.fetch_file(_listing(root)[0], tmp_path / "x")):
                with pytest.raises(RemoteError) as info:
                    call()
                assert info.value.code == p.E_NOT_SERVING
            assert c.status()["phase"] == "ARMED"  # status still answers
            with pytest.raises(RemoteError) as info:
                c.command("arm")
            assert info.value.code == p.E_REFUSED and "ARMED" in info.value.message
        report = fetch([pub.router_endpoint], tmp_path / "out", progress=False, give_up_after_s=2)
        assert not report.ok and "NOT_SERVING" in report.summary()
    finally:
        pub.close()


def test_checksum_mismatch_refetched_once_then_reported(tmp_path: Path) -> None:
    root = tmp_path / "s"
    make_store(root, cameras=("down",), segments=1, frames=4)
    pub = _serve("rig-x", root)
    try:
        seg = next(s for s in _listing(root) if s.kind == "segment")
        bad = p.SegmentInfo(**{**seg.to_json(), "sha256": hashlib.sha256(b"other").hexdigest()})
        with Client(pub.router_endpoint, timeout_s=10) as c:
            c.hello()
            with pytest.raises(Exception, match="sha256") as info:
                c.fetch_file(bad, tmp_path / "seg.mcap")
            assert (not (tmp_path / "seg.mcap").exists()
                    and not (tmp_path / "seg.mcap.part").exists())
            assert c.bytes_received == 2 * seg.size  # fetched, deleted, fetched once more
            assert isinstance(info.value, FetchError)
            # a stale .part that is corrupt is caught by the checksum and replaced
            (tmp_path / "ok.mcap.part").write_bytes(b"\x00" * 100)
            assert c.fetch_file(seg, tmp_path / "ok.mcap") == "fetched"
            assert (tmp_path / "ok.mcap").read_bytes() == (root / seg.path).read_bytes()
    finally:
        pub.close()


def test_cli_helpers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from camctl.common.keys import client_curve, create_keys
    from camctl.ground import print_report
    from camctl.ground.views import ls_local, ls_remote, status_many

    made = create_keys(tmp_path / "k", clients=2)
    assert (tmp_path / "k" / "board" / "readers" / "client-2.key") in made
    assert client_curve(keys_dir=tmp_path / "k" / "ground").server_public
    root = tmp_path / "s"
    make_store(root, segments=1, frames=2)
    pub = _serve("rig-cli", root)
    try:
        assert status_many([pub.router_endpoint], json_out=True, timeout_s=10) == 0
        import json
        assert json.loads(capsys.readouterr().out)["board"] == "rig-cli"
        assert ls_remote([pub.router_endpoint], json_out=True, timeout_s=10) == 0
        assert "rig-cli" in capsys.readouterr().out
        report = fetch([pub.router_endpoint], tmp_path / "out", progress=True)
        print_report(report)
        assert "fetch: OK" in capsys.readouterr().out
        assert ls_local(tmp_path / "out", json_out=True) == 0
        assert "rig-cli" in capsys.readouterr().out
    finally:
        pub.close()
