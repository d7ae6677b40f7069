"""Go's decoding rules as validate.py applies them, without a daemon (the daemon-side cases are in
test_validation.py)."""
from __future__ import annotations

import pytest

from minidocker.daemon import validate

CREATE = validate.operation("POST", "/containers/create")
EXEC_START = validate.operation("POST", "/exec/{}/start")


def check(op, text: str):
    return validate.check_body(op, text.encode())


def test_keys_fold_case_and_the_last_spelling_wins():
    assert check(CREATE, '{"IMAGE": "a", "image": "b", "cmd": ["x"]}') == {"Image": "b", "Cmd": ["x"]}


def test_null_fields_are_dropped_and_null_elements_become_zero_values():
    body = check(CREATE, '{"Image": "a", "Env": null, "Labels": {"k": null}, "Cmd": [null, "x"],'
                         '"HostConfig": {"Binds": null, "Memory": null}}')
    assert body == {"Image": "a", "Labels": {"k": ""}, "Cmd": ["", "x"], "HostConfig": {}}


def test_strslice_takes_a_string_or_a_list():
    assert check(CREATE, '{"Entrypoint": "sh"}')["Entrypoint"] == ["sh"]
    assert check(CREATE, '{"Entrypoint": []}')["Entrypoint"] == []


def test_a_fixed_go_array_is_padded_and_cut():
    assert check(EXEC_START, '{"ConsoleSize": [5]}')["ConsoleSize"] == [5, 0]
    assert check(EXEC_START, '{"ConsoleSize": [5, 6, 7]}')["ConsoleSize"] == [5, 6]


@pytest.mark.parametrize("text, words", [
    ('[1]', "cannot unmarshal array into Go value of type CreateRequest"),
    ('{"HostConfig": {"Memory": 1e3}}', "cannot unmarshal number 1e3 into Go struct field CreateRequest.HostConfig.Memory of type int64"),
    ('{"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": 80}]}}}', "CreateRequest.HostConfig.PortBindings.80/tcp.HostPort of type string"),
    ('{"Healthcheck": {"Interval": "1s"}}', "cannot unmarshal string into Go struct field CreateRequest.Healthcheck.Interval of type int64"),
    ('{"Image": "a\\u0000"}', "invalid Image: contains a NUL byte"),
    ('{"Image": Infinity}', "invalid JSON"),
])
def test_refusals_name_the_field_and_the_go_type(text, words):
    with pytest.raises(validate.Invalid) as e:
        check(CREATE, text)
    assert words in str(e.value)


def test_unpaired_surrogates_become_the_replacement_character():
    assert check(CREATE, '{"Image": "a\\ud800b"}')["Image"] == "a\ufffdb"


def test_unknown_keys_pass_untouched_but_numbers_must_still_fit():
    assert check(CREATE, '{"Bogus": {"x": [1, 2.5]}}') == {"Bogus": {"x": [1, 2.5]}}
    with pytest.raises(validate.Invalid):
        check(CREATE, '{"Bogus": 1e400}')


@pytest.mark.parametrize("value, ok", [("10", True), ("-1", True), ("+3", True), (" 1", False), ("1_0", False),
                                       ("١", False), ("9223372036854775808", False)])
def test_integer_query_parameters_read_as_strconv_atoi(value, ok):
    op = validate.operation("POST", "/containers/{}/stop")
    if ok:
        validate.check_query(op, {"t": value})
    else:
        with pytest.raises(validate.Invalid, match="strconv.Atoi"):
            validate.check_query(op, {"t": value})


@pytest.mark.parametrize("raw, ok", [('{"status": ["exited"]}', True), ('{"dangling": {"true": true}}', True),
                                     ('{"label": [{"a": 1}]}', False), ('["a"]', False), ("{", False)])
def test_filters_have_moby_s_two_shapes(raw, ok):
    if ok:
        validate.check_filters(raw)
    else:
        with pytest.raises(validate.Invalid, match="invalid filter"):
            validate.check_filters(raw)


def test_tar_head_check():
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("empty"))
    validate.check_tar_head(buf.getvalue()[:512])
    validate.check_tar_head(b"\x1f\x8b" + b"\0" * 20)  # gzip: the helper reads it
    validate.check_tar_head(b"\0" * 512)  # an empty archive
    for bad in (b"", b"not a tar" * 100):
        with pytest.raises(validate.Invalid, match="Error processing tar file"):
            validate.check_tar_head(bad[:512])
