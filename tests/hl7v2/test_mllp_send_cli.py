"""``bridge send``: messages from files to an MLLP listener, each ACK printed, exit codes 0/1/2."""

from __future__ import annotations

import socket

import pytest

from bridge.cli import build_parser
from bridge.plugins.hl7v2.mllp_send import InputError, split_messages

from tests.hl7v2.conftest_mllp import adt, channel, listening, make_pki, mllp_plugins


def bridge_send(argv: list[str]) -> int:
    """Run ``bridge send`` through the real CLI parser, with the plugin's command registered."""
    args = build_parser(mllp_plugins()).parse_args(["send", *argv])
    return args.func(args)


def lf_file(path, *messages: bytes, separator: bytes = b"\n\n") -> str:
    path.write_bytes(separator.join(m.replace(b"\r", b"\n") for m in messages))
    return str(path)


def test_sends_every_message_of_every_file_and_prints_each_ack(bridge_engine, tmp_path, capsys):
    first = lf_file(tmp_path / "a.hl7", adt("F1"), adt("F2"))
    second = tmp_path / "b.hl7"
    second.write_bytes(adt("F3").replace(b"\r", b"\r\n"))
    with listening(bridge_engine, {"channels": {"adt": channel()}}) as (engine, source):
        code = bridge_send(["--to", f"mllp://127.0.0.1:{source.port}", first, str(second)])
        raws = [engine.store.get_raw(m.id) for m in engine.store.search(channel="adt")]
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out == [f"{first} #1 (F1): AA F1", f"{first} #2 (F2): AA F2", f"{second} #1 (F3): AA F3"]
    assert sorted(raws) == sorted([adt("F1"), adt("F2"), adt("F3")])  # LF/CRLF turned back into CR


def test_any_rejected_message_makes_exit_1(bridge_engine, tmp_path, capsys):
    path = lf_file(tmp_path / "mixed.hl7", adt("OK1"), adt("BIG", filler=3000), adt("OK2"), separator=b"\n")
    with listening(bridge_engine, {"channels": {"adt": channel(max_bytes=1000)}}) as (_, source):
        code = bridge_send(["--to", f"mllp://127.0.0.1:{source.port}", path])
    captured = capsys.readouterr()
    assert code == 1
    lines = captured.out.splitlines()
    assert lines[0].endswith("AA OK1") and lines[2].endswith("AA OK2")
    assert lines[1].startswith(f"{path} #2 (BIG): AR BIG ") and "exceeds the limit of 1000 bytes" in lines[1]
    assert "1 of 3 message(s) not accepted" in captured.err


def test_nobody_listening_is_exit_1_with_a_clear_line(tmp_path, capsys):
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    path = lf_file(tmp_path / "one.hl7", adt("N1"))
    assert bridge_send(["--to", f"mllp://127.0.0.1:{port}", "--connect-timeout", "2", path]) == 1
    assert f"ERROR cannot connect to 127.0.0.1:{port}" in capsys.readouterr().out


@pytest.mark.parametrize("content, problem", [
    (None, "cannot read"),
    (b"", "no HL7v2 message (the file is empty)"),
    (b"\n\n  \n", "no HL7v2 message"),
    (b"PID|1||X\nMSH|^~\\&|A|B|C|D|||ADT^A01|1|P|2.5\n", "line 1: expected an MSH segment first, found 'PID'"),
])
def test_bad_input_is_exit_2_and_nothing_is_sent(bridge_engine, tmp_path, capsys, content, problem):
    good = lf_file(tmp_path / "good.hl7", adt("G1"))
    bad = tmp_path / "bad.hl7"
    if content is not None:
        bad.write_bytes(content)
    with listening(bridge_engine, {"channels": {"adt": channel()}}) as (engine, source):
        code = bridge_send(["--to", f"mllp://127.0.0.1:{source.port}", good, str(bad)])
        assert engine.store.search(channel="adt") == []
    err = capsys.readouterr().err
    assert code == 2
    assert problem in err and str(bad) in err


def test_bad_urls_and_tls_flags_are_exit_2(capsys, tmp_path):
    path = lf_file(tmp_path / "one.hl7", adt("U1"))
    assert bridge_send(["--to", "http://127.0.0.1:80", path]) == 2
    assert "expected mllp://HOST:PORT" in capsys.readouterr().err
    assert bridge_send(["--to", "mllp://127.0.0.1:2575", "--ca", "ca.pem", path]) == 2
    assert "need an mllps:// URL" in capsys.readouterr().err


def test_mllps_with_mutual_tls(bridge_engine, tmp_path, capsys):
    pki = make_pki(tmp_path)
    options = {"cert_file": "server.pem", "key_file": "server.key", "ca_file": "ca.pem", "require_client_cert": True}
    path = lf_file(tmp_path / "tls.hl7", adt("S1"), adt("S2"))
    with listening(bridge_engine, {"channels": {"adt": channel("mllps://127.0.0.1:0", options=options)}}) as (
            engine, source):
        url = f"mllps://127.0.0.1:{source.port}"
        ok = bridge_send(["--to", url, "--ca", str(pki.ca), "--cert", str(pki.client_cert),
                          "--key", str(pki.client_key), path])
        refused = bridge_send(["--to", url, "--ca", str(pki.ca), "--timeout", "5", path])
        assert len(engine.store.search(channel="adt")) == 2
    out = capsys.readouterr().out.splitlines()
    assert ok == 0 and refused == 1
    assert out[:2] == [f"{path} #1 (S1): AA S1", f"{path} #2 (S2): AA S2"]
    assert all(" ERROR " in line for line in out[2:4])


def test_split_messages_rules():
    text = b"\xef\xbb\xbfMSH|^~\\&|A\r\nPID|1\r\n\r\nMSH|^~\\&|B\nPID|2\n\nNTE|1\rMSH|^~\\&|C"
    assert split_messages(text) == [b"MSH|^~\\&|A\rPID|1\r", b"MSH|^~\\&|B\rPID|2\rNTE|1\r", b"MSH|^~\\&|C\r"]
    batch = b"FHS|^~\\&\nBHS|^~\\&\nMSH|^~\\&|A\nMSH|^~\\&|B\nBTS|2\nFTS|1\n"
    assert split_messages(batch) == [batch.replace(b"\n", b"\r")]
    assert split_messages(b"\x0bMSH|^~\\&|A\r\x1c\r") == [b"MSH|^~\\&|A\r"]
    with pytest.raises(InputError, match=r"x\.hl7 line 2: expected an MSH segment first, found 'EVN'"):
        split_messages(b"\nEVN|A01\n", "x.hl7")
