"""crib.cribctl.gotemplate: Go's text/template as crictl runs it on its JSON output.

The expected texts and errors are what crictl 1.36 (Go's text/template)
prints for the same templates on the same data; see e2e/test_cribctl_node.py
for the side-by-side runs against a crictl binary.
"""

from __future__ import annotations

import json

import pytest

from crib.cribctl import gotemplate
from crib.cribctl.gotemplate import (
    GoNumber,
    TemplateError,
    TemplateExecError,
    TemplateParseError,
    decode_json,
    execute_raw_json,
    parse,
)
from crib.cribctl.gotemplate_funcs import go_sprintf

DOC = json.dumps(
    {
        "status": {
            "id": "abc123",
            "state": "CONTAINER_RUNNING",
            "labels": {"b": "2", "a": "1", "io.kubernetes.pod.name": "web"},
            "metadata": {"name": "web", "attempt": 0},
            "mounts": [],
            "createdAt": "1700000000000000000",
            "image": {"image": "crib.e2e/busybox:1"},
            "nothing": None,
            "ready": True,
        },
        "info": {"pid": 42, "ratio": 1.5, "args": ["/bin/sh", "-c", "echo <hi> & bye"]},
    }
)

EXEC = 'template: tmplExecuteRawJSON:1:{col}: executing "tmplExecuteRawJSON" at <{at}>: {msg}'


