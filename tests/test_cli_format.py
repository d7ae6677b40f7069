"""``--format``: the Go-template interpreter (minidocker/cli/gotemplate.py) on its own, then every verb
that takes --format against the test daemon, compared with what the real docker CLI prints for the
same template against the same daemon."""
from __future__ import annotations

import json
import subprocess

import pytest

from conftest import need_tool
from minidocker.cli.gotemplate import Row, TemplateError, go_float, render
from minidocker.cli.output import aligned, listing
from minidocker.units import bytes_size, human_duration, human_size

DATA = {"Name": "/web", "Id": "c0ffee",
        "Config": {"Labels": {"tier": "web", "k": "v w"}, "Env": ["A=1", "B=2"], "Cmd": ["sleep", "1000"],
                   "Entrypoint": None},
        "State": {"Running": True, "Paused": False, "Pid": 42, "Status": "running", "Health": None},
        "Size": 2140160, "Ratio": 0.25, "Labels": None}


# ---- the interpreter, no daemon -------------------------------------------------------------------
@pytest.mark.parametrize("template,want", [
    ('{{index .Config.Labels "k"}}', "v w"),                       # the first example
    ("{{range .Config.Env}}x{{end}}", "xx"),                        # ... and its second
    ("{{range .Config.Env}}[{{.}}]{{end}}", "[A=1][B=2]"),
    ("{{range $i, $e := .Config.Env}}{{if $i}},{{end}}{{$e}}{{end}}", "A=1,B=2"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "k=v w;tier=web;"),  # maps in key order
    ("{{range .Config.Entrypoint}}x{{else}}none{{end}}", "none"),
    ("{{range $e := .Config.Cmd}}{{$.Name}}:{{$e}} {{end}}", "/web:sleep /web:1000 "),
    ("{{range .Config.Cmd}}{{if eq . \"1000\"}}{{break}}{{end}}{{.}}{{end}}", "sleep"),
    ("{{json .Config.Labels}}", '{"k":"v w","tier":"web"}'),   # a Go map: sorted keys
    ("{{json .Config}}", '{"Labels":{"k":"v w","tier":"web"},"Env":["A=1","B=2"],"Cmd":["sleep","1000"],'
                         '"Entrypoint":null}'),                  # a struct: its own order
    ('{{"<&>" | json}}', '"<&>"'),
    ("{{.Config.Labels}}", "map[k:v w tier:web]"),
    ("{{.Config.Env}}", "[A=1 B=2]"),
    ("{{.Config.Labels.tier}}", "web"),
    ("{{.State.Health}}|{{json .State.Health}}", "<nil>|null"),
    ("{{.Config.Entrypoint}}|{{json .Config.Entrypoint}}|{{len .Config.Entrypoint}}", "[]|null|0"),  # nil slice
    ("{{.Config.Binds}}|{{.Config.Volumes}}", "[]|map[]"),       # absent slice/map fields: nil, as in Go
    ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
    ("{{if .State.Paused}}p{{else if .State.Running}}r{{else}}x{{end}}", "r"),
    ("{{if and .State.Running (not .State.Paused)}}ok{{end}} {{or \"\" \"x\"}}", "ok x"),
    ("{{with .State}}{{.Status}}{{end}}{{with .State.Health}}never{{end}}", "running"),
    ("{{upper .Name}} {{lower \"AB\"}} {{title \"hELLO wORLD-foo_bar\"}}", "/WEB ab HELLO WORLD-Foo_bar"),
    ('{{join .Config.Cmd ","}} {{split "a,b" ","}} {{len .Config.Env}}', "sleep,1000 [a b] 2"),
    ('{{printf "%s-%d|%5d|%-4s|%x|%q" .Name 5 42 "ab" 255 .Name}}', '/web-5|   42|ab  |ff|"/web"'),
    ('{{printf "%v %.2f %5.1f %T %T" .Ratio 2.0 3.14159 .State.Pid .Name}}', "0.25 2.00   3.1 int string"),
    ('{{printf "%s" .State.Running}}', "%!s(bool=true)"),
    ('{{.State.Pid | printf "%d!"}}', "42!"),
    ("{{println .Name}}x", "/web\nx"),
    ('{{print "a" "b" 1 2 "c"}}', "ab1 2c"),
    ('{{pad "x" 2 3}}|{{truncate "abcdef" 3}}', "  x   |abc"),
    ("{{$x := .Name}}{{$x}}{{range .Config.Cmd}}{{$x}}{{end}}", "/web/web/web"),
    ("{{.}}", "map[Config:map[Cmd:[sleep 1000] Entrypoint:<nil> Env:[A=1 B=2] Labels:map[k:v w tier:web]] "
              "Id:c0ffee Labels:<nil> Name:/web Ratio:0.25 Size:2140160 State:map[Health:<nil> Paused:false "
              "Pid:42 Running:true Status:running]]"),
    ("{{- .Name -}}  |  {{ .Id }}", "/web|  c0ffee"),
    ("a{{/* a comment */}}b", "ab"),
    ("{{range 3}}{{.}}{{end}} {{3.5}} {{1e6}} {{`raw`}} {{true}}", "012 3.5 1e+06 raw true"),
    ('{{index .Config.Env 1}} {{index .Config.Labels "missing"}}|', "B=2 |"),
    ('{{index .Labels "k"}}|{{.Labels}}|{{json .Labels}}', "|map[]|null"),  # a null map
    ('{{slice .Config.Env 1}} {{lt 1 2}} {{ge .Size 3}} {{ne .Name "/x"}}', "[B=2] true true true"),
    ("{{.Name}}\\n", "/web\\n"),                          # inspect does not rewrite \n (docker neither)
])
def test_templates_print_what_go_prints(template, want):
    assert render(template, DATA) == want


