"""Checks a loss plot (llmc/report.h) against the main.log it was drawn from.

usage: python3 tests/check_loss_svg.py MAIN_LOG LOSS_SVG [--expect TRAIN,VAL,EVAL,MALFORMED]

Reads main.log with its own parser (the rules of llmc/report.h: "s:STEP KEY:VALUE" lines, decimal
finite values of trl, tel and eval; an unfinished, overlong or NUL-holding line is malformed), then
checks that each series of the SVG holds exactly those points, as main.log spells them, that every
drawn point (polyline vertex, marker) sits where the plot's axis mapping puts it, that the axis
ranges hold every point, and that the tick labels are nice numbers placed on the same mapping.
Prints "ok: ..." and exits 0, or prints what differs and exits 1.
"""

import math
import re
import sys
import xml.etree.ElementTree as ET

SVG = "{http://www.w3.org/2000/svg}"
LINE_MAX = 1024  # REPORT_LINE_MAX: lines of LINE_MAX bytes or more are malformed
VALUE_TEXT = 32  # REPORT_VALUE_TEXT
# coordinates are written with %.2f: off by at most 0.005 from the exact mapping (plus float
# rounding of the mapping itself, far below 1e-6 at these magnitudes)
PIXEL_TOLERANCE = 0.005 + 1e-6
KEYS = {"trl": "train", "tel": "val", "eval": "eval"}


def parse_log(path):
    series = {"train": [], "val": [], "eval": []}
    data = open(path, "rb").read()
    lines = malformed = 0
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        finished = end >= 0
        line = data[start:end] if finished else data[start:]
        start = end + 1 if finished else len(data)
        lines += 1
        if not finished or b"\0" in line or len(line) > LINE_MAX - 1:
            malformed += 1
            continue
        result = parse_line(line.decode("latin-1"))
        if result is None:
            malformed += 1
        elif result != "other":
            name, step, text, value = result
            series[name].append((step, text, value))
    return series, lines, malformed


def parse_line(line):
    m = re.match(r"s:([0-9]+) ([A-Za-z0-9_]+):(.*)$", line, re.S)
    if not m:
        return None
    step = int(m.group(1))
    if step > 2147483647:
        return None
    text = re.split(r"[ \t\r]", m.group(3))[0]
    if len(text) == 0 or len(text) >= VALUE_TEXT:
        return None
    if m.group(2) not in KEYS:
        return "other"
    if not re.fullmatch(r"[0-9+\-.eE]+", text):
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return KEYS[m.group(2)], step, text, value


def fail(message):
    print("FAIL: " + message)
    sys.exit(1)


def is_nice(step):
    exponent = math.floor(math.log10(step) + 1e-12)
    mantissa = step / 10**exponent
    return any(abs(mantissa - nice) < 1e-9 for nice in (1, 2, 5, 10))


def check_ticks(plot, texts, low, high, to_pixel, coordinate, offset, name):
    if len(texts) < 2:
        fail(f"{name}: {len(texts)} tick label(s), expected at least 2")
    values = [float(t.text) for t in texts]
    steps = [b - a for a, b in zip(values, values[1:])]
    if not is_nice(steps[0]) or any(abs(s - steps[0]) > 1e-9 * abs(steps[0]) for s in steps):
        fail(f"{name}: tick labels {values} are not evenly spaced at a nice number")
    if abs(values[0] - low) > 1e-9 * max(1, abs(low)) or abs(values[-1] - high) > 1e-9 * max(1, abs(high)):
        fail(f"{name}: ticks {values[0]}..{values[-1]} do not span the axis {low}..{high}")
    for t, v in zip(texts, values):
        where = float(t.get(coordinate)) - offset
        if abs(where - to_pixel(v)) > PIXEL_TOLERANCE:
            fail(f"{name}: tick {t.text} drawn at {where}, the mapping says {to_pixel(v)}")