def run(template: str, doc: str = DOC) -> str:
    return execute_raw_json(template, doc)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{.status.id}}", "abc123"),
        ("id={{.status.id}} state={{.status.state}}", "id=abc123 state=CONTAINER_RUNNING"),
        ("{{.status.metadata}}", "map[attempt:0 name:web]"),
        ("{{.status.labels}}", "map[a:1 b:2 io.kubernetes.pod.name:web]"),
        ("{{.info.args}}", "[/bin/sh -c echo <hi> & bye]"),
        ("{{.status.mounts}}", "[]"),
        ("{{.status.nothing}}", "<no value>"),
        ("{{.status.ready}} {{.info.pid}} {{.info.ratio}}", "true 42 1.5"),
        ("{{.status.metadata.attempt}}", "0"),
        # Fields on a parenthesised pipeline, and on variables.
        ("{{(.status).id}}", "abc123"),
        ('{{(index .status.labels "a")}}', "1"),
        ("{{$s := .status}}{{$s.metadata.name}}", "web"),
        ("{{$.status.id}}", "abc123"),
        ("{{$x := 1}}{{$x = 2}}{{$x}}", "2"),
        # index, len, slice.
        ('{{index .status.labels "io.kubernetes.pod.name"}}', "web"),
        ('{{index .status.labels "absent"}}', "<no value>"),
        ("{{index .info.args 1}}", "-c"),
        ("{{len .status.labels}} {{len .info.args}} {{len .status.id}} {{len .info.pid}}", "3 3 6 2"),
        ("{{slice .status.id 1 3}} {{slice .status.id 4}}", "bc 23"),
        # Pipelines: the value goes last.
        ('{{.status.id | printf "%s!"}}', "abc123!"),
        ('{{"abc" | printf "%s %s" "x"}}', "x abc"),
        ('{{.info.args | len | printf "%d"}}', "3"),
        ("{{.status.image.image | upper}}", "CRIB.E2E/BUSYBOX:1"),
        ("{{.status.image.image | upper | lower | title}}", "Crib.e2e/Busybox:1"),
        ('{{title "hello wORLD it\'s a.b c,d 1.2x x:y"}}', "Hello WORLD It's A.b C,D 1.2X X:y"),
        # printf: json.Number is a string to fmt.
        (
            '{{printf "%s|%v|%q|%d" .info.pid .info.pid .status.id .info.pid}}',
            '42|42|"abc123"|%!d(json.Number=42)',
        ),
        ('{{printf "%5s|%-5s|%05d|%x|%t" "ab" "cd" 42 "hi" true}}', "   ab|cd   |00042|6869|true"),
        ('{{printf "%s %s" "one"}}', "one %!s(MISSING)"),
        ('{{printf "%s" "one" "two"}}', "one%!(EXTRA string=two)"),
        ('{{printf "%.2f %v" 1.5 2.25}}', "1.50 2.25"),
        ('{{print "a" 1 2 "b"}}|{{println "a" 1}}', "a1 2b|a 1\n"),
        # json: compact, keys sorted, HTML-safe, a newline after.
        ("{{json .status.labels}}", '{"a":"1","b":"2","io.kubernetes.pod.name":"web"}\n'),
        (
            "{{json .info}}",
            '{"args":["/bin/sh","-c","echo \\u003chi\\u003e \\u0026 bye"],"pid":42,"ratio":1.5}\n',
        ),
        ("{{json .status.nothing}}", "null\n"),
        # if / else if / else, with, and, or, not, comparisons.
        ('{{if eq .status.state "CONTAINER_RUNNING"}}up{{else}}down{{end}}', "up"),
        ('{{if eq .status.state "X"}}x{{else if .status.ready}}ready{{else}}no{{end}}', "ready"),
        ("{{if .status.mounts}}m{{else}}no mounts{{end}}", "no mounts"),
        ("{{if .status.nothing}}y{{else}}n{{end}} {{if .info.pid}}y{{end}}", "n y"),
        ('{{if eq .status.state "A" "B" "CONTAINER_RUNNING"}}one of{{end}}', "one of"),
        ("{{with .status.metadata}}{{.name}}{{end}}", "web"),
        ("{{with .status.mounts}}m{{else}}empty{{end}}", "empty"),
        ("{{with $m := .status.metadata}}{{$m.name}}{{end}}", "web"),
        ('{{and .status.id .info.pid}} {{or .status.nothing "" "z"}} {{and 1 0}}', "42 z 0"),
        ("{{not .status.nothing}} {{not .status.ready}}", "true false"),
        (
            '{{ne .status.id "x"}} {{lt .info.pid "5"}} {{ge 3 3}} {{gt 1.5 2.5}} {{le "a" "b"}}',
            "true true true false true",
        ),
        ("{{eq .status.nothing nil}} {{eq .info.pid nil}}", "true false"),
        # range over lists, maps (sorted keys), integers; else, break, continue.
        ("{{range .info.args}}<{{.}}>{{end}}", "</bin/sh><-c><echo <hi> & bye>"),
        ("{{range $i, $a := .info.args}}{{$i}}={{$a}};{{end}}", "0=/bin/sh;1=-c;2=echo <hi> & bye;"),
        ("{{range $k, $v := .status.labels}}{{$k}}:{{$v}} {{end}}", "a:1 b:2 io.kubernetes.pod.name:web "),
        ("{{range .status.labels}}{{.}}{{end}}", "12web"),
        ("{{range .status.mounts}}m{{else}}none{{end}}", "none"),
        ("{{range .status.nothing}}x{{else}}nil{{end}}", "nil"),
        ("{{range 3}}{{.}}{{end}}", "012"),
        ('{{range .info.args}}{{if eq . "-c"}}{{break}}{{end}}{{.}}{{end}}', "/bin/sh"),
        (
            '{{range .info.args}}{{if eq . "-c"}}{{continue}}{{end}}[{{.}}]{{end}}',
            "[/bin/sh][echo <hi> & bye]",
        ),
        ("{{range .info.args}}{{$.status.id}}{{end}}", "abc123abc123abc123"),
        # Trim markers, comments, raw strings, character and number constants.
        ("a  {{- .status.id -}}  \n b", "aabc123b"),
        ("{{/* a comment */}}x{{- /* trimmed */ -}} y", "xy"),
        ("{{`raw \\n`}}", "raw \\n"),
        ("{{'a'}} {{0x10}} {{1e3}} {{-2}} {{010}}", "97 16 1000 -2 8"),
        # define, template, block.
        ('{{define "x"}}<{{.}}>{{end}}{{template "x" .status.state}}', "<CONTAINER_RUNNING>"),
        ('{{block "y" .info.pid}}[{{.}}]{{end}}', "[42]"),
        ('{{define "x"}}a{{end}}', ""),
        # html, js, urlquery.
        ('{{html "<a href=\\"x\\">&"}}', "&lt;a href=&#34;x&#34;&gt;&amp;"),
        ("{{js \"a<b='c'\"}}", "a\\u003Cb\\u003D\\'c\\'"),
        ('{{urlquery "a b&c/d~e"}}', "a+b%26c%2Fd~e"),
        ("", ""),
        ("plain text", "plain text"),
    ],
)
def test_templates(template: str, expected: str) -> None:
    assert run(template) == expected