@pytest.mark.parametrize("template,phase,words", [
    ("{{bogus .Name}}", "parse", 'function "bogus" not defined'),
    ("{{.Name", "parse", "unclosed action"),
    ("{{range .Config.Env}}", "parse", "unexpected EOF"),
    ("{{else}}", "parse", "unexpected {{else}}"),
    ("{{end}}", "parse", "unexpected {{end}}"),
    ('{{define "x"}}{{end}}', "parse", "not supported"),
    ('{{template "x"}}', "parse", "not supported"),
    ("{{html .Name}}", "parse", "not supported"),
    ("{{call .Name}}", "parse", "not supported"),
    ("{{break}}", "parse", "outside {{range}}"),
    ("{{(.Name}}", "parse", "unclosed left paren"),
    ("{{.NoSuch}}", "execute", 'map has no entry for key "NoSuch"'),
    ("{{.Config.NoSuch}}", "execute", 'map has no entry for key "NoSuch"'),
    ("{{.Name.Foo}}", "execute", "can't evaluate field Foo"),
    ("{{.State.Health.Status}}", "execute", "nil pointer evaluating Status"),
    ("{{index .Config.Env 5}}", "execute", "index out of range: 5"),
    ("{{upper .State.Running}}", "execute", "expected string; got bool"),
    ('{{eq .Size "2"}}', "execute", "incompatible types for comparison"),
    ('{{printf "%z" 1}}', "execute", "%z is not supported"),
    ("{{range .Name}}x{{end}}", "execute", "range can't iterate over /web"),
    ('{{.Name "arg"}}', "execute", "can't give argument to non-function .Name"),
])
def test_unsupported_or_wrong_templates_are_refused(template, phase, words):
    with pytest.raises(TemplateError) as ei:
        render(template, DATA)
    assert ei.value.phase == phase
    assert words in str(ei.value) and str(ei.value).startswith("template: ")


def test_go_float_and_units_match_go():
    assert [go_float(x) for x in (0.25, 1e6, 123456.0, 1234567.0, 1e-5, 0.0001, -2.5, 3.0)] == \
        ["0.25", "1e+06", "123456", "1.234567e+06", "1e-05", "0.0001", "-2.5", "3"]
    assert [human_size(x) for x in (0, 999, 1000, 2140160, 123456789)] == ["0B", "999B", "1kB", "2.14MB", "123MB"]
    assert [bytes_size(x) for x in (0, 315392, 25275842560)] == ["0B", "308KiB", "23.54GiB"]
    assert [human_duration(s) for s in (0.5, 1, 59, 60, 3599, 3600, 5400, 47 * 3600, 3 * 86400, 20 * 86400,
                                        200 * 86400, 800 * 86400)] == \
        ["Less than a second", "1 second", "59 seconds", "About a minute", "59 minutes", "About an hour",
         "2 hours", "47 hours", "3 days", "2 weeks", "6 months", "2 years"]


def test_listing_tables_json_and_methods():
    rows = [Row({"Names": "web", "State": "running", "Label": lambda k: {"tier": "front"}.get(k, "")}),
            Row({"Names": "a-much-longer-name", "State": "exited", "Label": lambda k: ""})]
    heads = {"Names": "NAMES", "State": "STATE", "Label": lambda k: k}
    out = listing('table {{.Names}}\\t{{.State}}\\t{{.Label "tier"}}', rows, heads, "{{.Names}}")
    assert out.splitlines() == ["NAMES                STATE     tier",
                                "web                  running   front",
                                "a-much-longer-name   exited    "]  # tabwriter pads a cell before a tab
    assert listing("{{.Names}}\\t{{.State}}", rows, heads, "") == "web\trunning\na-much-longer-name\texited\n"
    assert [json.loads(line) for line in listing("json", rows, heads, "").splitlines()] == \
        [{"Names": "web", "State": "running"}, {"Names": "a-much-longer-name", "State": "exited"}]
    assert listing("table", rows, heads, "{{.Names}}").splitlines() == ["NAMES", "web", "a-much-longer-name"]
    assert listing("table {{.Names}}", [], heads, "") == "NAMES\n"          # no rows: the header alone
    assert aligned([["a", "b", "c"], ["dddddddddddd", "e"]]) == "a              b         c\ndddddddddddd   e"
    with pytest.raises(TemplateError):
        listing("{{.Nope}}", rows, heads, "")