def main():
    args = sys.argv[1:]
    expect = None
    if "--expect" in args:
        i = args.index("--expect")
        expect = [int(x) for x in args[i + 1].split(",")]
        del args[i : i + 2]
    log_path, svg_path = args
    series, lines, malformed = parse_log(log_path)
    if expect is not None:
        got = [len(series["train"]), len(series["val"]), len(series["eval"]), malformed]
        if got != expect:
            fail(f"{log_path}: this parser reads {got} (train, val, eval, malformed), expected {expect}")
    root = ET.parse(svg_path).getroot()
    if root.tag != SVG + "svg" or root.get("class") != "llmc-loss-plot":
        fail(f"{svg_path}: not an llmc loss plot")
    plot = root.find(f"{SVG}g[@id='plot']")
    if plot is None:
        fail("no <g id='plot'>")
    a = {k: float(plot.get("data-" + k)) for k in ("left", "top", "width", "height", "x-min", "x-max", "y-min", "y-max")}
    if int(plot.get("data-malformed-lines")) != malformed:
        fail(f"data-malformed-lines {plot.get('data-malformed-lines')}, this parser counts {malformed}")
    has_eval = len(series["eval"]) > 0
    if has_eval != (plot.get("data-y2-min") is not None):
        fail("a right axis (data-y2-min) must be there exactly when main.log has eval lines")

    def px(step):
        return a["left"] + (step - a["x-min"]) / (a["x-max"] - a["x-min"]) * a["width"]

    def py(value, low=a["y-min"], high=a["y-max"]):
        return a["top"] + (high - value) / (high - low) * a["height"]

    ranges = {"y": (a["y-min"], a["y-max"])}
    if has_eval:
        ranges["y2"] = (float(plot.get("data-y2-min")), float(plot.get("data-y2-max")))
    points = 0
    for name in ("train", "val", "eval"):
        expected = series[name]
        group = plot.find(f"{SVG}g[@id='{name}']")
        if not expected:
            if group is not None:
                fail(f"series {name} drawn, but main.log has no such line")
            continue
        if group is None:
            fail(f"series {name}: main.log has {len(expected)} point(s), none drawn")
        low, high = ranges[group.get("data-axis")]
        if name == "eval" and group.get("data-axis") != "y2" or name != "eval" and group.get("data-axis") != "y":
            fail(f"series {name} on axis {group.get('data-axis')}")
        line = group.find(f"{SVG}polyline")
        steps = line.get("data-steps").split(" ")
        texts = line.get("data-values").split(" ")
        if steps != [str(s) for s, _, _ in expected] or texts != [t for _, t, _ in expected]:
            fail(f"series {name}: data-steps/data-values differ from main.log's points")
        vertices = [tuple(map(float, p.split(","))) for p in line.get("points").split(" ")]
        markers = [(float(c.get("cx")), float(c.get("cy"))) for c in group.findall(f"{SVG}circle")]
        if len(vertices) != len(expected) or (markers and len(markers) != len(expected)):
            fail(f"series {name}: {len(vertices)} vertices, {len(markers)} markers for {len(expected)} points")
        if name != "train" and not markers:
            fail(f"series {name}: no markers")
        for drawn in (vertices, markers):
            for (x, y), (step, text, value) in zip(drawn, expected):
                if not (a["x-min"] <= step <= a["x-max"] and low <= value <= high):
                    fail(f"series {name}: point ({step}, {text}) outside the axes")
                if abs(x - px(step)) > PIXEL_TOLERANCE or abs(y - py(value, low, high)) > PIXEL_TOLERANCE:
                    fail(f"series {name}: point ({step}, {text}) drawn at ({x}, {y}), the mapping says ({px(step)}, {py(value, low, high)})")
                points += 1
    check_ticks(plot, plot.findall(f".//{SVG}text[@class='x-tick']"), a["x-min"], a["x-max"], px, "x", 0, "x axis")
    check_ticks(plot, plot.findall(f".//{SVG}text[@class='y-tick']"), a["y-min"], a["y-max"], py, "y", 4, "y axis")
    if has_eval:
        low, high = ranges["y2"]
        check_ticks(plot, plot.findall(f".//{SVG}text[@class='y2-tick']"), low, high, lambda v: py(v, low, high), "y", 4, "right axis")
    print(f"ok: {len(series['train'])} train, {len(series['val'])} val, {len(series['eval'])} eval point(s) "
          f"({points} drawn positions) as main.log's, {malformed} malformed line(s) of {lines}")


main()