def test_whole_document_prints_as_a_go_map() -> None:
    assert run("{{.}}", '{"b": [1, "x", null], "a": {"c": true}}') == "map[a:map[c:true] b:[1 x <nil>]]"
    # Several IDs: crictl's data is a list; range over it.
    assert (
        run(
            "{{range .}}{{.status.id}} {{end}}",
            json.dumps([{"status": {"id": "a"}}, {"status": {"id": "b"}}]),
        )
        == "a b "
    )


def test_numbers_keep_their_json_text() -> None:
    data = decode_json('{"big": 12345678901234567890, "f": 1.50, "e": 1e3}')
    assert data == {"big": "12345678901234567890", "f": "1.50", "e": "1e3"}
    assert all(isinstance(v, GoNumber) for v in data.values())
    assert run("{{.big}} {{.f}} {{.e}} {{json .}}", '{"big": 12345678901234567890, "f": 1.50, "e": 1e3}') == (
        '12345678901234567890 1.50 1e3 {"big":12345678901234567890,"e":1e3,"f":1.50}\n'
    )


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{.status.nope}}", EXEC.format(col=9, at=".status.nope", msg='map has no entry for key "nope"')),
        (
            "{{.status.nope.x}}",
            EXEC.format(col=9, at=".status.nope.x", msg='map has no entry for key "nope"'),
        ),
        ("{{.nope}}", EXEC.format(col=2, at=".nope", msg='map has no entry for key "nope"')),
        (
            "{{.status.id.x}}",
            EXEC.format(col=9, at=".status.id.x", msg="can't evaluate field x in type interface {}"),
        ),
        (
            "{{.status.nothing.x}}",
            EXEC.format(col=9, at=".status.nothing.x", msg="nil pointer evaluating interface {}.x"),
        ),
        ("{{.status.id 1}}", EXEC.format(col=9, at=".status.id", msg="id is not a method but has arguments")),
        ("{{len 1 2}}", EXEC.format(col=2, at="len", msg="wrong number of args for len: want 1 got 2")),
        (
            "{{index .status.labels 5}}",
            EXEC.format(
                col=2,
                at="index .status.labels 5",
                msg="error calling index: value has type int; should be string",
            ),
        ),
        (
            "{{index .info.args 9}}",
            EXEC.format(col=2, at="index .info.args 9", msg="error calling index: index out of range: 9"),
        ),
        (
            "{{eq .info.pid 42}}",
            EXEC.format(
                col=2,
                at="eq .info.pid 42",
                msg="error calling eq: incompatible types for comparison: json.Number and int",
            ),
        ),
        (
            "{{lt .status.state true}}",
            EXEC.format(
                col=2,
                at="lt .status.state true",
                msg="error calling lt: incompatible types for comparison: string and bool",
            ),
        ),
        (
            "{{lt .status.labels 1}}",
            EXEC.format(col=2, at="lt .status.labels 1", msg="error calling lt: invalid type for comparison"),
        ),
        (
            "{{eq .status.mounts .status.mounts}}",
            EXEC.format(
                col=2,
                at="eq .status.mounts .status.mounts",
                msg="error calling eq: non-comparable type []: []interface {}",
            ),
        ),
        (
            "{{range .status.id}}{{end}}",
            EXEC.format(col=15, at=".status.id", msg="range can't iterate over abc123"),
        ),
        ("{{printf 1}}", EXEC.format(col=9, at="1", msg="expected string; found 1")),
        (
            "{{.info.pid | upper}}",
            EXEC.format(col=14, at="upper", msg="wrong type for value; expected string; got json.Number"),
        ),
        ("{{nil}}", EXEC.format(col=2, at="nil", msg="nil is not a command")),
        ('{{template "x"}}', EXEC.format(col=11, at='{{template "x"}}', msg='template "x" not defined')),
        (
            "{{.status | .status}}",
            EXEC.format(col=12, at=".status", msg="status is not a method but has arguments"),
        ),
        (
            "line\n{{.nope}}",
            'template: tmplExecuteRawJSON:2:2: executing "tmplExecuteRawJSON" at <.nope>: '
            'map has no entry for key "nope"',
        ),
    ],
)
def test_execution_errors_read_like_go(template: str, expected: str) -> None:
    with pytest.raises(TemplateError) as exc:
        run(template)
    assert str(exc.value) == f"failed to template data: {expected}"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{nope .}}", 'function "nope" not defined'),
        ("{{if}}", "missing value for if"),
        ("{{range .x}}", "unexpected EOF"),
        ("{{.x", "unclosed action"),
        ("{{.x}", "bad character U+007D '}'"),
        ("{{end}}", "unexpected {{end}}"),
        ("{{else}}", "unexpected {{else}}"),
        ("{{$x}}", 'undefined variable "$x"'),
        ("{{1 | 2}}", "non executable command in pipeline stage 2"),
        ("{{break}}", "{{break}} outside {{range}}"),
        ('{{"abc}}', "unterminated quoted string"),
        ("{{call .x}}", 'cribctl\'s go-template does not support the function "call"'),
    ],
)
def test_parse_errors_read_like_go(template: str, message: str) -> None:
    with pytest.raises(TemplateParseError) as exc:
        parse(template)
    assert str(exc.value) == f"template: tmplExecuteRawJSON:1: {message}"
    with pytest.raises(TemplateError) as wrapped:
        run(template)
    assert str(wrapped.value) == f"failed to generate go-template: template: tmplExecuteRawJSON:1: {message}"