# ---- the verbs, against the daemon, beside the docker CLI -----------------------------------------


def _both(daemon, *args):
    """(minidocker's result, docker's result) for the same arguments against the same daemon."""
    mine = daemon.cli(*args)
    theirs = subprocess.run([need_tool("docker"), *args], capture_output=True, env=daemon.env(), timeout=60)
    return mine, theirs


@pytest.fixture(scope="module")
def web(daemon):
    r = daemon.cli("run", "-d", "--name", "fmtweb", "-l", "tier=web", "-l", "k=v w", "-e", "X=1",
                   "busybox", "sleep", "300", check=True)
    yield r.stdout.decode().strip()
    daemon.cli("rm", "-f", "fmtweb")


SAME_AS_DOCKER = [
    ("inspect", "-f", '{{index .Config.Labels "k"}}', "fmtweb"),
    ("inspect", "-f", "{{range .Config.Env}}[{{.}}]{{end}}", "fmtweb"),
    ("inspect", "-f", "{{range $k, $v := .Config.Labels}}{{$k}}:{{$v}} {{end}}", "fmtweb"),
    ("inspect", "-f", "{{json .Config.Labels}} {{.Config.Labels}} {{.Config.Cmd}} {{json .Config.Cmd}}", "fmtweb"),
    ("inspect", "-f", '{{if eq .State.Status "running"}}up{{else}}down{{end}} {{.State.Running}}', "fmtweb"),
    ("inspect", "-f", '{{upper .Name}} {{join .Config.Cmd ","}} {{printf "%s-%d" .Name 5}} {{len .Config.Env}}',
     "fmtweb"),
    ("inspect", "-f", "{{$.Name}}{{range .Config.Cmd}} {{$.Id}}{{end}}", "fmtweb"),
    ("inspect", "-f", "{{.Name}}\\t{{.Id}}", "fmtweb"),
    ("inspect", "-f", "{{.Config.Entrypoint}} {{json .Config.Entrypoint}} {{.HostConfig.Binds}}", "fmtweb"),
    ("image", "inspect", "-f", "{{index .RepoTags 0}} {{.Size}} {{.Os}}", "busybox"),
    ("ps", "--filter", "name=fmtweb", "--format", "{{.Names}}\\t{{.Image}}\\t{{.Labels}} {{.Label \"tier\"}}"),
    ("ps", "--filter", "name=fmtweb", "--format", "table {{.Names}}\\t{{.Image}}\\t{{.State}}\\t{{.Command}}"),
    ("ps", "--filter", "name=fmtweb", "--format", "table {{.ID}}\\t{{.Label \"tier\"}}\\t{{.Size}}"),
    ("images", "--filter", "reference=busybox", "--format", "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}"),
    ("images", "--filter", "reference=busybox", "--format", "table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}"),
    ("images", "--filter", "reference=busybox", "--format", "json"),
    ("version", "--format", "{{.Server.Version}} {{.Server.APIVersion}} {{.Server.Os}}"),
    ("info", "--format", "{{.Driver}} {{.NCPU}} {{json .Plugins.Volume}}"),
    ("stats", "--no-stream", "--format", "table {{.Name}}\\t{{.PIDs}}", "fmtweb"),
    ("system", "df", "--format", "{{.Type}}"),
]


@pytest.mark.privileged
@pytest.mark.parametrize("args", SAME_AS_DOCKER, ids=lambda a: " ".join(a)[:60])
def test_format_prints_what_docker_prints(daemon, web, args):
    mine, theirs = _both(daemon, *args)
    assert theirs.returncode == 0, theirs.stderr
    assert mine.returncode == 0, mine.stderr
    assert mine.stdout.decode() == theirs.stdout.decode()


@pytest.mark.privileged
def test_ps_json_row_is_dockers(daemon, web):
    mine, theirs = _both(daemon, "ps", "--filter", "name=fmtweb", "--format", "{{json .}}")
    m, t = json.loads(mine.stdout), json.loads(theirs.stdout)
    for volatile in ("RunningFor", "Status"):  # seconds may tick between the two commands
        m.pop(volatile), t.pop(volatile)
    assert m == t


@pytest.mark.privileged
@pytest.mark.parametrize("args,code", [
    (("inspect", "-f", "{{bogus .Name}}", "fmtweb"), 64),
    (("inspect", "-f", "{{.NoSuch}}", "fmtweb"), 1),
    (("version", "--format", "{{bogus}}"), 64),
    (("inspect", "-f", '{{template "x"}}', "fmtweb"), None),
    (("ps", "--format", "{{.Nope}}"), None),
    (("images", "--format", "{{range .ID}}x{{end}}"), None),
    (("stats", "--no-stream", "--format", "{{.Name", "fmtweb"), None),
])
def test_bad_templates_fail_with_an_error_and_no_output(daemon, web, args, code):
    r = daemon.cli(*args)
    assert r.returncode != 0 and (code is None or r.returncode == code), (r.returncode, r.stderr)
    assert r.stdout == b""
    assert b"template" in r.stderr
