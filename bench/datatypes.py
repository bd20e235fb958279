"""Data type speed: microseconds per message for Pannier's HL7V2 data type, next to python-hl7
and hl7apy, plus a few XML, JSON and DELIMITED operations.

For each good sample in tests/fixtures/hl7 (adt_a01, oru_r01, and the three messages of the
FHS/BHS batch) every operation is timed with :mod:`timeit`: enough loops for at least 0.2 s,
best of ``--repeat`` runs. The batch rows are per contained message; its "validate + parse" row
includes splitting the batch (python-hl7: ``hl7.parse_file``; hl7apy has no FHS batch parser).

Operations (Pannier / python-hl7 / hl7apy):

* validate + parse: ``HL7v2DataType.parse`` (validate, then the lazy message: segments split on
  arrival, fields on first use) / ``hl7.parse`` / ``hl7apy.parser.parse_message`` with
  ``find_groups=False`` (tolerant validation; group finding is several times slower);
* parse + 3 fields: a fresh parse, then PID.5.1, PID.3.1 and MSH.9.2 (the cost of a filter
  that reads a few fields of each message);
* 3 fields, parsed: the same three reads on an already-parsed message (cached splits);
* metadata(), ACK (``auto_response`` from the raw message / ``str(hl7.parse(raw).create_ack())``),
  to_xml(), from_xml(to_xml) (the XML made beforehand), and encode (``str`` of the parsed,
  unmodified message, which Pannier returns as the input text);
* parse + set PID.5.1 + encode: an edit forces Pannier to re-join the segments.

python-hl7 and hl7apy are benchmark-only and optional (``.venv/bin/pip install hl7 hl7apy``);
they are not project dependencies, and their columns read "-" when they are not installed.

    .venv/bin/python bench/datatypes.py
    .venv/bin/python bench/datatypes.py --repeat 3 --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pannier import Status
from pannier_delimited import DelimitedDataType
from pannier_hl7v2 import HL7v2DataType
from pannier_json import JSONDataType
from pannier_xml import XMLDataType

try:
    import hl7
except ImportError:  # optional comparison
    hl7 = None

try:
    from hl7apy import parser as hl7apy_parser
except ImportError:  # optional comparison
    hl7apy_parser = None

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "hl7"
SAMPLES = ("adt_a01", "oru_r01", "batch")
LIBRARIES = ("Pannier", "python-hl7", "hl7apy")

Op = Callable[[], Any]


def read(name: str) -> str:
    # newline="" keeps the CR segment delimiters (text mode would turn them into LF).
    with open(FIXTURES / f"{name}.hl7", encoding="utf-8", newline="") as f:
        return f.read()


def best_us(op: Op, repeat: int, per: int = 1) -> float:
    """Best time of ``repeat`` runs, in microseconds per call divided by ``per``."""
    timer = timeit.Timer(op)
    loops, _ = timer.autorange()  # enough loops for at least 0.2 s
    return min(timer.repeat(repeat, loops)) / loops / per * 1e6


def over(messages: list[str], fn: Callable[[str], Any]) -> Op:
    """One call runs ``fn`` on every message."""

    def op() -> None:
        for m in messages:
            fn(m)

    return op


def pannier_ops(raw: str, messages: list[str]) -> dict[str, Op]:
    dt = HL7v2DataType()
    parsed = [dt.parse(m) for m in messages]
    xmls = [dt.to_xml(m) for m in messages]

    def fields(msg: Any) -> tuple[str, str, str]:
        return msg["PID.5.1"], msg["PID.3.1"], msg["MSH.9.2"]

    def edit(m: str) -> str:
        msg = dt.parse(m)
        msg["PID.5.1"] = "Newman"
        return str(msg)

    assert all(fields(p)[0] for p in parsed)
    if len(messages) > 1:
        parse: Op = over([raw], lambda r: [dt.parse(m) for m in dt.split_batch(r)])
    else:
        parse = over(messages, dt.parse)
    return {
        "validate + parse": parse,
        "parse + 3 fields": over(messages, lambda m: fields(dt.parse(m))),
        "3 fields, parsed": lambda: [fields(p) for p in parsed],
        "metadata()": over(messages, dt.metadata),
        "ACK (auto_response)": over(messages, lambda m: dt.auto_response(m, Status.SENT)),
        "to_xml()": over(messages, dt.to_xml),
        "from_xml(to_xml)": over(xmls, dt.from_xml),
        "encode (str)": lambda: [str(p) for p in parsed],
        "parse + set PID.5.1 + encode": over(messages, edit),
    }


def hl7_ops(raw: str, messages: list[str]) -> dict[str, Op]:
    if hl7 is None:
        return {}
    parsed = [hl7.parse(m) for m in messages]

    def fields(msg: Any) -> tuple[str, str, str]:
        pid = msg.segment("PID")
        return pid[5][0][0], pid[3][0][0], msg.segment("MSH")[9][0][1]

    def edit(m: str) -> str:
        msg = hl7.parse(m)
        msg.segment("PID")[5][0][0] = "Newman"
        return str(msg)

    assert all(fields(p)[0] for p in parsed)
    parse: Op = over([raw], hl7.parse_file) if len(messages) > 1 else over(messages, hl7.parse)
    return {
        "validate + parse": parse,
        "parse + 3 fields": over(messages, lambda m: fields(hl7.parse(m))),
        "3 fields, parsed": lambda: [fields(p) for p in parsed],
        "ACK (auto_response)": over(messages, lambda m: str(hl7.parse(m).create_ack())),
        "encode (str)": lambda: [str(p) for p in parsed],
        "parse + set PID.5.1 + encode": over(messages, edit),
    }


def hl7apy_ops(raw: str, messages: list[str]) -> dict[str, Op]:
    if hl7apy_parser is None:
        return {}

    def parse(m: str) -> Any:
        return hl7apy_parser.parse_message(m, find_groups=False)

    parsed = [parse(m) for m in messages]

    def fields(msg: Any) -> tuple[str, str, str]:
        pid = msg.pid
        return (
            pid.pid_5.pid_5_1.value,
            pid.pid_3.pid_3_1.value,
            msg.msh.msh_9.msh_9_2.value,
        )

    def edit(m: str) -> str:
        msg = parse(m)
        msg.pid.pid_5.pid_5_1 = "Newman"
        return msg.to_er7()

    assert all(fields(p)[0] for p in parsed)
    ops: dict[str, Op] = {}
    if len(messages) == 1:  # no FHS/BHS batch parser
        ops["validate + parse"] = over(messages, parse)
    ops.update(
        {
            "parse + 3 fields": over(messages, lambda m: fields(parse(m))),
            "3 fields, parsed": lambda: [fields(p) for p in parsed],
            "encode (str)": lambda: [p.to_er7() for p in parsed],
            "parse + set PID.5.1 + encode": over(messages, edit),
        }
    )
    return ops


def other_ops(sample: str) -> dict[str, Op]:
    """XML, JSON and DELIMITED, on small documents of a size like the HL7 samples."""
    xml = HL7v2DataType().to_xml(sample)
    xml_dt = XMLDataType()
    doc = json.dumps(
        {
            "resourceType": "Patient",
            "id": "PATID12345001",
            "identifier": [{"system": "urn:mrn", "value": "555-44-3333"}],
            "name": [{"family": "Everyman", "given": ["Adam", "A"]}],
            "gender": "male",
            "birthDate": "1961-06-15",
            "address": [{"line": ["2222 Home Street"], "city": "Ann Arbor", "state": "MI"}],
        }
    )
    json_dt = JSONDataType()
    csv = "".join(
        f"{i},Everyman,Adam,1961-06-15,M,2222 Home Street,Ann Arbor,MI,48104\n" for i in range(8)
    )
    delimited = DelimitedDataType()
    delimited_xml = delimited.to_xml(csv)
    return {
        f"XML validate (HL7 XML, {len(xml)} chars)": lambda: xml_dt.validate(xml),
        f"XML parse (HL7 XML, {len(xml)} chars)": lambda: xml_dt.parse(xml),
        f"JSON parse ({len(doc)} chars)": lambda: json_dt.parse(doc),
        f"DELIMITED parse (8 rows, {len(csv)} chars)": lambda: delimited.parse(csv),
        "DELIMITED to_xml (8 rows)": lambda: delimited.to_xml(csv),
        "DELIMITED from_xml (8 rows)": lambda: delimited.from_xml(delimited_xml),
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    versions = []
    for name, module in (("python-hl7", hl7), ("hl7apy", hl7apy_parser)):
        if module is None:
            versions.append(f"{name} not installed")
        else:
            from importlib.metadata import version

            versions.append(f"{name} {version('hl7' if name == 'python-hl7' else 'hl7apy')}")
    return (
        f"{platform.platform()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs ({cpu}); " + ", ".join(versions)
    )


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="timeit repeats (best is kept)")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = ap.parse_args()

    print(f"machine: {machine()}")
    python = Path(sys.executable)
    if python.is_relative_to(ROOT):
        python = python.relative_to(ROOT)
    print(f"command: {' '.join([str(python), *sys.argv])}")
    print()
    header = ["sample", "operation (µs per message)", *LIBRARIES]
    rows: list[list[str]] = []
    for sample in SAMPLES:
        raw = read(sample)
        messages = HL7v2DataType().split_batch(raw) if sample == "batch" else [raw]
        per = len(messages)
        label = f"{sample} ({per} msgs)" if per > 1 else sample
        columns = [f(raw, messages) for f in (pannier_ops, hl7_ops, hl7apy_ops)]
        for op_name in columns[0]:
            cells = []
            for ops in columns:
                op = ops.get(op_name)
                cells.append(fmt(None if op is None else best_us(op, args.repeat, per)))
            rows.append([label, op_name, *cells])
            print(" | ".join(rows[-1]), file=sys.stderr)
    other = [
        [name, fmt(best_us(op, args.repeat))] for name, op in other_ops(read("oru_r01")).items()
    ]
    table(header, rows, args.markdown)
    print()
    table(["other data types (Pannier)", "µs per message"], other, args.markdown, text=1)


def table(header: list[str], rows: list[list[str]], markdown: bool, text: int = 2) -> None:
    """Print ``rows``; the first ``text`` columns are labels, the rest numbers."""
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("| " + " | ".join(["---"] * text + ["---:"] * (len(header) - text)) + " |")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(
                cell.ljust(w) if i < text else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )


if __name__ == "__main__":
    main()