def test_parse_error_line_numbers_and_validate_name() -> None:
    with pytest.raises(TemplateParseError, match=r"^template: tmplExecuteRawJSON:3: unexpected EOF$"):
        parse("a\nb\n{{if .x}}")
    # crictl's validateTemplate parses under the empty name.
    with pytest.raises(TemplateParseError, match=r'^template: :1: function "nope" not defined$'):
        gotemplate.validate("{{nope}}")
    gotemplate.validate("{{.containerId}}")


def test_bad_json_is_an_error() -> None:
    with pytest.raises(TemplateError, match=r"^failed to decode json: "):
        run("{{.}}", "{not json")


def test_a_parsed_template_runs_on_many_documents() -> None:
    tmpl = parse("{{.containerId}} {{.containerEventType}}")
    assert [
        tmpl.execute(decode_json(d))
        for d in (
            '{"containerId":"a","containerEventType":"X"}',
            '{"containerId":"b","containerEventType":"Y"}',
        )
    ] == ["a X", "b Y"]
    with pytest.raises(TemplateExecError):
        tmpl.execute({})


@pytest.mark.parametrize(
    ("fmt", "args", "expected"),
    [
        ("%v %v %v", (True, None, [1, "a"]), "true <nil> [1 a]"),
        ("%s", ({"k": "v"},), "map[k:v]"),
        ("%q", ('a"b',), '"a\\"b"'),
        ("%d%%", (50,), "50%"),
        ("%X %c", (255, 65), "FF A"),
        ("%t", ("x",), "%!t(string=x)"),
        ("%8.3f|%-8s|", (3.14159, "ab"), "   3.142|ab      |"),
    ],
)
def test_sprintf(fmt: str, args: tuple, expected: str) -> None:
    assert go_sprintf(fmt, *args) == expected
