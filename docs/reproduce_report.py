#!/usr/bin/env python3
"""Recompute the headline figures of a deployment report from its JSON and compare.

    nmc-deploy report BUILD --format json -o report.json
    python docs/reproduce_report.py report.json        # or: ... --format json | python ... -

Checks (stdlib only; nothing imported from nmc_deploy, so it is an independent reading of
the JSON; docs/report.md says where every number comes from):

* verdict: N = the cores listed, K = the chips they sit on, M = chips x cores per chip; each
  core's binding resource = its largest share (ties in the resource order), the cores bound
  per resource, the overall binding resource (the one binding most cores), fits = no share
  above 1 and N <= M;
* energy: per model, the total per sample = the sum of its breakdown terms, and the layers'
  rows add up to the total (plus token selection; a breakdown term named ``static``, if any,
  may stand apart from the layers);
* latency: per sample = steps per sample x per step; steps per sample = time steps +
  pipeline depth; the critical core is the busiest;
* traffic: the totals = the sums of the core-to-core matrix's columns = the sums of the
  chip-to-chip matrix; messages between chips = the chip matrix off its diagonal; per sample
  and per step = totals / samples, / (samples x time steps); the same as the cost report's
  traffic counts;
* fidelity: each headline accuracy is the one of the run it names.

Exit status 0 when every check holds, 1 otherwise (each failing check printed).
"""
from __future__ import annotations

import json
import math
import sys
from collections import Counter

RESOURCES = ("neurons", "synapse_memory_bits", "in_axons", "out_axons", "neuron_groups")


class Checks:
    def __init__(self):
        self.failed: list[str] = []
        self.passed = 0

    def equal(self, name: str, got, want, rel: float = 1e-9) -> None:
        ok = (math.isclose(got, want, rel_tol=rel, abs_tol=1e-9)
              if isinstance(got, (int, float)) and isinstance(want, (int, float))
              and not isinstance(got, bool) else got == want)
        if ok:
            self.passed += 1
        else:
            self.failed.append(f"{name}: report says {got!r}, recomputed {want!r}")


def check_verdict(rep: dict, c: Checks) -> None:
    v, util = rep.get("verdict"), rep.get("utilization")
    if not v or not util:
        return
    cores = util["cores"]
    for row in cores:
        binding = max(RESOURCES, key=lambda r: row["shares"][r])
        c.equal(f"core {row['core']} binding", row["binding"], binding)
        c.equal(f"core {row['core']} max share", row["max_share"], row["shares"][binding])
    binds = Counter(row["binding"] for row in cores)
    c.equal("verdict cores used (N)", v["cores_used"], len(cores))
    c.equal("verdict chips used (K)", v["chips_used"], len({row["chip"] for row in cores}))
    system = rep.get("system") or {}
    if "chips" in system:
        c.equal("verdict cores available (M)", v["cores_available"],
                system["chips"] * system["cores_per_chip"])
    c.equal("verdict cores bound per resource", v["bound"], {r: n for r, n in binds.items()})
    c.equal("verdict binding resource", v["binding"],
            max(RESOURCES, key=lambda r: binds[r]) if cores else None)
    fits = all(row["max_share"] <= 1 for row in cores) and (
        v["cores_available"] is None or len(cores) <= v["cores_available"])
    if not fits:
        c.equal("verdict fits", v["fits"], False)
    elif v["fits"]:
        c.passed += 1
    else:  # the report also counts a failing design rule
        c.equal("verdict fits (cores within limits, design rule failing?)",
                any("design rule" in p for p in v["problems"]), True)


