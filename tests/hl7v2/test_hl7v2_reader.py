"""The reader and the real-feed behaviours: line endings, BOM, separators, escapes, nulls, batches."""

from __future__ import annotations

import pytest

from bridge.plugins.hl7v2.codec import FORMAT, decode, detect
from bridge.plugins.hl7v2.datatypes import read_datetime, write_datetime
from bridge.plugins.hl7v2.header import Separators
from bridge.plugins.hl7v2.reader import escape, read_messages, reencode, unescape
from bridge.testing import assert_decode_error_is_clear

ADT = (
    "MSH|^~\\&|EHR|CLINIC|TB|TB|20240501101500-0500||ADT^A04^ADT_A01|C1|P|2.5\r"
    "EVN|A04|20240501101500-0500\r"
    "PID|1||MRN1^^^CLINIC^MR||SMITH\\T\\JONES^ANN^^^^^L||19800215|F|||1 Main St^^Austin^TX^78701^US^H\r"
    "PV1|1|O|||||1234567893^Lee^Sam^^^^^^^^^^NPI||||||||||||V1^^^^VN|||||||||||||||||||||||||20240501100000-0500\r"
)


def test_cr_lf_and_crlf_give_the_same_records() -> None:
    as_cr = decode(ADT.encode(), {})
    assert decode(ADT.replace("\r", "\n").encode(), {}) == as_cr
    assert decode(ADT.replace("\r", "\r\n").encode(), {}) == as_cr
    assert decode(ADT.replace("\r", "\r\r").encode(), {}) == as_cr  # blank lines (double CR)


def test_leading_byte_order_mark_is_ignored() -> None:
    assert decode(b"\xef\xbb\xbf" + ADT.encode(), {}) == decode(ADT.encode(), {})
    assert detect(b"\xef\xbb\xbf" + ADT.encode())
    assert not detect(b'{"schema": "telemed-bridge/1"}')


def test_custom_encoding_characters_read_like_standard_ones() -> None:
    plain = ADT.replace("SMITH\\T\\JONES", "SMITH")
    custom = plain.replace("|", "$").replace("^", "%").replace("~", "!").replace("&", "*")
    custom = custom.replace("MSH$%!\\*$", "MSH$%!#*$", 1)
    assert custom.startswith("MSH$%!#*$EHR")
    assert decode(custom.encode(), {}) == decode(plain.encode(), {})
    # \T\ names the message's own subcomponent separator: here '*'
    escaped = custom.replace("SMITH", "SMITH#T#JONES")
    assert decode(escaped.encode(), {})[0].patient.name.family == "SMITH*JONES"


@pytest.mark.parametrize("msh", ["MSH|^&&^|A", "MSH|^~~&|A", "MSH|||\\&|A"])
def test_duplicate_encoding_characters_are_refused(msh: str) -> None:
    error = assert_decode_error_is_clear(FORMAT, (msh + "|||20240501||ADT^A04|1|P|2.5\rPID|1\r").encode())
    assert "MSH" in str(error)


def test_escapes_are_expanded() -> None:
    seps = Separators()
    assert unescape("A\\F\\B\\S\\C\\T\\D\\R\\E\\E\\", seps) == "A|B^C&D~E\\"
    assert unescape("caf\\XC3A9\\ \\H\\bold\\N\\ one\\.br\\two", seps) == "café bold one\ntwo"
    assert unescape("unterminated \\F", seps) == "unterminated \\F"
    assert unescape("\\Zcustom\\", seps) == "\\Zcustom\\"  # unknown escapes are kept as written
    assert escape("a|b^c&d~e\\f\ng") == "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\.br\\g"
    assert unescape(escape("x|^&~\\\ny"), seps) == "x|^&~\\\ny"


def test_reencode_moves_values_between_separator_sets() -> None:
    custom = Separators(field="$", component="%", repetition="!", escape="#", subcomponent="*")
    assert reencode("A%B*C!D", custom) == "A^B&C~D"
    assert reencode("x|y", custom) == "x\\F\\y"  # a literal | in a $-separated message is escaped


@pytest.mark.parametrize(("hl7", "iso"), [
    ("2024", "2024"), ("202405", "2024-05"), ("20240501", "2024-05-01"), ("2024050110", "2024-05-01T10"),
    ("202405011015", "2024-05-01T10:15"), ("20240501101530", "2024-05-01T10:15:30"),
    ("20240501101530.25", "2024-05-01T10:15:30.25"), ("20210818112600+0215", "2021-08-18T11:26:00+02:15"),
    ("202405011015-0500", "2024-05-01T10:15-05:00"),
])
def test_datetimes_keep_their_precision_and_offset(hl7: str, iso: str) -> None:
    assert read_datetime(hl7) == iso
    assert write_datetime(iso) == hl7


@pytest.mark.parametrize("bad", ["2014/09/09 12:11:11", "20241301", "2024050125", "24-05-01", "2024051"])
def test_malformed_datetimes_read_as_none(bad: str) -> None:
    assert read_datetime(bad) is None


