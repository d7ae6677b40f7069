"""Verbs about the engine rather than one container: version, info, events, system df, doctor, lab.

``version`` = ``GET /version`` beside the client's own numbers; ``info`` = ``GET /info``; ``events``
= ``GET /events``, a stream of JSON objects that ends only with ``--until`` or Ctrl-C (exit 130);
``system df`` = ``GET /system/df`` summed per kind as docker prints it. ``doctor`` and ``lab`` need
no daemon: they read this host (minidocker/doctor.py) and run the classroom labs (minidocker/labs.py).
Standard library only, like the rest of the CLI.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from .client import Client
from .containers import parse_filters, timestamp
from .signals import exit_on_interrupt


def cmd_version(c, a):
    import platform

    from ..wire import API_VERSION
    from .output import objects
    client = {"Platform": {"Name": ""}, "Version": __import__("minidocker").__version__, "APIVersion": API_VERSION,
              "DefaultAPIVersion": API_VERSION, "GitCommit": "", "GoVersion": "python" + platform.python_version(),
              "Os": "linux", "Arch": platform.machine(), "BuildTime": "", "Context": "default"}
    v = c.request("GET", "/version").check().json()
    if a.format:  # docker's versionInfo: Go field names (APIVersion) besides the API's JSON (ApiVersion)
        server = {**v, "APIVersion": v.get("ApiVersion"), "MinAPIVersion": v.get("MinAPIVersion")}
        sys.stdout.write(objects(a.format, [{"Client": client, "Server": server}]))
        return 0
    print("Client:\n Version:       ", client["Version"], "\n API version:   ", API_VERSION)
    print(f"\nServer: {v.get('Platform', {}).get('Name', '')}\n Engine:\n  Version:       {v.get('Version')}\n"
          f"  API version:   {v.get('ApiVersion')} (minimum version {v.get('MinAPIVersion')})\n"
          f"  Kernel:        {v.get('KernelVersion')}\n  OS/Arch:       {v.get('Os')}/{v.get('Arch')}")
    return 0


def cmd_info(c, a):
    from .output import objects
    from ..units import bytes_size
    i = c.request("GET", "/info").check().json()
    if a.format:
        sys.stdout.write(objects(a.format, [i]))
        return 0
    print(f"Server:\n Containers: {i['Containers']}\n  Running: {i['ContainersRunning']}\n"
          f"  Paused: {i['ContainersPaused']}\n  Stopped: {i['ContainersStopped']}\n Images: {i['Images']}\n"
          f" Server Version: {i['ServerVersion']}\n Storage Driver: {i['Driver']}\n"
          f" Logging Driver: {i['LoggingDriver']}\n Cgroup Version: {i['CgroupVersion']}\n"
          f" Kernel Version: {i['KernelVersion']}\n Operating System: {i['OperatingSystem']}\n"
          f" CPUs: {i['NCPU']}\n Total Memory: {bytes_size(i['MemTotal'])}\n Name: {i['Name']}\n"
          f" Docker Root Dir: {i['DockerRootDir']}")
    return 0


def cmd_doctor(c, a):
    from .. import doctor
    info = doctor.collect(daemon_host=a.host)
    print(json.dumps(info, indent=2, default=str) if a.json else doctor.report(info))
    return 0


def cmd_lab(c, a):
    from .. import labs
    return labs.main(a.lab_args)


def cmd_events(c: Client, a) -> int:
    from .gotemplate import Template
    tmpl = Template("{{json .}}" if a.format == "json" else a.format) if a.format else None
    q = {"since": timestamp(a.since), "until": timestamp(a.until), "filters": parse_filters(a.filter)}
    exit_on_interrupt()  # Ctrl-C: exit 130 at once, as docker does
    for e in c.stream("GET", "/events", query=q):
        if tmpl:
            print(tmpl.execute(e), flush=True)
            continue
        t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(e["timeNano"] // 10**9))
        attrs = ", ".join(f"{k}={v}" for k, v in sorted(e["Actor"]["Attributes"].items()))
        print(f"{t}.{e['timeNano'] % 10**9:09d}Z {e['Type']} {e['Action']} {e['Actor']['ID']} ({attrs})",
              flush=True)
    return 0



DF_HEADERS = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
              "Reclaimable": "RECLAIMABLE"}
DF_TABLE = "{{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"


def cmd_system_df(c: Client, a) -> int:
    from ..units import human_size
    from .gotemplate import Row
    from .output import listing
    d = c.request("GET", "/system/df").check().json()
    images, cs = d.get("Images") or [], d.get("Containers") or []
    img_size = sum(i["Size"] for i in images)
    img_unused = sum(i["Size"] for i in images if not i.get("Containers"))
    c_size = sum(x.get("SizeRw", 0) for x in cs)
    c_reclaim = sum(x.get("SizeRw", 0) for x in cs if x["State"] != "running")

    def reclaimable(part: int, whole: int) -> str:  # docker adds the share only when there is a whole
        return f"{human_size(part)} ({round(100 * part / whole)}%)" if whole else human_size(part)

    rows = [["Images", str(len(images)), str(sum(1 for i in images if i.get("Containers"))),
             human_size(img_size), reclaimable(img_unused, img_size)],
            ["Containers", str(len(cs)), str(sum(1 for x in cs if x["State"] == "running")),
             human_size(c_size), reclaimable(c_reclaim, c_size)],
            ["Local Volumes", "0", "0", "0B", "0B"], ["Build Cache", "0", "0", "0B", "0B"]]
    sys.stdout.write(listing(a.format or "table", [Row(zip(DF_HEADERS, r)) for r in rows], DF_HEADERS, DF_TABLE))
    return 0




def add_events(sub, verb: str) -> None:
    ev = sub.add_parser(verb, help="the daemon's event stream")
    ev.add_argument("--since")
    ev.add_argument("--until")
    ev.add_argument("-f", "--filter", action="append")
    ev.add_argument("--format")
    ev.set_defaults(fn=cmd_events)




def add_system(sub, verb: str) -> None:
    sy = sub.add_parser(verb, help="system-wide information (df, events, info)")
    sysub = sy.add_subparsers(dest="system_verb", required=True)
    df = sysub.add_parser("df", help="disk usage")
    df.add_argument("--format")
    df.set_defaults(fn=cmd_system_df)


def add_version(sub, verb: str) -> None:
    ver = sub.add_parser(verb, help="client and daemon versions")
    ver.add_argument("-f", "--format")
    ver.set_defaults(fn=cmd_version)


def add_info(sub, verb: str) -> None:
    inf = sub.add_parser(verb, help="system-wide information")
    inf.add_argument("-f", "--format")
    inf.set_defaults(fn=cmd_info)


def add_doctor(sub, verb: str) -> None:
    d = sub.add_parser(verb, help="what this host supports (reads the host; no daemon needed)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(fn=cmd_doctor, local=True)  # -H is honoured: doctor pings that daemon


def add_lab(sub, verb: str) -> None:
    lab = sub.add_parser(verb, help="classroom labs: `lab list`, `lab start 01`, `lab check 01`, `lab hint 01`")
    lab.add_argument("lab_args", nargs=argparse.REMAINDER)
    lab.set_defaults(fn=cmd_lab, local=True)