def check_energy(rep: dict, c: Checks) -> None:
    breakdown = rep.get("energy_breakdown_pj_per_sample") or {}
    tok = (rep.get("token_selection") or {}).get("energy_pj_per_sample", {})
    for model, uj in rep.get("energy_per_sample_uj", {}).items():
        total_pj = uj * 1e6
        if model in breakdown:
            c.equal(f"{model}: total = sum of breakdown terms [pJ/sample]", total_pj,
                    sum(breakdown[model].values()), rel=1e-9)
        layers = sum(row["energy_pj_per_sample"][model] for row in rep.get("layers", ()))
        layers += tok.get(model, 0.0)
        static = breakdown.get(model, {}).get("static", 0.0)
        if not math.isclose(layers, total_pj, rel_tol=1e-6, abs_tol=1e-6):
            c.equal(f"{model}: layers + static = total [pJ/sample]", layers + static,
                    total_pj, rel=1e-6)
        else:
            c.passed += 1


def check_latency(rep: dict, c: Checks) -> None:
    lat = rep.get("latency")
    if not lat:
        return
    c.equal("latency per sample [µs] = steps x per step", lat["per_sample_us"],
            lat["steps_per_sample"] * lat["per_step_ns"] / 1000)
    c.equal("latency headline [µs]", rep["latency_per_sample_us"], lat["per_sample_us"])
    if rep.get("pipeline_depth") is not None:
        c.equal("steps per sample = time steps + pipeline depth", lat["steps_per_sample"],
                rep["time_steps"] + rep["pipeline_depth"])
    rows = [r for r in lat.get("cores", ()) if "busy_ns_per_step" in r]
    if rows and lat.get("critical_core") is not None:
        busiest = max(r["busy_ns_per_step"] for r in rows)
        critical = next(r for r in rows if r["core"] == lat["critical_core"])
        c.equal("critical core is the busiest [ns/step]", critical["busy_ns_per_step"], busiest)


def check_traffic(rep: dict, c: Checks) -> None:
    tm = rep.get("traffic_matrix") or {}
    if tm.get("status") != "counted":
        return
    cores, chips, totals = tm["cores"], tm["chips"], tm["totals"]
    for key in ("messages", "hops", "chip_hops"):
        c.equal(f"traffic {key} = core matrix sum", totals[key], sum(cores[key]))
        c.equal(f"traffic {key} = chip matrix sum", totals[key], sum(chips[key]))
    c.equal("messages between chips = chip matrix off the diagonal",
            totals["messages_between_chips"],
            sum(m for a, b, m in zip(chips["source"], chips["destination"], chips["messages"])
                if a != b))
    samples, steps = tm["samples"], tm["samples"] * tm["time_steps"]
    for key, value in totals.items():
        c.equal(f"traffic {key} per sample", tm["per_sample"][key], value / samples)
        c.equal(f"traffic {key} per step", tm["per_step"][key], value / steps)
    counted = (rep.get("traffic") or {}).get("per_sample")
    if counted:
        c.equal("core matrix messages = counted traffic", totals["messages"] / samples,
                counted["messages"])
        c.equal("core matrix hops = counted tile hops", totals["hops"] / samples,
                counted["tile_hops_ew"] + counted["tile_hops_ns"])
        c.equal("core matrix chip hops = counted chip hops", totals["chip_hops"] / samples,
                counted["chip_hops"])


def check_fidelity(rep: dict, c: Checks) -> None:
    f = rep.get("fidelity")
    if not f:
        return
    runs = {r["run"]: r for r in f["runs"]}
    for kind, acc in f["accuracy"].items():
        if isinstance(acc, dict):
            run = runs[acc["run"]]
            c.equal(f"accuracy {kind}", acc["value"], run[f"accuracy_{kind}"])
            c.equal(f"accuracy {kind} samples", acc["samples"], run["samples"])
    m = f["mismatches"]
    if isinstance(m, dict):
        c.equal("spike mismatches total", m["total"], sum(m["per_population"].values()))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    text = sys.stdin.read() if argv[1] == "-" else open(argv[1], encoding="utf-8").read()
    rep = json.loads(text)
    c = Checks()
    for check in (check_verdict, check_energy, check_latency, check_traffic, check_fidelity):
        check(rep, c)
    for line in c.failed:
        print(f"MISMATCH {line}")
    print(f"{c.passed} checks reproduced, {len(c.failed)} mismatched")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