def test_malformed_msh7_does_not_stop_the_decode_and_is_kept() -> None:
    raw = ADT.replace("20240501101500-0500||ADT", "2014/09/09 12:11:11||ADT").encode()
    encounter = decode(raw, {})[0]
    assert encounter.extra["hl7v2"]["fields"]["MSH-7"] == "2014/09/09 12:11:11"
    assert encounter.patient.name.family == "SMITH&JONES"


def test_malformed_birth_date_is_kept_raw() -> None:
    patient = decode(ADT.replace("19800215", "15/02/1980").encode(), {})[0].patient
    assert patient.birth_date is None
    assert patient.extra["hl7v2"]["fields"]["PID-7"] == "15/02/1980"


def test_explicit_null_is_recorded_and_not_a_value() -> None:
    patient = decode(ADT.replace("19800215|F", '""|F').encode(), {})[0].patient
    assert patient.birth_date is None
    assert patient.extra["hl7v2"]["nulls"] == ["PID-7"]
    again = decode(FORMAT.encode([decode(ADT.replace("19800215|F", '""|F').encode(), {})[0]],
                                 {"message_datetime": "2024-05-01"}), {})[0]
    assert again.patient.extra["hl7v2"]["nulls"] == ["PID-7"]


def test_repetitions_give_several_identifiers_and_addresses() -> None:
    raw = ADT.replace("MRN1^^^CLINIC^MR", "MRN1^^^CLINIC^MR~999^^^STATE^PI").replace(
        "^78701^US^H", "^78701^US^H~PO Box 9^^Dallas^TX^75201^US^M")
    patient = decode(raw.encode(), {})[0].patient
    assert [(i.value, i.type, i.assigner) for i in patient.identifiers] == [("MRN1", "MR", "CLINIC"), ("999", "PI", "STATE")]
    assert [a.city for a in patient.addresses] == ["Austin", "Dallas"]


def test_batch_file_decodes_every_message() -> None:
    second = ADT.replace("|C1|", "|C2|").replace("MRN1", "MRN2")
    batch = f"FHS|^~\\&|EHR\rBHS|^~\\&|EHR\r{ADT}{second}BTS|2\rFTS|1\r"
    records = decode(batch.encode(), {})
    assert [r.patient.identifiers[0].value for r in records] == ["MRN1", "MRN2"]
    assert len(read_messages(batch)) == 2


@pytest.mark.parametrize(("raw", "words"), [
    (b"", "empty"),
    (b"\r\n\r\n", "empty"),
    (b"FHS|^~\\&|X\rBHS|^~\\&|X\rBTS|0\rFTS|1\r", "no messages"),
    (b"BHS|^~\\&|X\rEVN|A04\rPID|1\r", "before any MSH"),
    (b"PID|1||X\r", "before any MSH"),
    (b"MSH|^~\\&|A|B|C|D|20240501||ADT^A04|1|P|2.5\rpid|1\r", "invalid segment name"),
    (b"MSH|^~\\&|A|B|C|D|20240501||VXU^V04|1|P|2.5\rPID|1\r", "VXU^V04 has no RXA segment and names no patient"),
    (b"MSH|^~\\&|A|B|C|D|20240501||ORM^O01|1|P|2.5\rPID|1\r", "ORM^O01 has no order: no ORC, OBR or RXO"),
    (b"MSH|^~\\&|A|B|C|D|20240501||PGL^PC6|1|P|2.5\rPID|1\r", "unsupported message type PGL^PC6"),
    (b"MSH|^~\\&|A|B|C|D|20240501||PPR^PC1|1|P|2.5\rPID|1\r", "PPR^PC1 names no patient"),
    (b"MSH|^~\\&|A|B|C|D|20240501||ADT^A04|1|P|2.5\rEVN|A04\r", "no PID segment"),
    (b"MSH|^~\\&|A|B|C|D|20240501||RDE^O11|1|P|2.5\rPID|1\r", "no ORC segment"),
    (b"MSH|^~\\&|A|B|C|D|20240501||SIU^S12|1|P|2.5\rPID|1\r", "no SCH segment"),
])
def test_bad_input_is_refused_with_a_clear_error(raw: bytes, words: str) -> None:
    error = assert_decode_error_is_clear(FORMAT, raw)
    assert words in str(error)


def test_errors_do_not_echo_patient_data() -> None:
    raw = b"MSH|^~\\&|A|B|C|D|20240501||ADT^A04|1|P|2.5\rEVN|A04\rSecretName|x\r"
    error = assert_decode_error_is_clear(FORMAT, raw)
    assert "Secret" not in str(error)


def test_batch_error_names_the_message() -> None:
    batch = ADT + "MSH|^~\\&|A|B|C|D|20240501||VXU^V04|2|P|2.5\rPID|1\r"
    error = assert_decode_error_is_clear(FORMAT, batch.encode())
    assert "message 2 of 2" in str(error) and "VXU^V04" in str(error)


def test_latin1_bytes_do_not_crash() -> None:
    raw = ADT.replace("ANN", "ANN\xe9").encode("latin-1")
    assert decode(raw, {})[0].patient.name.given == ["ANN\xe9"]
