"""Rules for the suite itself: no wait without a bound, so one stuck child can never hang CI."""

import configparser
import os
import re

TESTS = os.path.dirname(__file__)
UNBOUNDED = re.compile(r"timeout\s*=\s*None|\.wait\(\s*\)|\.communicate\(\s*(?:input=[^)]*)?\)|\.join\(\s*\)")


def test_no_test_helper_waits_without_a_bound():
    offenders = []
    for name in sorted(os.listdir(TESTS)):
        if not name.endswith(".py") or name == os.path.basename(__file__):
            continue
        with open(os.path.join(TESTS, name), encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                code = line.split("#", 1)[0]
                if UNBOUNDED.search(code) and "kill()" not in code:
                    offenders.append(f"tests/{name}:{number}: {line.strip()}")
    assert offenders == [], "unbounded waits (give each a timeout):\n" + "\n".join(offenders)


def test_every_test_has_a_time_limit():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(TESTS, os.pardir, "setup.cfg"))
    assert float(cfg["tool:pytest"]["timeout"]) > 0
    assert "pytest-timeout" in cfg["options.extras_require"]["test"]
